//! A record's signed fields and the exact 136-byte string Ed25519 signs
//! (spec §3–§4).
//!
//! Only hashes of the key, type and value are signed, so a record's
//! metadata ([`Meta`]) is fixed-size and verifiable without its value: the
//! chain algorithms work on it alone, and the store keeps the bodies.

use core::fmt;

use blake2::{Blake2b, Digest, digest::consts::U32};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// BLAKE2b-256 (libsodium's `crypto_generichash` defaults).
pub type Hash = [u8; 32];

/// Length of the signed string.
pub const SIGNED_LEN: usize = 136;

/// Largest id, `prev`, `modified` or `prevchange`: ids are signed as u64
/// but stored as SQLite's i64 (spec D6), and times are i64 µs.
pub const MAX_FIELD: u64 = i64::MAX as u64;

/// BLAKE2b-256 of `data`.
pub fn hash(data: &[u8]) -> Hash {
    Blake2b::<U32>::digest(data).into()
}

/// Everything a record's signature covers, plus the signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Position in the ID chain, 1 ..= 2^63 − 1.
    pub id: u64,
    /// Application time, µs since the epoch (may be anything, even negative).
    pub timestamp: i64,
    /// Version time, µs: unique in the chain, set by the owner's clock.
    pub modified: i64,
    /// Id of the previous record in the ID chain; 0: none.
    pub prev: u64,
    /// `modified` of the previous record in the mchain; 0: none.
    pub prevchange: i64,
    pub key_hash: Hash,
    pub value_hash: Hash,
    pub type_hash: Hash,
    pub signature: [u8; 64],
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("modified", &self.modified)
            .field("prev", &self.prev)
            .field("prevchange", &self.prevchange)
            .finish_non_exhaustive()
    }
}

/// Why a record's fields or signature are not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// An id, pointer or time outside what the format can hold, or a
    /// pointer that does not point backwards.
    OutOfRange,
    /// The value does not hash to the signed value hash.
    ValueHash,
    /// The signature does not verify under the stream's key.
    Signature,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfRange => "a record field is out of range",
            Self::ValueHash => "the value does not match the record's hash",
            Self::Signature => "the record's signature does not verify",
        })
    }
}

impl core::error::Error for RecordError {}

impl Meta {
    /// A record to be signed: `signature` is zero until [`Self::sign`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        timestamp: i64,
        modified: i64,
        prev: u64,
        prevchange: i64,
        key: &str,
        kind: &str,
        value_hash: Hash,
    ) -> Self {
        Self {
            id,
            timestamp,
            modified,
            prev,
            prevchange,
            key_hash: hash(key.as_bytes()),
            value_hash,
            type_hash: hash(kind.as_bytes()),
            signature: [0; 64],
        }
    }

    /// The exact string Ed25519 signs: id (u64 LE), timestamp, modified,
    /// prev, prevchange (i64 LE), then the key, value and type hashes.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.timestamp.to_le_bytes());
        out[16..24].copy_from_slice(&self.modified.to_le_bytes());
        out[24..32].copy_from_slice(&self.prev.to_le_bytes());
        out[32..40].copy_from_slice(&self.prevchange.to_le_bytes());
        out[40..72].copy_from_slice(&self.key_hash);
        out[72..104].copy_from_slice(&self.value_hash);
        out[104..136].copy_from_slice(&self.type_hash);
        out
    }

    pub fn sign(&mut self, key: &SigningKey) {
        self.signature = key.sign(&self.signed_bytes()).to_bytes();
    }

    /// Checks the fields' ranges and the signature under `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), RecordError> {
        self.check_ranges()?;
        key.verify(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| RecordError::Signature)
    }

    /// Ids and pointers in range; both pointers strictly backwards.
    pub fn check_ranges(&self) -> Result<(), RecordError> {
        let ok = (1..=MAX_FIELD).contains(&self.id)
            && self.prev < self.id
            && self.modified > 0
            && (0..self.modified).contains(&self.prevchange);
        if ok {
            Ok(())
        } else {
            Err(RecordError::OutOfRange)
        }
    }

    /// Checks that `value` is the signed value.
    pub fn check_value(&self, value: &[u8]) -> Result<(), RecordError> {
        if hash(value) == self.value_hash {
            Ok(())
        } else {
            Err(RecordError::ValueHash)
        }
    }

    /// Whether `self` is `held` re-pointed further back: the same record
    /// (id, times, hashes) with a smaller `prevchange` — what a silent
    /// patch looks like. The signature is not checked here.
    pub fn repoints(&self, held: &Meta) -> bool {
        let aligned = Meta {
            prevchange: held.prevchange,
            signature: held.signature,
            ..*self
        };
        aligned == *held && self.prevchange < held.prevchange
    }

    /// The same record pointing at another mchain predecessor, re-signed:
    /// the owner's "silent patch" (spec §1), `modified` unchanged.
    pub fn repointed(&self, prevchange: i64, key: &SigningKey) -> Self {
        let mut patched = *self;
        patched.prevchange = prevchange;
        patched.sign(key);
        patched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake2b_256_matches_libsodium() {
        assert_eq!(
            hash(b""),
            *b"\x0e\x57\x51\xc0\x26\xe5\x43\xb2\xe8\xab\x2e\xb0\x60\x99\xda\xa1\xd1\xe5\xdf\x47\x77\x8f\x77\x87\xfa\xab\x45\xcd\xf1\x2f\xe3\xa8"
        );
    }

    #[test]
    fn a_patch_changes_only_the_pointer_and_moves_it_back() {
        let held = Meta::new(2, 0, 10, 1, 5, "k", "obj", [0; 32]);
        assert!(
            Meta {
                prevchange: 3,
                signature: [1; 64],
                ..held
            }
            .repoints(&held)
        );
        assert!(
            !Meta {
                prevchange: 6,
                ..held
            }
            .repoints(&held),
            "forward"
        );
        assert!(
            !Meta {
                prevchange: 3,
                modified: 11,
                ..held
            }
            .repoints(&held)
        );
        assert!(
            !Meta {
                prevchange: 3,
                value_hash: [1; 32],
                ..held
            }
            .repoints(&held)
        );
    }

    #[test]
    fn ranges_refuse_forward_pointers_and_id_zero() {
        let ok = Meta::new(2, 0, 10, 1, 5, "k", "obj", [0; 32]);
        assert_eq!(ok.check_ranges(), Ok(()));
        for bad in [
            Meta {
                id: 0,
                prev: 0,
                ..ok
            },
            Meta { prev: 2, ..ok },
            Meta {
                prevchange: 10,
                ..ok
            },
            Meta {
                modified: 0,
                prevchange: 0,
                ..ok
            },
            Meta {
                prevchange: -1,
                ..ok
            },
            Meta {
                id: MAX_FIELD + 1,
                ..ok
            },
        ] {
            assert_eq!(bad.check_ranges(), Err(RecordError::OutOfRange), "{bad:?}");
        }
    }
}
