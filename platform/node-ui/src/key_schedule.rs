//! The pairing's key schedule: transcript hash, token MACs, session keys.
//!
//! Every value here is what WebCrypto computes in `assets/ui.js`, with the
//! same labels; the Chromium test (`tests/chromium.sh`) is what proves the
//! two agree. The labels all start with [`PROTOCOL`] so no value of this
//! protocol can stand in for a value of another one.
//!
//! - transcript `th = SHA-256("keyway-ui/1 transcript" ‖ client_pub ‖ node_pub)`
//!   over both 65-byte uncompressed P-256 keys;
//! - `auth_key = HKDF-SHA-256(salt = none, ikm = token, info = "keyway-ui/1 pairing")`;
//! - the page's proof `HMAC(auth_key, "keyway-ui/1 client" ‖ th)`, the node's
//!   `HMAC(auth_key, "keyway-ui/1 server" ‖ th)`: distinct labels, so neither
//!   side's proof can be reflected back as the other's;
//! - one AES-256-GCM key per direction, `HKDF-SHA-256(salt = th, ikm = ECDH x-coordinate,
//!   info = "keyway-ui/1 client to node" | "keyway-ui/1 node to client")`.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::token::PairingToken;

/// The prefix of every label.
pub const PROTOCOL: &str = "keyway-ui/1";

/// A P-256 public key in SEC1 uncompressed form (what WebCrypto's `raw` export gives).
pub const PUBLIC_KEY_LEN: usize = 65;
/// An HMAC-SHA-256 proof.
pub const MAC_LEN: usize = 32;
/// An AES-256-GCM key.
pub const KEY_LEN: usize = 32;

const TRANSCRIPT_LABEL: &[u8] = b"keyway-ui/1 transcript";
const PAIRING_LABEL: &[u8] = b"keyway-ui/1 pairing";
const CLIENT_PROOF_LABEL: &[u8] = b"keyway-ui/1 client";
const NODE_PROOF_LABEL: &[u8] = b"keyway-ui/1 server";
const CLIENT_TO_NODE_LABEL: &[u8] = b"keyway-ui/1 client to node";
const NODE_TO_CLIENT_LABEL: &[u8] = b"keyway-ui/1 node to client";

/// The hash of both ephemeral public keys, in the order page, node.
pub fn transcript(client_pub: &[u8; PUBLIC_KEY_LEN], node_pub: &[u8; PUBLIC_KEY_LEN]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(TRANSCRIPT_LABEL);
    hash.update(client_pub);
    hash.update(node_pub);
    hash.finalize().into()
}

/// Which side a proof speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prover {
    /// The page, which read the token from its URL.
    Client,
    /// The node, which made the token.
    Node,
}

fn proof_mac(token: &PairingToken, prover: Prover, th: &[u8; 32]) -> Hmac<Sha256> {
    let mut auth_key = [0u8; 32];
    Hkdf::<Sha256>::new(None, token.as_bytes())
        .expand(PAIRING_LABEL, &mut auth_key)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA-256 length"));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&auth_key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(match prover {
        Prover::Client => CLIENT_PROOF_LABEL,
        Prover::Node => NODE_PROOF_LABEL,
    });
    mac.update(th);
    mac
}

/// `prover`'s proof that it knows `token`, bound to this transcript.
pub fn proof(token: &PairingToken, prover: Prover, th: &[u8; 32]) -> [u8; MAC_LEN] {
    proof_mac(token, prover, th).finalize().into_bytes().into()
}

/// Whether `candidate` is `prover`'s proof for `token` and `th`, compared in constant time.
pub fn verify_proof(token: &PairingToken, prover: Prover, th: &[u8; 32], candidate: &[u8]) -> bool {
    proof_mac(token, prover, th).verify_slice(candidate).is_ok()
}

/// The two AES-256-GCM keys of one session. `Debug` hides them.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Seals what the page sends.
    pub client_to_node: [u8; KEY_LEN],
    /// Seals what the node sends.
    pub node_to_client: [u8; KEY_LEN],
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// The session keys from the ECDH shared secret (its x-coordinate, as
/// WebCrypto's `deriveBits` gives it) and the transcript.
pub fn session_keys(shared_x: &[u8; 32], th: &[u8; 32]) -> SessionKeys {
    let hkdf = Hkdf::<Sha256>::new(Some(th), shared_x);
    let mut keys = SessionKeys {
        client_to_node: [0; KEY_LEN],
        node_to_client: [0; KEY_LEN],
    };
    for (info, out) in [
        (CLIENT_TO_NODE_LABEL, &mut keys.client_to_node),
        (NODE_TO_CLIENT_LABEL, &mut keys.node_to_client),
    ] {
        hkdf.expand(info, out)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA-256 length"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(byte: u8) -> PairingToken {
        PairingToken::from_bytes([byte; 32])
    }

    #[test]
    fn labels_share_the_protocol_prefix() {
        for label in [
            TRANSCRIPT_LABEL,
            PAIRING_LABEL,
            CLIENT_PROOF_LABEL,
            NODE_PROOF_LABEL,
            CLIENT_TO_NODE_LABEL,
            NODE_TO_CLIENT_LABEL,
        ] {
            assert!(label.starts_with(PROTOCOL.as_bytes()));
        }
    }

    #[test]
    fn transcript_depends_on_order_and_both_keys() {
        let a = [1u8; PUBLIC_KEY_LEN];
        let b = [2u8; PUBLIC_KEY_LEN];
        assert_ne!(transcript(&a, &b), transcript(&b, &a));
        assert_ne!(transcript(&a, &b), transcript(&a, &a));
        assert_ne!(transcript(&a, &b), transcript(&b, &b));
    }

    #[test]
    fn a_proof_verifies_only_for_its_token_side_and_transcript() {
        let th = [9u8; 32];
        let p = proof(&token(1), Prover::Client, &th);
        assert!(verify_proof(&token(1), Prover::Client, &th, &p));
        assert!(!verify_proof(&token(2), Prover::Client, &th, &p));
        assert!(!verify_proof(&token(1), Prover::Node, &th, &p));
        assert!(!verify_proof(&token(1), Prover::Client, &[8u8; 32], &p));
        assert!(!verify_proof(&token(1), Prover::Client, &th, &p[..31]));
    }

    #[test]
    fn directions_get_different_keys_and_transcripts_different_sessions() {
        let keys = session_keys(&[3u8; 32], &[4u8; 32]);
        assert_ne!(keys.client_to_node, keys.node_to_client);
        assert_ne!(keys, session_keys(&[3u8; 32], &[5u8; 32]));
        assert_ne!(keys, session_keys(&[6u8; 32], &[4u8; 32]));
        assert_eq!(keys, session_keys(&[3u8; 32], &[4u8; 32]));
    }
}
