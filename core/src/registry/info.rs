//! What a client asks the registry before its first write: the stream to
//! sign for and mirror, and how far it goes now.
//!
//! A client knows the server's node key and address (`--server
//! PUBKEY@HOST:PORT`) but not its stream key, which every write request
//! names and every replica needs. It asks on the same service as writes
//! (`registry-write`), with a body no write can have:
//!
//! ```text
//! request:  [0]                                   (a write starts with its version, 1; the
//!                                                  server and the link's capability check both
//!                                                  take any body starting with 0 as this)
//! answer:   version (1) = 1 ‖ stream key (32) ‖ position (8, i64 big-endian)
//! ```
//!
//! Capability: `registry-write` or `sync:*` (a reader that may mirror
//! every stream may learn which one is the registry's).
//!
//! The position is the stream's newest record (`modified`, µs; 0 when
//! empty): a one-shot `lookup` pulls until its replica holds it. The
//! answer is only a hint for finding the stream: every record the replica
//! then pulls is verified against this key, and the key comes over the
//! link whose peer proved the server's identity.

use core::fmt;

use super::request::REGISTRY_KEY_LEN;

/// The body of an info request.
pub const INFO_REQUEST: [u8; 1] = [0];
/// The format version of the answer.
pub const VERSION: u8 = 1;
/// Length of an encoded answer.
pub const INFO_LEN: usize = 1 + REGISTRY_KEY_LEN + 8;

/// The registry's stream and its current position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryInfo {
    /// The registry's Drayer stream public key.
    pub stream_key: [u8; REGISTRY_KEY_LEN],
    /// The stream's newest record (`modified`, µs), 0 when empty.
    pub position: i64,
}

/// Bytes that are not an info answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoError;

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a registry info answer")
    }
}

impl core::error::Error for InfoError {}

impl RegistryInfo {
    /// The answer's bytes.
    pub fn encode(&self) -> [u8; INFO_LEN] {
        let mut out = [0u8; INFO_LEN];
        out[0] = VERSION;
        out[1..33].copy_from_slice(&self.stream_key);
        out[33..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    /// Reads an answer.
    pub fn decode(bytes: &[u8]) -> Result<Self, InfoError> {
        if bytes.len() != INFO_LEN || bytes[0] != VERSION {
            return Err(InfoError);
        }
        let mut stream_key = [0u8; REGISTRY_KEY_LEN];
        stream_key.copy_from_slice(&bytes[1..33]);
        let mut position = [0u8; 8];
        position.copy_from_slice(&bytes[33..]);
        Ok(Self {
            stream_key,
            position: i64::from_be_bytes(position),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::request::SignedRequest;

    #[test]
    fn round_trips_and_is_never_a_write() {
        let info = RegistryInfo {
            stream_key: [9; 32],
            position: 1_795_000_000_000_000,
        };
        assert_eq!(RegistryInfo::decode(&info.encode()), Ok(info));
        assert_eq!(RegistryInfo::decode(&info.encode()[1..]), Err(InfoError));
        assert!(SignedRequest::decode(&INFO_REQUEST).is_err());
    }
}
