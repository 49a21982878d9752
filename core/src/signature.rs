//! ECDSA over secp256k1 with SHA-1, encoded as raw 64-byte `r‖s`.
//!
//! This is what python-ecdsa does by default, and so what namebump and
//! sidewire sign with (namebump spec §2.2; bug 1 there explains why SHA-1
//! stays until a protocol v2). The digest is read as a big-endian integer
//! with no truncation (160 < 256 bits).
//!
//! Signing is deterministic (RFC 6979 with HMAC-SHA1, so the reference's
//! `sign_deterministic(hashfunc=sha1)` gives the same bytes) and emits low-S.
//! Verification accepts high-S too: the reference signs with random nonces
//! and no normalisation, so half of its signatures are high-S (bug 2).

use core::fmt;

use ecdsa::hazmat;
use k256::Secp256k1;
use sha1::{Digest, Sha1};

use crate::identity::{Keypair, PublicKey};

/// Length of a raw `r‖s` signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a SHA-1 digest.
pub const DIGEST_LEN: usize = 20;

/// The signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// `r` or `s` is zero or not below the group order.
    OutOfRange,
    /// The equation does not hold for this key and message.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("signature scalars out of range"),
            Self::Mismatch => f.write_str("signature does not match the key and message"),
        }
    }
}

impl core::error::Error for SignatureError {}

/// SHA-1 fed in pieces, so a packet's fields can be hashed without first
/// serialising them into a buffer.
#[derive(Clone, Debug, Default)]
pub struct Sha1Stream(Sha1);

impl Sha1Stream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    pub fn finish(self) -> [u8; DIGEST_LEN] {
        self.0.finalize().into()
    }
}

/// SHA-1 of a message given in pieces.
pub fn sha1_digest<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> [u8; DIGEST_LEN] {
    let mut hasher = Sha1Stream::new();
    for piece in pieces {
        hasher.update(piece);
    }
    hasher.finish()
}

/// Signs a SHA-1 digest (RFC 6979 nonce with HMAC-SHA1, low-S).
pub fn sign_digest(keypair: &Keypair, digest: &[u8; DIGEST_LEN]) -> [u8; SIGNATURE_LEN] {
    let (signature, _) =
        hazmat::sign_prehashed_rfc6979::<Secp256k1, Sha1>(&keypair.scalar(), digest, &[]);
    signature.to_bytes().into()
}

/// Verifies a raw `r‖s` signature over a SHA-1 digest, accepting high-S.
pub fn verify_digest(
    key: &PublicKey,
    digest: &[u8; DIGEST_LEN],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    let signature =
        k256::ecdsa::Signature::from_slice(signature).map_err(|_| SignatureError::OutOfRange)?;
    // k256 insists on low-S; (r, s) and (r, n-s) are equally valid ECDSA
    // signatures, so normalising first accepts exactly what the reference does.
    let signature = signature.normalize_s();
    hazmat::verify_prehashed::<Secp256k1>(&key.point().to_projective(), digest, &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs a SHA-256 digest (RFC 6979 nonce with HMAC-SHA256, low-S).
///
/// For Keyway's own protocols (the link identity proof, issue 16), which
/// owe nothing to the reference and so need not sign SHA-1.
pub fn sign_digest_sha256(keypair: &Keypair, digest: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    let (signature, _) =
        hazmat::sign_prehashed_rfc6979::<Secp256k1, sha2::Sha256>(&keypair.scalar(), digest, &[]);
    signature.to_bytes().into()
}

/// Verifies a raw `r‖s` signature over a SHA-256 digest. Only low-S is
/// accepted: Keyway's own signers never emit high-S, so there is no reason
/// to allow a second encoding of the same signature.
pub fn verify_digest_sha256(
    key: &PublicKey,
    digest: &[u8; 32],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    let signature =
        k256::ecdsa::Signature::from_slice(signature).map_err(|_| SignatureError::OutOfRange)?;
    if signature.normalize_s() != signature {
        return Err(SignatureError::Mismatch);
    }
    hazmat::verify_prehashed::<Secp256k1>(&key.point().to_projective(), digest, &signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_pieces_equal_whole() {
        assert_eq!(
            sha1_digest([b"ab".as_slice(), b"c"]),
            sha1_digest([b"abc".as_slice()])
        );
    }

    #[test]
    fn signs_low_s_and_accepts_the_high_s_twin() {
        let kp = Keypair::from_secret_bytes(&[7u8; 32]).unwrap();
        let digest = sha1_digest([b"hello".as_slice()]);
        let sig = sign_digest(&kp, &digest);
        verify_digest(kp.public(), &digest, &sig).unwrap();
        let parsed = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert_eq!(parsed.normalize_s(), parsed, "signer must emit low-S");
        // (r, n - s) is the high-S twin of the same signature.
        let (r, s) = parsed.split_scalars();
        let twin = k256::ecdsa::Signature::from_scalars(*r, -*s).unwrap();
        verify_digest(kp.public(), &digest, &twin.to_bytes().into()).unwrap();
        let other = sha1_digest([b"hellp".as_slice()]);
        assert_eq!(
            verify_digest(kp.public(), &other, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_digest(kp.public(), &digest, &[0u8; 64]),
            Err(SignatureError::OutOfRange)
        );
    }

    #[test]
    fn sha256_signatures_verify_and_refuse_high_s() {
        let kp = Keypair::from_secret_bytes(&[7u8; 32]).unwrap();
        let digest = [0x5a; 32];
        let sig = sign_digest_sha256(&kp, &digest);
        verify_digest_sha256(kp.public(), &digest, &sig).unwrap();
        let parsed = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let twin = k256::ecdsa::Signature::from_scalars(*r, -*s).unwrap();
        assert_eq!(
            verify_digest_sha256(kp.public(), &digest, &twin.to_bytes().into()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_digest_sha256(kp.public(), &[0x5b; 32], &sig),
            Err(SignatureError::Mismatch)
        );
    }
}
