//! The owner-signed write request, which is also the stream record.
//!
//! ```text
//! version (1) = 1
//! op (1)                 1 register, 2 delete
//! owner (33)             compressed secp256k1 key: who asks
//! registry (32)          the registry's Drayer stream key: where
//! timestamp (8)          Unix milliseconds, big-endian: when
//! name length (1)        3 ..= 32
//! name (n)               canonical (folded) username
//! signature (64)         ECDSA/secp256k1 r‖s, low-S, over
//!                        SHA-256("keyway-registry write v1\0" ‖ all bytes above)
//! ```
//!
//! 140 + n bytes, at most [`MAX_REQUEST_LEN`]. The signature is the one
//! link identities prove themselves with (ECDSA over SHA-256, low-S
//! only), made by the owner's identity key: the server appends these exact
//! bytes to its stream, so any reader can check that the owner asked for
//! this name, not only that the server published it. The registry key
//! stops a request from being replayed at another registry; the timestamp
//! (fresh within [`super::decide::FRESH_WINDOW_MS`] and newer than the
//! owner's last accepted one) stops it from being replayed at this one.
//!
//! Decoding accepts exactly one encoding of each request (no trailing
//! bytes, canonical name, low-S), so re-encoding a decoded request gives
//! the bytes that were signed.

use core::fmt;

use sha2::{Digest, Sha256};

use crate::identity::{KeyError, Keypair, PUBLIC_KEY_LEN, PublicKey};
use crate::signature::{SIGNATURE_LEN, SignatureError, sign_digest_sha256, verify_digest_sha256};

use super::username::{MAX_LEN, MIN_LEN, Username, UsernameError};

/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of a registry (Drayer stream) public key.
pub const REGISTRY_KEY_LEN: usize = 32;
/// Bytes before the name.
const HEAD_LEN: usize = 1 + 1 + PUBLIC_KEY_LEN + REGISTRY_KEY_LEN + 8 + 1;
/// Shortest encoded request.
pub const MIN_REQUEST_LEN: usize = HEAD_LEN + MIN_LEN + SIGNATURE_LEN;
/// Longest encoded request (a server refuses bigger bodies unread).
pub const MAX_REQUEST_LEN: usize = HEAD_LEN + MAX_LEN + SIGNATURE_LEN;

const DOMAIN: &[u8] = b"keyway-registry write v1\0";

/// What a write asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Claim a name.
    Register,
    /// Give a name up.
    Delete,
}

impl Op {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Register => 1,
            Self::Delete => 2,
        }
    }

    /// The op of a wire byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Register),
            2 => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Why bytes are not a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its fields need.
    Truncated,
    /// Longer than its fields (trailing bytes) or than [`MAX_REQUEST_LEN`].
    TooLong,
    /// A version this code does not read.
    Version(u8),
    /// An unknown op byte.
    Op(u8),
    /// The owner key is not a compressed secp256k1 point.
    Owner(KeyError),
    /// The name is not a canonical username.
    Name(UsernameError),
    /// The signature is high-S (a second encoding of a valid one).
    NotCanonical,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("request is truncated"),
            Self::TooLong => f.write_str("request has trailing bytes or is too long"),
            Self::Version(v) => write!(f, "unknown request version {v}"),
            Self::Op(o) => write!(f, "unknown request op {o}"),
            Self::Owner(e) => write!(f, "owner key: {e}"),
            Self::Name(e) => write!(f, "name: {e}"),
            Self::NotCanonical => f.write_str("signature is not in canonical (low-S) form"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// The output buffer is smaller than [`SignedRequest::encoded_len`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output buffer too small")
    }
}

impl core::error::Error for BufferTooSmall {}

/// A write request's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    pub op: Op,
    pub name: Username,
    pub owner: PublicKey,
    pub registry: [u8; REGISTRY_KEY_LEN],
    pub timestamp_ms: u64,
}

impl WriteRequest {
    fn encode_head(&self, out: &mut [u8]) -> usize {
        let name = self.name.as_bytes();
        out[0] = VERSION;
        out[1] = self.op.to_byte();
        out[2..35].copy_from_slice(self.owner.as_bytes());
        out[35..67].copy_from_slice(&self.registry);
        out[67..75].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[75] = name.len() as u8;
        out[HEAD_LEN..HEAD_LEN + name.len()].copy_from_slice(name);
        HEAD_LEN + name.len()
    }

    /// The digest the owner signs.
    pub fn digest(&self) -> [u8; 32] {
        let mut unsigned = [0u8; MAX_REQUEST_LEN - SIGNATURE_LEN];
        let n = self.encode_head(&mut unsigned);
        let mut hash = Sha256::new();
        hash.update(DOMAIN);
        hash.update(&unsigned[..n]);
        hash.finalize().into()
    }

    /// Signs the request with the owner's key (whose public key becomes
    /// `owner`).
    pub fn sign(
        op: Op,
        name: Username,
        registry: [u8; REGISTRY_KEY_LEN],
        timestamp_ms: u64,
        owner: &Keypair,
    ) -> SignedRequest {
        let request = Self {
            op,
            name,
            owner: *owner.public(),
            registry,
            timestamp_ms,
        };
        let signature = sign_digest_sha256(owner, &request.digest());
        SignedRequest { request, signature }
    }
}

/// A request with the owner's signature: what a client sends and what the
/// registry's stream records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    pub request: WriteRequest,
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedRequest {
    /// Bytes [`Self::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        HEAD_LEN + self.request.name.as_bytes().len() + SIGNATURE_LEN
    }

    /// Writes the request; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.encoded_len();
        let out = out.get_mut(..len).ok_or(BufferTooSmall)?;
        let n = self.request.encode_head(out);
        out[n..].copy_from_slice(&self.signature);
        Ok(len)
    }

    /// Reads a request (structure only: call [`Self::verify`] for the
    /// signature).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(DecodeError::TooLong);
        }
        if bytes.len() < HEAD_LEN {
            return Err(DecodeError::Truncated);
        }
        if bytes[0] != VERSION {
            return Err(DecodeError::Version(bytes[0]));
        }
        let op = Op::from_byte(bytes[1]).ok_or(DecodeError::Op(bytes[1]))?;
        let name_len = usize::from(bytes[75]);
        let total = HEAD_LEN + name_len + SIGNATURE_LEN;
        if bytes.len() < total {
            return Err(DecodeError::Truncated);
        }
        if bytes.len() > total {
            return Err(DecodeError::TooLong);
        }
        let owner = PublicKey::from_bytes(&bytes[2..35]).map_err(DecodeError::Owner)?;
        let mut registry = [0u8; REGISTRY_KEY_LEN];
        registry.copy_from_slice(&bytes[35..67]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[67..75]);
        let name = Username::from_canonical(&bytes[HEAD_LEN..HEAD_LEN + name_len])
            .map_err(DecodeError::Name)?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[HEAD_LEN + name_len..]);
        if !is_low_s(&signature) {
            return Err(DecodeError::NotCanonical);
        }
        Ok(Self {
            request: WriteRequest {
                op,
                name,
                owner,
                registry,
                timestamp_ms: u64::from_be_bytes(ts),
            },
            signature,
        })
    }

    /// Checks the owner's signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        verify_digest_sha256(&self.request.owner, &self.request.digest(), &self.signature)
    }
}

/// Whether `s` (the second half) is at most n/2, so each signature has one
/// encoding. Scalars out of range are left to verification.
fn is_low_s(signature: &[u8; SIGNATURE_LEN]) -> bool {
    // n/2 for secp256k1, big-endian.
    const HALF_ORDER: [u8; 32] = [
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b,
        0x20, 0xa0,
    ];
    signature[32..] <= HALF_ORDER[..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::UnwrapErr;

    fn keypair() -> Keypair {
        Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
    }

    #[test]
    fn signs_encodes_decodes_verifies() {
        let owner = keypair();
        let name = Username::fold("Alice").unwrap();
        let signed = WriteRequest::sign(Op::Register, name, [7; 32], 1_795_000_000_000, &owner);
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut buf).unwrap();
        assert_eq!(n, 140 + 5);
        let back = SignedRequest::decode(&buf[..n]).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
        // Any changed signed field breaks the signature.
        let mut other = back;
        other.request.op = Op::Delete;
        assert!(other.verify().is_err());
        let mut other = back;
        other.request.timestamp_ms += 1;
        assert!(other.verify().is_err());
        let mut other = back;
        other.request.owner = *keypair().public();
        assert!(other.verify().is_err());
    }

    #[test]
    fn low_s_boundary() {
        let mut sig = [0u8; 64];
        sig[32] = 0x7f;
        assert!(is_low_s(&sig));
        sig[32] = 0x80;
        assert!(!is_low_s(&sig));
    }

    #[test]
    fn refuses_trailing_and_short() {
        let signed = WriteRequest::sign(
            Op::Delete,
            Username::fold("bob").unwrap(),
            [1; 32],
            5,
            &keypair(),
        );
        let mut buf = [0u8; MAX_REQUEST_LEN + 1];
        let n = signed.encode(&mut buf).unwrap();
        assert_eq!(
            SignedRequest::decode(&buf[..n + 1]),
            Err(DecodeError::TooLong)
        );
        assert_eq!(
            SignedRequest::decode(&buf[..n - 1]),
            Err(DecodeError::Truncated)
        );
        assert!(signed.encode(&mut buf[..n - 1]).is_err());
    }
}
