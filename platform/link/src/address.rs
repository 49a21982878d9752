//! `PUBKEY_HEX@HOST:PORT`: a node's address names the key it must prove
//! (issue 16, item 2), so the dialer can refuse anyone else.

use core::fmt;
use core::str::FromStr;

use keyway_core::{KeyError, PublicKey};

/// A node to dial: the identity it must prove, and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddress {
    /// The secp256k1 key the peer must prove.
    pub key: PublicKey,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why an address did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    /// No `@`.
    #[error("a node address is PUBKEY_HEX@HOST:PORT")]
    Shape,
    /// The key part is not a compressed secp256k1 key.
    #[error("node address key: {0}")]
    Key(KeyError),
    /// No port, or not a number in 1..=65535.
    #[error("node address needs HOST:PORT with a port in 1..65535")]
    Port,
    /// An empty host, or an IPv6 address without brackets.
    #[error("node address host is empty or an IPv6 address without [brackets]")]
    Host,
}

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let (key, rest) = text.split_once('@').ok_or(AddressError::Shape)?;
        let key = PublicKey::from_hex(key).map_err(AddressError::Key)?;
        let (host, port) = rest.rsplit_once(':').ok_or(AddressError::Port)?;
        let port: u16 = port.parse().map_err(|_| AddressError::Port)?;
        if port == 0 {
            return Err(AddressError::Port);
        }
        let host = match host.strip_prefix('[') {
            // Brackets hold an IPv6 address, nothing else.
            Some(inner) => inner
                .strip_suffix(']')
                .filter(|h| h.contains(':'))
                .ok_or(AddressError::Host)?,
            None if host.contains(':') => return Err(AddressError::Host),
            None => host,
        };
        if host.is_empty() {
            return Err(AddressError::Host);
        }
        Ok(Self {
            key,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.key, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.key, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "0292cd0fa4c61fc0e30af9eadf9e48b22202611d2a233191fbbf35aa48256e3646";

    #[test]
    fn addresses_parse_and_print_back() {
        for text in [
            format!("{PK}@127.0.0.1:4000"),
            format!("{PK}@[::1]:4000"),
            format!("{PK}@node.example:65535"),
        ] {
            let addr: PeerAddress = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let v6: PeerAddress = format!("{PK}@[::1]:9").parse().unwrap();
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn malformed_addresses_are_named() {
        assert_eq!(
            "127.0.0.1:1".parse::<PeerAddress>(),
            Err(AddressError::Shape)
        );
        assert!(matches!(
            "00@127.0.0.1:1".parse::<PeerAddress>(),
            Err(AddressError::Key(_))
        ));
        for bad_port in ["h", "h:", "h:0", "h:65536", "h:x"] {
            assert_eq!(
                format!("{PK}@{bad_port}").parse::<PeerAddress>(),
                Err(AddressError::Port),
                "{bad_port}"
            );
        }
        for bad_host in [":1", "::1:5", "[::1:5", "[00]:5"] {
            assert_eq!(
                format!("{PK}@{bad_host}").parse::<PeerAddress>(),
                Err(AddressError::Host),
                "{bad_host}"
            );
        }
    }
}
