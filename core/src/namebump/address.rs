//! How the server keys its per-IP quota rows (spec §7.1–7.2).
//!
//! IPv4 rows hold the address as a u32; IPv6 rows split the address into
//! four columns so the /64 and /48 limits are plain column comparisons.
//! Address-family numbers are Linux's on every OS (bug 30).

use core::net::{Ipv4Addr, Ipv6Addr};

/// Address families of quota rows and USAGE replies.
pub use crate::address_family::{AF_INET, AF_INET6};

/// An IPv4 address as the `ipv4s.v4_val` column stores it.
pub fn ipv4_to_u32(addr: Ipv4Addr) -> u32 {
    u32::from(addr)
}

/// An IPv6 address as the `ipv6s` columns store it: bits 0–31, 32–47,
/// 48–63 and 64–127 (most significant first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Parts {
    /// Bits 0–31: with `glob_extra`, the /48 routing prefix.
    pub glob_main: u32,
    /// Bits 32–47.
    pub glob_extra: u16,
    /// Bits 48–63: the subnet, completing the /64.
    pub lan_id: u16,
    /// Bits 64–127: the interface identifier.
    pub iface_id: u64,
}

impl From<Ipv6Addr> for Ipv6Parts {
    fn from(addr: Ipv6Addr) -> Self {
        let bits = u128::from(addr);
        // Truncating casts pick out each field after the shift.
        Self {
            glob_main: (bits >> 96) as u32,
            glob_extra: (bits >> 80) as u16,
            lan_id: (bits >> 64) as u16,
            iface_id: bits as u64,
        }
    }
}

impl From<Ipv6Parts> for Ipv6Addr {
    fn from(p: Ipv6Parts) -> Self {
        Ipv6Addr::from(
            (u128::from(p.glob_main) << 96)
                | (u128::from(p.glob_extra) << 80)
                | (u128::from(p.lan_id) << 64)
                | u128::from(p.iface_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_the_big_endian_integer() {
        assert_eq!(ipv4_to_u32(Ipv4Addr::new(127, 0, 0, 1)), 2_130_706_433);
    }

    #[test]
    fn ipv6_splits_like_the_reference() {
        // The example checked against the reference's text slicing (spec §7.1).
        let addr: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let parts = Ipv6Parts::from(addr);
        assert_eq!(
            parts,
            Ipv6Parts {
                glob_main: 0x2001_0db8,
                glob_extra: 0x1,
                lan_id: 0x2,
                iface_id: 0x0003_0004_0005_0006
            }
        );
        assert_eq!(Ipv6Addr::from(parts), addr);
    }
}
