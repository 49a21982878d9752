//! What counts as one source when limiting a remote party: an IPv4 address,
//! or an IPv6 /64. A single subscriber is routinely handed a whole /64 and
//! can pick any of its 2^64 addresses, so keying IPv6 on the full address
//! would give one party as many budgets as it likes.

use std::net::{IpAddr, Ipv6Addr};

/// The key `ip` is counted under: IPv4 (also IPv4-mapped IPv6) as is, IPv6
/// with its low 64 bits cleared.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_keyed_per_slash_64_and_ipv4_per_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        assert_eq!(source_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let v4: IpAddr = [192, 0, 2, 7].into();
        assert_eq!(source_key(v4), v4);
        assert_ne!(source_key(v4), source_key([192, 0, 2, 8].into()));
        let mapped = IpAddr::V6(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0207]));
        assert_eq!(source_key(mapped), v4);
    }
}
