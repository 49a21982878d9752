//! Sealed frames after pairing: AES-256-GCM with a per-direction counter.
//!
//! A frame is `SEALED ‖ counter (8 bytes, big-endian) ‖ ciphertext ‖ tag (16 bytes)`.
//! The nonce is the counter in 12 big-endian bytes; the 9-byte header is the
//! associated data. Each direction has its own key (see
//! [`crate::key_schedule`]), so a frame cannot be reflected back to its sender.
//!
//! The replay window is zero: a WebSocket runs over one TCP stream, which
//! delivers in order and without loss, so the only frame an honest peer can
//! send next is the one with the next counter. Anything else — an earlier
//! counter (replayed), a later one (reordered or dropped) or a frame that
//! fails authentication (altered) — is refused, the opener's state does not
//! move, and the node's shell closes the session (see [`crate::session`]).
//! The counter travels in clear so that a refusal can say which of the
//! three it was; the key, not the clear counter, is what authenticates it.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};

use crate::key_schedule::{KEY_LEN, SessionKeys};

/// The type byte of a sealed frame.
pub const SEALED: u8 = 0x10;
/// Header length: type byte and counter.
pub const HEADER_LEN: usize = 9;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// The longest frame either side accepts: requests and status replies are
/// small JSON, and a cap keeps a peer from making the other buffer much.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// The longest plaintext that fits in [`MAX_FRAME_LEN`].
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - HEADER_LEN - TAG_LEN;

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a header and a tag.
    #[error("truncated frame")]
    Truncated,
    /// Longer than [`MAX_FRAME_LEN`].
    #[error("frame too long")]
    TooLong,
    /// Not a sealed frame (wrong type byte).
    #[error("not a sealed frame")]
    NotSealed,
    /// A counter already used in this direction.
    #[error("replayed frame (counter {counter}, expected {expected})")]
    Replayed {
        /// The frame's counter.
        counter: u64,
        /// The next counter this side takes.
        expected: u64,
    },
    /// A counter beyond the next one: a frame was skipped or the frames were reordered.
    #[error("reordered frame (counter {counter}, expected {expected})")]
    Reordered {
        /// The frame's counter.
        counter: u64,
        /// The next counter this side takes.
        expected: u64,
    },
    /// The right counter, but authentication failed: altered, or sealed under another key.
    #[error("altered frame (authentication failed at counter {counter})")]
    Altered {
        /// The frame's counter.
        counter: u64,
    },
}

/// Why a frame could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The plaintext is longer than [`MAX_PLAINTEXT_LEN`].
    #[error("message too long to seal")]
    TooLong,
    /// Every counter value was used (2^64 frames): the session must end.
    #[error("frame counter exhausted")]
    CounterExhausted,
}

fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    bytes.into()
}

fn header(counter: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = SEALED;
    h[1..].copy_from_slice(&counter.to_be_bytes());
    h
}

/// Seals one direction's frames.
pub struct Sealer {
    cipher: Aes256Gcm,
    next: Option<u64>,
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer").field("next", &self.next).finish()
    }
}

impl Sealer {
    /// A sealer whose first frame has counter 0.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            next: Some(0),
        }
    }

    /// Seals `plaintext` as the next frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLong);
        }
        let counter = self.next.ok_or(SealError::CounterExhausted)?;
        let head = header(counter);
        let mut frame = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        frame.extend_from_slice(&head);
        frame.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(counter), &head, (&mut frame[HEADER_LEN..]).into())
            .map_err(|_| SealError::TooLong)?;
        frame.extend_from_slice(&tag);
        self.next = counter.checked_add(1);
        Ok(frame)
    }
}

/// Opens the other direction's frames, strictly in order.
pub struct Opener {
    cipher: Aes256Gcm,
    expected: u64,
}

impl core::fmt::Debug for Opener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opener")
            .field("expected", &self.expected)
            .finish()
    }
}

impl Opener {
    /// An opener that takes counter 0 first.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            expected: 0,
        }
    }

    /// The counter the next frame must carry.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Opens the next frame; on any refusal nothing changes.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLong);
        }
        if frame.first().is_some_and(|&t| t != SEALED) {
            return Err(FrameError::NotSealed);
        }
        if frame.len() < HEADER_LEN + TAG_LEN {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = frame.split_at(HEADER_LEN);
        let mut counter_bytes = [0u8; 8];
        counter_bytes.copy_from_slice(&head[1..]);
        let counter = u64::from_be_bytes(counter_bytes);
        let expected = self.expected;
        if counter < expected {
            return Err(FrameError::Replayed { counter, expected });
        }
        if counter > expected {
            return Err(FrameError::Reordered { counter, expected });
        }
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plaintext = ciphertext.to_vec();
        let tag: &Tag = tag.try_into().map_err(|_| FrameError::Truncated)?;
        self.cipher
            .decrypt_inout_detached(&nonce(counter), head, (&mut plaintext[..]).into(), tag)
            .map_err(|_| FrameError::Altered { counter })?;
        // After 2^64 - 1 frames the next one cannot be numbered: the
        // opener then refuses everything as replayed, ending the session.
        self.expected = counter.saturating_add(1);
        Ok(plaintext)
    }
}

/// The node's ends of a session: it seals node → page and opens page → node.
pub fn node_channel(keys: &SessionKeys) -> (Sealer, Opener) {
    (
        Sealer::new(&keys.node_to_client),
        Opener::new(&keys.client_to_node),
    )
}

/// The page's ends (for tests and native clients).
pub fn client_channel(keys: &SessionKeys) -> (Sealer, Opener) {
    (
        Sealer::new(&keys.client_to_node),
        Opener::new(&keys.node_to_client),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_schedule::session_keys;

    fn pair() -> ((Sealer, Opener), (Sealer, Opener)) {
        let keys = session_keys(&[1; 32], &[2; 32]);
        (client_channel(&keys), node_channel(&keys))
    }

    #[test]
    fn frames_open_in_order_both_ways() {
        let ((mut c_seal, mut c_open), (mut n_seal, mut n_open)) = pair();
        for i in 0..5u8 {
            let f = c_seal.seal(&[i; 7]).unwrap();
            assert_eq!(n_open.open(&f).unwrap(), vec![i; 7]);
            let g = n_seal.seal(&[i]).unwrap();
            assert_eq!(c_open.open(&g).unwrap(), vec![i]);
        }
        assert_eq!(n_open.expected(), 5);
        assert_eq!(c_seal.seal(b"").unwrap().len(), HEADER_LEN + TAG_LEN);
    }

    #[test]
    fn a_frame_cannot_be_reflected_to_its_sender() {
        let ((mut c_seal, mut c_open), _) = pair();
        let f = c_seal.seal(b"status").unwrap();
        assert_eq!(c_open.open(&f), Err(FrameError::Altered { counter: 0 }));
    }

    #[test]
    fn replayed_reordered_and_altered_frames_are_refused() {
        let ((mut c_seal, _), (_, mut n_open)) = pair();
        let f0 = c_seal.seal(b"zero").unwrap();
        let f1 = c_seal.seal(b"one").unwrap();
        let f2 = c_seal.seal(b"two").unwrap();
        assert_eq!(
            n_open.open(&f1),
            Err(FrameError::Reordered {
                counter: 1,
                expected: 0
            })
        );
        n_open.open(&f0).unwrap();
        assert_eq!(
            n_open.open(&f0),
            Err(FrameError::Replayed {
                counter: 0,
                expected: 1
            })
        );
        let mut altered = f1.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(
            n_open.open(&altered),
            Err(FrameError::Altered { counter: 1 })
        );
        // A frame moved to the expected counter fails authentication.
        let mut renumbered = f2.clone();
        renumbered[1..HEADER_LEN].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(
            n_open.open(&renumbered),
            Err(FrameError::Altered { counter: 1 })
        );
        assert_eq!(n_open.open(&f1).unwrap(), b"one");
        assert_eq!(n_open.open(&f2).unwrap(), b"two");
    }

    #[test]
    fn short_foreign_and_huge_frames_are_refused() {
        let (_, (_, mut n_open)) = pair();
        assert_eq!(n_open.open(&[]), Err(FrameError::Truncated));
        assert_eq!(n_open.open(&[SEALED; 24]), Err(FrameError::Truncated));
        assert_eq!(n_open.open(&[0x01; 40]), Err(FrameError::NotSealed));
        let huge = vec![SEALED; MAX_FRAME_LEN + 1];
        assert_eq!(n_open.open(&huge), Err(FrameError::TooLong));
        let ((mut c_seal, _), _) = pair();
        assert_eq!(
            c_seal.seal(&vec![0; MAX_PLAINTEXT_LEN + 1]),
            Err(SealError::TooLong)
        );
    }

    #[test]
    fn an_exhausted_sealer_stops() {
        let keys = session_keys(&[1; 32], &[2; 32]);
        let mut sealer = Sealer::new(&keys.client_to_node);
        sealer.next = Some(u64::MAX);
        assert!(sealer.seal(b"last").is_ok());
        assert_eq!(sealer.seal(b"more"), Err(SealError::CounterExhausted));
    }
}
