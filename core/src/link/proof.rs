//! The identity proof: binding a node's long-term secp256k1 key to one
//! Noise session (issue 16, item 2).
//!
//! Each side signs, with ECDSA over SHA-256,
//!
//! ```text
//! SHA-256("keyway-link identity proof v1\0" ‖ role ‖ handshake hash ‖ sender's Noise static key)
//! ```
//!
//! where `role` is 0x49 ('I') from the dialer and 0x52 ('R') from the
//! acceptor. The handshake hash is unique to the session (both ephemeral
//! keys are in it), so a proof cannot be replayed in another session; a
//! relay that runs its own Noise sessions to both ends has two different
//! handshake hashes and its own static key in them, so it can forward
//! neither side's proof; the role byte stops a proof from being reflected
//! back to its signer.

use sha2::{Digest, Sha256};

use crate::identity::{Keypair, PublicKey};
use crate::signature::{SIGNATURE_LEN, SignatureError, sign_digest_sha256, verify_digest_sha256};

use super::noise::KEY_LEN;

const DOMAIN: &[u8] = b"keyway-link identity proof v1\0";

/// Which side of the handshake signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The dialer (Noise initiator).
    Initiator,
    /// The acceptor (Noise responder).
    Responder,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Self::Initiator => b'I',
            Self::Responder => b'R',
        }
    }
}

/// The digest a proof signs.
pub fn proof_digest(
    role: Role,
    handshake_hash: &[u8; KEY_LEN],
    noise_static: &[u8; KEY_LEN],
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    hash.update([role.byte()]);
    hash.update(handshake_hash);
    hash.update(noise_static);
    hash.finalize().into()
}

/// Signs this side's proof.
pub fn sign_proof(
    identity: &Keypair,
    role: Role,
    handshake_hash: &[u8; KEY_LEN],
    noise_static: &[u8; KEY_LEN],
) -> [u8; SIGNATURE_LEN] {
    sign_digest_sha256(identity, &proof_digest(role, handshake_hash, noise_static))
}

/// Checks the peer's proof: `role` is the peer's role, `noise_static` the
/// static key the peer used in this handshake.
pub fn verify_proof(
    key: &PublicKey,
    signature: &[u8; SIGNATURE_LEN],
    role: Role,
    handshake_hash: &[u8; KEY_LEN],
    noise_static: &[u8; KEY_LEN],
) -> Result<(), SignatureError> {
    verify_digest_sha256(
        key,
        &proof_digest(role, handshake_hash, noise_static),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_in_its_session_role_and_key() {
        let kp = Keypair::from_secret_bytes(&[3u8; 32]).unwrap();
        let (h, s) = ([1u8; 32], [2u8; 32]);
        let sig = sign_proof(&kp, Role::Responder, &h, &s);
        verify_proof(kp.public(), &sig, Role::Responder, &h, &s).unwrap();
        assert!(verify_proof(kp.public(), &sig, Role::Initiator, &h, &s).is_err());
        assert!(verify_proof(kp.public(), &sig, Role::Responder, &[9; 32], &s).is_err());
        assert!(verify_proof(kp.public(), &sig, Role::Responder, &h, &[9; 32]).is_err());
        let other = Keypair::from_secret_bytes(&[4u8; 32]).unwrap();
        assert!(verify_proof(other.public(), &sig, Role::Responder, &h, &s).is_err());
    }
}
