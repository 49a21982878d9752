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
//! or, to wait for the stream to move (a follower's long poll):
//! request:  [0] ‖ after (8, i64 big-endian) ‖ wait (4, u32 big-endian, ms)
//! answer:   version (1) = 1 ‖ stream key (32) ‖ position (8, i64 big-endian)
//! ```
//!
//! The waiting form is answered as soon as the position is beyond
//! `after`, or after `wait` ms (the server caps it at [`MAX_WAIT_MS`])
//! with the position unchanged. A server that predates it reads only the
//! first byte and answers at once, so a follower that gets its answer
//! early with the position not beyond `after` falls back to polling. Any
//! other body starting with 0 is answered at once, like `[0]`.
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
/// Length of a waiting info request.
pub const WAIT_REQUEST_LEN: usize = 1 + 8 + 4;
/// Longest wait a server holds a request for, in ms: well below the
/// link's idle timeout (300 s) and a client's usual request deadline plus
/// the wait, so a held request never trips either.
pub const MAX_WAIT_MS: u32 = 20_000;

/// The body of a waiting info request: answer once the position is beyond
/// `after`, or after `wait_ms`.
pub fn wait_request(after: i64, wait_ms: u32) -> [u8; WAIT_REQUEST_LEN] {
    let mut out = [0u8; WAIT_REQUEST_LEN];
    out[1..9].copy_from_slice(&after.to_be_bytes());
    out[9..].copy_from_slice(&wait_ms.to_be_bytes());
    out
}

/// What an info request (any body starting with 0) asks for: `None` to
/// answer at once, else the position to wait beyond and the wait in ms
/// (capped at [`MAX_WAIT_MS`]).
pub fn parse_info_request(body: &[u8]) -> Option<(i64, u32)> {
    if body.len() != WAIT_REQUEST_LEN || body[0] != 0 {
        return None;
    }
    let mut after = [0u8; 8];
    after.copy_from_slice(&body[1..9]);
    let mut wait = [0u8; 4];
    wait.copy_from_slice(&body[9..]);
    Some((
        i64::from_be_bytes(after),
        u32::from_be_bytes(wait).min(MAX_WAIT_MS),
    ))
}

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

    #[test]
    fn wait_requests_round_trip_are_capped_and_are_never_writes() {
        let body = wait_request(-5, 1234);
        assert_eq!(body[0], INFO_REQUEST[0]);
        assert_eq!(parse_info_request(&body), Some((-5, 1234)));
        assert!(SignedRequest::decode(&body).is_err());
        let huge = wait_request(i64::MAX, u32::MAX);
        assert_eq!(parse_info_request(&huge), Some((i64::MAX, MAX_WAIT_MS)));
        // The old form, and anything else starting with 0, is answered at once.
        assert_eq!(parse_info_request(&INFO_REQUEST), None);
        assert_eq!(parse_info_request(&body[..12]), None);
        let mut longer = body.to_vec();
        longer.push(0);
        assert_eq!(parse_info_request(&longer), None);
    }
}
