//! Which source addresses count as one party, for rate limits and
//! per-source caps.
//!
//! An IPv6 host is normally handed a whole /64 and picks any address in it
//! (privacy addresses, SLAAC): keying on the full address would give one
//! machine 2^64 fresh budgets. So IPv6 sources are keyed per /64, and a
//! site's /48 (what an ISP typically delegates to one customer) gets an
//! aggregate budget on top. IPv4-mapped IPv6 addresses (dual-stack sockets)
//! are IPv4.

use std::net::{IpAddr, Ipv4Addr};

/// One source, as limits see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4(Ipv4Addr),
    /// The top 64 bits of an IPv6 address.
    V6Net64(u64),
}

impl SourceKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net64((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// The /48 an IPv6 source belongs to (its top 48 bits), for the
    /// aggregate limit; IPv4 sources have none.
    pub(crate) fn net48(self) -> Option<u64> {
        match self {
            Self::V4(_) => None,
            Self::V6Net64(net64) => Some(net64 >> 16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SourceKey {
        SourceKey::of(s.parse().unwrap_or(IpAddr::from([0u8; 4])))
    }

    #[test]
    fn ipv6_sources_of_one_64_are_one_source() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:0:0:9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(
            key("2001:db8:1:2::1").net48(),
            key("2001:db8:1:ffff::1").net48()
        );
        assert_ne!(
            key("2001:db8:1:2::1").net48(),
            key("2001:db8:2:2::1").net48()
        );
        assert_eq!(key("2001:db8:1:2::1").net48(), Some(0x2001_0db8_0001));
    }

    #[test]
    fn ipv4_keeps_the_full_address_and_mapped_addresses_are_ipv4() {
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("192.0.2.7").net48(), None);
    }
}
