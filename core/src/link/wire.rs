//! The outer framing on the byte stream: a 2-byte big-endian length, then
//! one Noise message (handshake or transport) of that many bytes.
//!
//! Noise messages are at most 65,535 bytes (Noise spec §3), so two bytes
//! always suffice; an empty message is never valid here and is refused.

use core::fmt;

use super::noise::MAX_NOISE_MESSAGE;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 2;
/// Largest frame on the wire, prefix included: the buffer size
/// [`Link::poll_transmit`](super::Link::poll_transmit) needs.
pub const MAX_WIRE_FRAME: usize = LEN_PREFIX + MAX_NOISE_MESSAGE;

/// Why the byte stream is not a sequence of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A frame announced zero bytes.
    Empty,
    /// A frame announced more bytes than the current phase allows.
    TooLong { len: usize, max: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty frame"),
            Self::TooLong { len, max } => write!(f, "frame of {len} bytes, at most {max} allowed"),
        }
    }
}

impl core::error::Error for WireError {}

/// Reads one frame from the front of `input`: `Ok(Some((message, used)))`
/// when a whole frame is there, `Ok(None)` when more bytes are needed.
/// `max` bounds the announced length, so an oversize frame is refused as
/// soon as its prefix arrives, before any of it is buffered.
pub fn split_frame(input: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, WireError> {
    let Some(prefix) = input.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > max {
        return Err(WireError::TooLong { len, max });
    }
    let end = LEN_PREFIX + len;
    Ok(input.get(LEN_PREFIX..end).map(|message| (message, end)))
}

/// Writes the prefix for a `len`-byte message into `out[..2]`.
pub(crate) fn put_prefix(out: &mut [u8], len: usize) {
    debug_assert!(len <= MAX_NOISE_MESSAGE && out.len() >= LEN_PREFIX);
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_whole_and_partial() {
        let bytes = [0, 3, 1, 2, 3, 0, 2, 9];
        let (message, used) = split_frame(&bytes, 10).unwrap().unwrap();
        assert_eq!((message, used), (&[1u8, 2, 3][..], 5));
        assert_eq!(split_frame(&bytes[used..], 10), Ok(None));
        assert_eq!(split_frame(&bytes[..1], 10), Ok(None));
        assert_eq!(split_frame(&[0, 0], 10), Err(WireError::Empty));
        assert_eq!(
            split_frame(&[0, 11], 10),
            Err(WireError::TooLong { len: 11, max: 10 })
        );
    }
}
