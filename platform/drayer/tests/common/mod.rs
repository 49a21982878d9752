//! Helpers the HTTP server tests share.

use keyway_drayer::Stream;

/// The stream's public key as a path segment (base64, percent-encoded).
pub(crate) fn quoted(stream: &Stream) -> String {
    stream
        .public_key_base64()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// `len` random bytes: values that do not compress.
pub(crate) fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}
