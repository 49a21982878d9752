//! Application frames: the plaintext of one Noise transport message.
//!
//! ```text
//! proof     01 ‖ identity key (33) ‖ signature (64)
//! request   02 ‖ flags ‖ id (u32 BE) ‖ service ‖ chunk
//! response  03 ‖ flags ‖ id (u32 BE) ‖ chunk
//! refused   04 ‖ id (u32 BE) ‖ reason
//! ```
//!
//! `flags` bit 0 marks the last fragment of a message; the other bits must
//! be zero. A message's fragments are sent back to back (never interleaved
//! with another message's), so a receiver reassembles one message at a time.

use core::fmt;

use super::noise::MAX_TRANSPORT_PLAINTEXT;
use crate::identity::PUBLIC_KEY_LEN;
use crate::signature::SIGNATURE_LEN;

const PROOF: u8 = 1;
const REQUEST: u8 = 2;
const RESPONSE: u8 = 3;
const REFUSED: u8 = 4;
const LAST: u8 = 1;

/// Length of a proof frame.
pub const PROOF_FRAME_LEN: usize = 1 + PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Header of a request fragment.
pub const REQUEST_HEADER_LEN: usize = 7;
/// Header of a response fragment.
pub const RESPONSE_HEADER_LEN: usize = 6;
/// Length of a refusal frame.
pub const REFUSED_FRAME_LEN: usize = 6;
/// Most body bytes one fragment carries (one Noise message, less the
/// header and the AEAD tag).
pub const MAX_CHUNK: usize = MAX_TRANSPORT_PLAINTEXT - REQUEST_HEADER_LEN;

/// One decoded application frame, borrowing from the plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An identity proof (see [`super::proof`]).
    Proof {
        key: &'a [u8; PUBLIC_KEY_LEN],
        signature: &'a [u8; SIGNATURE_LEN],
    },
    /// A fragment of a request. `service` is the raw byte; every fragment
    /// of one request repeats it.
    Request {
        id: u32,
        service: u8,
        last: bool,
        chunk: &'a [u8],
    },
    /// A fragment of a response to the receiver's request `id`.
    Response {
        id: u32,
        last: bool,
        chunk: &'a [u8],
    },
    /// The receiver's request `id` is refused.
    Refused { id: u32, reason: u8 },
}

/// Why a plaintext is not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No bytes at all.
    Empty,
    /// The type byte is not one of the four.
    UnknownType(u8),
    /// The frame is shorter than its header or fixed length.
    Truncated,
    /// A fixed-length frame has bytes after its end.
    TrailingBytes,
    /// Flags other than "last" are set.
    ReservedFlags(u8),
    /// A chunk longer than [`MAX_CHUNK`].
    ChunkTooLong,
    /// The output buffer is too small (encoding only).
    BufferTooSmall,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty frame"),
            Self::UnknownType(t) => write!(f, "unknown frame type {t}"),
            Self::Truncated => f.write_str("truncated frame"),
            Self::TrailingBytes => f.write_str("bytes after the end of a frame"),
            Self::ReservedFlags(b) => write!(f, "reserved flags set: {b:#04x}"),
            Self::ChunkTooLong => f.write_str("fragment longer than one Noise message"),
            Self::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl core::error::Error for FrameError {}

fn id_at(bytes: &[u8], at: usize) -> Result<u32, FrameError> {
    let b: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    Ok(u32::from_be_bytes(b))
}

fn last_flag(byte: u8) -> Result<bool, FrameError> {
    if byte & !LAST != 0 {
        return Err(FrameError::ReservedFlags(byte));
    }
    Ok(byte & LAST != 0)
}

impl<'a> Frame<'a> {
    /// Decodes one plaintext. Never panics; borrows the chunk.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let (&kind, rest) = bytes.split_first().ok_or(FrameError::Empty)?;
        match kind {
            PROOF => {
                if rest.len() < PUBLIC_KEY_LEN + SIGNATURE_LEN {
                    return Err(FrameError::Truncated);
                }
                if rest.len() > PUBLIC_KEY_LEN + SIGNATURE_LEN {
                    return Err(FrameError::TrailingBytes);
                }
                let (key, signature) = rest.split_at(PUBLIC_KEY_LEN);
                Ok(Self::Proof {
                    key: key.try_into().map_err(|_| FrameError::Truncated)?,
                    signature: signature.try_into().map_err(|_| FrameError::Truncated)?,
                })
            }
            REQUEST => {
                if bytes.len() < REQUEST_HEADER_LEN {
                    return Err(FrameError::Truncated);
                }
                let chunk = &bytes[REQUEST_HEADER_LEN..];
                if chunk.len() > MAX_CHUNK {
                    return Err(FrameError::ChunkTooLong);
                }
                Ok(Self::Request {
                    last: last_flag(bytes[1])?,
                    id: id_at(bytes, 2)?,
                    service: bytes[6],
                    chunk,
                })
            }
            RESPONSE => {
                if bytes.len() < RESPONSE_HEADER_LEN {
                    return Err(FrameError::Truncated);
                }
                let chunk = &bytes[RESPONSE_HEADER_LEN..];
                if chunk.len() > MAX_CHUNK {
                    return Err(FrameError::ChunkTooLong);
                }
                Ok(Self::Response {
                    last: last_flag(bytes[1])?,
                    id: id_at(bytes, 2)?,
                    chunk,
                })
            }
            REFUSED => {
                if bytes.len() < REFUSED_FRAME_LEN {
                    return Err(FrameError::Truncated);
                }
                if bytes.len() > REFUSED_FRAME_LEN {
                    return Err(FrameError::TrailingBytes);
                }
                Ok(Self::Refused {
                    id: id_at(bytes, 1)?,
                    reason: bytes[5],
                })
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::Proof { .. } => PROOF_FRAME_LEN,
            Self::Request { chunk, .. } => REQUEST_HEADER_LEN + chunk.len(),
            Self::Response { chunk, .. } => RESPONSE_HEADER_LEN + chunk.len(),
            Self::Refused { .. } => REFUSED_FRAME_LEN,
        }
    }

    /// Encodes into `out`, returning the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, FrameError> {
        let len = self.encoded_len();
        let out = out.get_mut(..len).ok_or(FrameError::BufferTooSmall)?;
        match *self {
            Self::Proof { key, signature } => {
                out[0] = PROOF;
                out[1..1 + PUBLIC_KEY_LEN].copy_from_slice(key);
                out[1 + PUBLIC_KEY_LEN..].copy_from_slice(signature);
            }
            Self::Request {
                id,
                service,
                last,
                chunk,
            } => {
                if chunk.len() > MAX_CHUNK {
                    return Err(FrameError::ChunkTooLong);
                }
                out[0] = REQUEST;
                out[1] = u8::from(last);
                out[2..6].copy_from_slice(&id.to_be_bytes());
                out[6] = service;
                out[REQUEST_HEADER_LEN..].copy_from_slice(chunk);
            }
            Self::Response { id, last, chunk } => {
                if chunk.len() > MAX_CHUNK {
                    return Err(FrameError::ChunkTooLong);
                }
                out[0] = RESPONSE;
                out[1] = u8::from(last);
                out[2..6].copy_from_slice(&id.to_be_bytes());
                out[RESPONSE_HEADER_LEN..].copy_from_slice(chunk);
            }
            Self::Refused { id, reason } => {
                out[0] = REFUSED;
                out[1..5].copy_from_slice(&id.to_be_bytes());
                out[5] = reason;
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame<'_>) {
        let mut buf = [0u8; 256];
        let n = frame.encode(&mut buf).unwrap();
        assert_eq!(n, frame.encoded_len());
        assert_eq!(Frame::decode(&buf[..n]), Ok(frame));
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Proof {
            key: &[2; 33],
            signature: &[9; 64],
        });
        round_trip(Frame::Request {
            id: 0xdead_beef,
            service: 2,
            last: true,
            chunk: b"page",
        });
        round_trip(Frame::Response {
            id: 7,
            last: false,
            chunk: b"",
        });
        round_trip(Frame::Refused { id: 1, reason: 1 });
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[9]), Err(FrameError::UnknownType(9)));
        assert_eq!(Frame::decode(&[1; 97]), Err(FrameError::Truncated));
        assert_eq!(Frame::decode(&[1; 99]), Err(FrameError::TrailingBytes));
        assert_eq!(Frame::decode(&[2, 0, 0, 0, 0]), Err(FrameError::Truncated));
        assert_eq!(
            Frame::decode(&[3, 2, 0, 0, 0, 1]),
            Err(FrameError::ReservedFlags(2))
        );
        assert_eq!(Frame::decode(&[4, 0, 0, 0, 1]), Err(FrameError::Truncated));
        assert_eq!(
            Frame::decode(&[4, 0, 0, 0, 1, 1, 0]),
            Err(FrameError::TrailingBytes)
        );
        let mut small = [0u8; 3];
        assert_eq!(
            Frame::Refused { id: 1, reason: 1 }.encode(&mut small),
            Err(FrameError::BufferTooSmall)
        );
    }
}
