//! What a request asks for: the service byte of a request frame.

use core::fmt;

/// The service a request is addressed to. The capability it needs follows
/// from it (and, for sync, from the stream key the body starts with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// A direct message between nodes (`message` capability).
    Message,
    /// A page of a Drayer stream; the body starts with the 32-byte stream
    /// public key (`sync:<that key>` or `sync:*`).
    Sync,
    /// A write to the registry of the issue that follows (`registry-write`).
    RegistryWrite,
}

impl Service {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Message => 1,
            Self::Sync => 2,
            Self::RegistryWrite => 3,
        }
    }

    /// The service of a wire byte, if known.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Message),
            2 => Some(Self::Sync),
            3 => Some(Self::RegistryWrite),
            _ => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Message => "message",
            Self::Sync => "sync",
            Self::RegistryWrite => "registry-write",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for s in [Service::Message, Service::Sync, Service::RegistryWrite] {
            assert_eq!(Service::from_byte(s.to_byte()), Some(s));
        }
        assert_eq!(Service::from_byte(0), None);
        assert_eq!(Service::from_byte(4), None);
    }
}
