//! Finding messages in namebump's unframed TCP stream (spec §4.2, bug 11).
//!
//! The reference writes each sealed message with one write and reads "one
//! chunk = one message", so a request split across segments fails there.
//! This reader accumulates bytes instead and asks the MAC where a message
//! ends: a sealed message is 81 + 16·k bytes, so only every 16th length is a
//! candidate, and the expensive ECDH runs once per message (an [`Opening`]),
//! each candidate costing one HMAC. A buffer that fills up without a valid
//! message is garbage: the connection should be closed.

use core::fmt;

use crate::ecies::{self, EciesError, Opening};
use crate::identity::{Keypair, PUBLIC_KEY_LEN};
use crate::namebump::packet::MAX_PACKET_LEN;

/// The largest sealed request: a maximal signed packet.
pub const MAX_SEALED_REQUEST: usize = ecies::sealed_len(MAX_PACKET_LEN);

/// Why the stream cannot yield a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The buffered bytes start with something that is not an ephemeral key.
    Garbage,
    /// A full buffer holds no authentic message.
    Unframeable,
    /// The plaintext buffer passed in is too small.
    BufferTooSmall,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Garbage => f.write_str("stream does not start with an encrypted request"),
            Self::Unframeable => {
                write!(f, "no authentic request within {MAX_SEALED_REQUEST} bytes")
            }
            Self::BufferTooSmall => f.write_str("plaintext buffer too small"),
        }
    }
}

impl core::error::Error for StreamError {}

/// Accumulates a TCP stream and yields the sealed messages in it: requests
/// on a server, replies on a client.
pub struct SealedStream {
    buf: [u8; MAX_SEALED_REQUEST],
    len: usize,
    /// Secret for the message at the front, once its 33-byte key has arrived.
    opening: Option<Opening>,
    /// Candidate lengths up to here have been tried for the current message.
    tried: usize,
}

impl Default for SealedStream {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SealedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedStream")
            .field("buffered", &self.len)
            .finish_non_exhaustive()
    }
}

impl SealedStream {
    pub const fn new() -> Self {
        Self {
            buf: [0u8; MAX_SEALED_REQUEST],
            len: 0,
            opening: None,
            tried: 0,
        }
    }

    /// Bytes buffered and not yet part of a yielded request.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Whether the next [`Self::next_message`] will run the ECDH (a scalar
    /// multiplication) for the message at the front: a server applies its
    /// per-source rate limit here, before the work, as it does per datagram.
    pub fn needs_key_agreement(&self) -> bool {
        self.opening.is_none() && self.len >= PUBLIC_KEY_LEN
    }

    /// Free space for the next read; call [`Self::filled`] with what was written.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Records that `n` bytes were written into [`Self::spare`].
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(MAX_SEALED_REQUEST);
    }

    /// Copies as much of `data` as fits; returns how much was taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(MAX_SEALED_REQUEST - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Looks for a complete request at the front of the buffer. On success
    /// decrypts it into `out`, drops its bytes from the buffer and returns
    /// the plaintext. `Ok(None)` means more bytes are needed.
    pub fn next_message<'o>(
        &mut self,
        receiver: &Keypair,
        out: &'o mut [u8],
    ) -> Result<Option<&'o [u8]>, StreamError> {
        if self.len < PUBLIC_KEY_LEN {
            return Ok(None);
        }
        if self.opening.is_none() {
            let opening =
                Opening::new(receiver, &self.buf[..self.len]).map_err(|_| StreamError::Garbage)?;
            self.opening = Some(opening);
        }
        let Some(opening) = &self.opening else {
            return Ok(None);
        };
        let mut candidate = ecies::MIN_SEALED_LEN;
        if self.tried >= candidate {
            // Next candidate after the last one tried.
            candidate = self.tried + ecies::BLOCK_LEN;
        }
        while candidate <= self.len {
            if opening.tag_matches(&self.buf[..candidate]) {
                let plaintext_len = match opening.open(&self.buf[..candidate], out) {
                    Ok(p) => p.len(),
                    Err(EciesError::BufferTooSmall { .. }) => {
                        return Err(StreamError::BufferTooSmall);
                    }
                    // Authentic but badly padded: only the key holder's peer
                    // could make it, and it is still not a request.
                    Err(_) => return Err(StreamError::Unframeable),
                };
                self.buf.copy_within(candidate..self.len, 0);
                self.len -= candidate;
                self.opening = None;
                self.tried = 0;
                return Ok(Some(&out[..plaintext_len]));
            }
            self.tried = candidate;
            candidate += ecies::BLOCK_LEN;
        }
        if self.len == MAX_SEALED_REQUEST {
            return Err(StreamError::Unframeable);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    struct Fixed(u8);
    impl rand_core::TryRng for Fixed {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::from(self.0))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from(self.0))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.0 = self.0.wrapping_add(1);
            dst.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Fixed {}

    fn sealed(server: &Keypair, plaintext: &[u8], seed: u8) -> Vec<u8> {
        let mut out = alloc::vec![0u8; ecies::sealed_len(plaintext.len())];
        ecies::seal(server.public(), plaintext, &mut Fixed(seed), &mut out).unwrap();
        out
    }

    #[test]
    fn byte_by_byte_delivery_yields_the_request_once_complete() {
        let server = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let msg = sealed(&server, b"request one", 10);
        let mut stream = SealedStream::new();
        let mut out = [0u8; MAX_SEALED_REQUEST];
        for (i, b) in msg.iter().enumerate() {
            assert_eq!(stream.push(&[*b]), 1);
            let got = stream
                .next_message(&server, &mut out)
                .unwrap()
                .map(<[u8]>::to_vec);
            if i + 1 < msg.len() {
                assert_eq!(got, None, "early at {i}");
            } else {
                assert_eq!(got.as_deref(), Some(&b"request one"[..]));
            }
        }
        assert_eq!(stream.buffered(), 0);
    }

    #[test]
    fn the_key_agreement_is_announced_once_per_message() {
        let server = Keypair::from_secret_bytes(&[4u8; 32]).unwrap();
        let mut bytes = sealed(&server, b"first", 50);
        bytes.extend(sealed(&server, b"second", 60));
        let mut stream = SealedStream::new();
        let mut out = [0u8; MAX_SEALED_REQUEST];
        let mut announced = 0;
        let mut messages = 0;
        for b in &bytes {
            stream.push(&[*b]);
            if stream.needs_key_agreement() {
                announced += 1;
            }
            if stream.next_message(&server, &mut out).unwrap().is_some() {
                messages += 1;
            }
            assert!(!stream.needs_key_agreement());
        }
        assert_eq!((announced, messages), (2, 2));
    }

    #[test]
    fn coalesced_requests_come_out_in_order() {
        let server = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let long = [7u8; 300];
        let mut bytes = sealed(&server, &long, 20);
        bytes.extend(sealed(&server, b"second", 30));
        let mut stream = SealedStream::new();
        let mut out = [0u8; MAX_SEALED_REQUEST];
        assert_eq!(stream.push(&bytes), bytes.len());
        assert_eq!(
            stream.next_message(&server, &mut out).unwrap(),
            Some(&long[..])
        );
        assert_eq!(
            stream.next_message(&server, &mut out).unwrap(),
            Some(&b"second"[..])
        );
        assert_eq!(stream.next_message(&server, &mut out).unwrap(), None);
    }

    #[test]
    fn garbage_is_refused_and_a_full_buffer_without_a_message_ends_the_stream() {
        let server = Keypair::from_secret_bytes(&[3u8; 32]).unwrap();
        let mut out = [0u8; MAX_SEALED_REQUEST];
        let mut stream = SealedStream::new();
        stream.push(&[0xffu8; 40]);
        assert_eq!(
            stream.next_message(&server, &mut out),
            Err(StreamError::Garbage)
        );

        // A valid key prefix followed by junk: never authentic.
        let mut stream = SealedStream::new();
        let prefix = sealed(&server, b"x", 40);
        stream.push(&prefix[..33]);
        while stream.push(&[0u8; 100]) > 0 {
            if stream.buffered() < MAX_SEALED_REQUEST {
                assert_eq!(stream.next_message(&server, &mut out), Ok(None));
            }
        }
        assert_eq!(
            stream.next_message(&server, &mut out),
            Err(StreamError::Unframeable)
        );
    }
}
