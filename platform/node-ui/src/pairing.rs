//! The pairing exchange: ephemeral ECDH on P-256, authenticated by the token.
//!
//! Four WebSocket binary messages, each a type byte and a fixed-size body:
//!
//! | # | from | type | body |
//! |---|------|------|------|
//! | 1 | page | [`HELLO`] | page's ephemeral public key (65 bytes) |
//! | 2 | node | [`KEY`] | node's ephemeral public key (65 bytes) |
//! | 3 | page | [`CONFIRM`] | page's proof of the token over the transcript (32 bytes) |
//! | 4 | node | [`PROOF`] | node's proof of the token over the transcript (32 bytes) |
//!
//! The node checks the page's proof first and sends nothing keyed by the
//! token before it: a party without the token learns nothing it could test
//! guesses against, and is refused at message 3. An unauthenticated ECDH (the
//! seed's design) would hand a session to any local process that connects;
//! here both proofs cover both ephemeral keys, so a process in the middle
//! that substitutes its own key breaks both. P-256 rather than X25519: it
//! is the curve every browser's WebCrypto has had for ECDH for a decade,
//! while WebCrypto X25519 only arrived in 2023–2025 releases, and the page
//! must work in whatever browser the node's owner has.

use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};

use crate::key_schedule::{
    MAC_LEN, PUBLIC_KEY_LEN, Prover, SessionKeys, proof, session_keys, transcript, verify_proof,
};
use crate::token::{PairingToken, RedeemError, TokenSlot};

/// Message 1, page → node.
pub const HELLO: u8 = 0x01;
/// Message 2, node → page.
pub const KEY: u8 = 0x02;
/// Message 3, page → node.
pub const CONFIRM: u8 = 0x03;
/// Message 4, node → page.
pub const PROOF: u8 = 0x04;

/// Length of messages 1 and 2.
pub const KEY_MESSAGE_LEN: usize = 1 + PUBLIC_KEY_LEN;
/// Length of messages 3 and 4.
pub const PROOF_MESSAGE_LEN: usize = 1 + MAC_LEN;

/// Why a pairing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// A message arrived that this step does not take (wrong type, or after the end).
    #[error("unexpected pairing message (wanted {expected})")]
    Unexpected {
        /// The message this step takes.
        expected: &'static str,
    },
    /// The message has the right type but the wrong length.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// The public key is not an uncompressed point on P-256.
    #[error("not an uncompressed P-256 public key")]
    BadPublicKey,
    /// The ephemeral secret the caller drew is zero or not below the group order.
    #[error("ephemeral secret out of range; draw another")]
    BadSecret,
    /// The page did not prove the outstanding token.
    #[error("pairing refused: {0}")]
    Refused(RedeemError),
    /// The node's proof is wrong: whoever answered does not hold the token.
    #[error("the node did not prove the pairing token")]
    NodeUnproven,
}

fn secret_key(ephemeral: &[u8; 32]) -> Result<SecretKey, PairingError> {
    SecretKey::from_slice(ephemeral).map_err(|_| PairingError::BadSecret)
}

fn public_bytes(secret: &SecretKey) -> [u8; PUBLIC_KEY_LEN] {
    let point = secret.public_key().to_sec1_point(false);
    let mut out = [0u8; PUBLIC_KEY_LEN];
    out.copy_from_slice(point.as_bytes());
    out
}

/// Parses a key message body: only the uncompressed form WebCrypto exports,
/// so there is one encoding to get right.
fn peer_key(body: &[u8]) -> Result<([u8; PUBLIC_KEY_LEN], PublicKey), PairingError> {
    let bytes: [u8; PUBLIC_KEY_LEN] = body.try_into().map_err(|_| PairingError::BadPublicKey)?;
    if bytes[0] != 0x04 {
        return Err(PairingError::BadPublicKey);
    }
    let key = PublicKey::from_sec1_bytes(&bytes).map_err(|_| PairingError::BadPublicKey)?;
    Ok((bytes, key))
}

fn shared_x(secret: &SecretKey, peer: &PublicKey) -> [u8; 32] {
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let mut out = [0u8; 32];
    out.copy_from_slice(shared.raw_secret_bytes());
    out
}

fn body<'a>(
    message: &'a [u8],
    kind: u8,
    name: &'static str,
    len: usize,
) -> Result<&'a [u8], PairingError> {
    match message.split_first() {
        Some((&k, body)) if k == kind => {
            if message.len() == len {
                Ok(body)
            } else {
                Err(PairingError::Malformed(name))
            }
        }
        _ => Err(PairingError::Unexpected { expected: name }),
    }
}

#[derive(Debug)]
enum ResponderStep {
    AwaitHello,
    AwaitConfirm { th: [u8; 32], keys: SessionKeys },
    Done,
}

/// The node's side of one pairing (one WebSocket connection).
#[derive(Debug)]
pub struct Responder {
    secret: SecretKey,
    step: ResponderStep,
}

impl Responder {
    /// A responder with an ephemeral secret the caller drew from a secure RNG.
    pub fn new(ephemeral: &[u8; 32]) -> Result<Self, PairingError> {
        Ok(Self {
            secret: secret_key(ephemeral)?,
            step: ResponderStep::AwaitHello,
        })
    }

    /// Takes message 1 and returns message 2.
    pub fn handle_hello(&mut self, message: &[u8]) -> Result<[u8; KEY_MESSAGE_LEN], PairingError> {
        let ResponderStep::AwaitHello = self.step else {
            return Err(self.unexpected());
        };
        let (client_pub, client_key) = peer_key(body(message, HELLO, "hello", KEY_MESSAGE_LEN)?)?;
        let node_pub = public_bytes(&self.secret);
        let th = transcript(&client_pub, &node_pub);
        let keys = session_keys(&shared_x(&self.secret, &client_key), &th);
        self.step = ResponderStep::AwaitConfirm { th, keys };
        let mut reply = [0u8; KEY_MESSAGE_LEN];
        reply[0] = KEY;
        reply[1..].copy_from_slice(&node_pub);
        Ok(reply)
    }

    /// Takes message 3: if it proves the slot's token, uses the token up
    /// and returns message 4 and the session keys. A wrong proof leaves the
    /// token for the owner; this responder is finished either way.
    pub fn handle_confirm(
        &mut self,
        message: &[u8],
        slot: &mut TokenSlot,
    ) -> Result<([u8; PROOF_MESSAGE_LEN], SessionKeys), PairingError> {
        let ResponderStep::AwaitConfirm { th, keys } =
            core::mem::replace(&mut self.step, ResponderStep::Done)
        else {
            return Err(PairingError::Unexpected {
                expected: "nothing",
            });
        };
        let candidate = body(message, CONFIRM, "confirm", PROOF_MESSAGE_LEN)?;
        let token = slot
            .redeem(|token| verify_proof(token, Prover::Client, &th, candidate))
            .map_err(PairingError::Refused)?;
        let mut reply = [0u8; PROOF_MESSAGE_LEN];
        reply[0] = PROOF;
        reply[1..].copy_from_slice(&proof(&token, Prover::Node, &th));
        Ok((reply, keys))
    }

    fn unexpected(&self) -> PairingError {
        PairingError::Unexpected {
            expected: match self.step {
                ResponderStep::AwaitHello => "hello",
                ResponderStep::AwaitConfirm { .. } => "confirm",
                ResponderStep::Done => "nothing",
            },
        }
    }
}

#[derive(Debug)]
enum InitiatorStep {
    AwaitKey,
    AwaitProof { th: [u8; 32], keys: SessionKeys },
    Done,
}

/// The page's side, in Rust: what `assets/ui.js` does, for tests and any
/// native client.
#[derive(Debug)]
pub struct Initiator {
    secret: SecretKey,
    token: PairingToken,
    step: InitiatorStep,
}

impl Initiator {
    /// Starts a pairing with `token`; returns message 1.
    pub fn new(
        ephemeral: &[u8; 32],
        token: PairingToken,
    ) -> Result<(Self, [u8; KEY_MESSAGE_LEN]), PairingError> {
        let secret = secret_key(ephemeral)?;
        let mut hello = [0u8; KEY_MESSAGE_LEN];
        hello[0] = HELLO;
        hello[1..].copy_from_slice(&public_bytes(&secret));
        let initiator = Self {
            secret,
            token,
            step: InitiatorStep::AwaitKey,
        };
        Ok((initiator, hello))
    }

    /// Takes message 2 and returns message 3.
    pub fn handle_key(&mut self, message: &[u8]) -> Result<[u8; PROOF_MESSAGE_LEN], PairingError> {
        let InitiatorStep::AwaitKey = self.step else {
            return Err(PairingError::Unexpected { expected: "proof" });
        };
        let (node_pub, node_key) = peer_key(body(message, KEY, "key", KEY_MESSAGE_LEN)?)?;
        let client_pub = public_bytes(&self.secret);
        let th = transcript(&client_pub, &node_pub);
        let keys = session_keys(&shared_x(&self.secret, &node_key), &th);
        self.step = InitiatorStep::AwaitProof { th, keys };
        let mut reply = [0u8; PROOF_MESSAGE_LEN];
        reply[0] = CONFIRM;
        reply[1..].copy_from_slice(&proof(&self.token, Prover::Client, &th));
        Ok(reply)
    }

    /// Takes message 4 and returns the session keys if the node proved the token.
    pub fn handle_proof(&mut self, message: &[u8]) -> Result<SessionKeys, PairingError> {
        let InitiatorStep::AwaitProof { th, keys } =
            core::mem::replace(&mut self.step, InitiatorStep::Done)
        else {
            return Err(PairingError::Unexpected { expected: "key" });
        };
        let candidate = body(message, PROOF, "proof", PROOF_MESSAGE_LEN)?;
        if !verify_proof(&self.token, Prover::Node, &th, candidate) {
            return Err(PairingError::NodeUnproven);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(byte: u8) -> PairingToken {
        PairingToken::from_bytes([byte; 32])
    }

    fn secret(byte: u8) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[31] = byte;
        s[0] = 1;
        s
    }

    #[test]
    fn both_sides_agree_on_keys_with_the_right_token() {
        let mut slot = TokenSlot::new(token(1));
        let (mut page, hello) = Initiator::new(&secret(2), token(1)).unwrap();
        let mut node = Responder::new(&secret(3)).unwrap();
        let key = node.handle_hello(&hello).unwrap();
        let confirm = page.handle_key(&key).unwrap();
        let (proof, node_keys) = node.handle_confirm(&confirm, &mut slot).unwrap();
        let page_keys = page.handle_proof(&proof).unwrap();
        assert_eq!(page_keys, node_keys);
        assert!(!slot.is_armed(), "a successful pairing uses the token up");
    }

    #[test]
    fn a_wrong_token_is_refused_and_the_right_one_still_pairs() {
        let mut slot = TokenSlot::new(token(1));
        let (mut page, hello) = Initiator::new(&secret(2), token(9)).unwrap();
        let mut node = Responder::new(&secret(3)).unwrap();
        let confirm = page
            .handle_key(&node.handle_hello(&hello).unwrap())
            .unwrap();
        assert_eq!(
            node.handle_confirm(&confirm, &mut slot).unwrap_err(),
            PairingError::Refused(RedeemError::Wrong)
        );
        assert!(slot.is_armed());

        let (mut page, hello) = Initiator::new(&secret(4), token(1)).unwrap();
        let mut node = Responder::new(&secret(5)).unwrap();
        let confirm = page
            .handle_key(&node.handle_hello(&hello).unwrap())
            .unwrap();
        assert!(node.handle_confirm(&confirm, &mut slot).is_ok());
    }

    #[test]
    fn a_used_token_pairs_no_second_page() {
        let mut slot = TokenSlot::new(token(1));
        for (i, expected) in [(0u8, Ok(())), (1, Err(RedeemError::Used))] {
            let (mut page, hello) = Initiator::new(&secret(10 + i), token(1)).unwrap();
            let mut node = Responder::new(&secret(20 + i)).unwrap();
            let confirm = page
                .handle_key(&node.handle_hello(&hello).unwrap())
                .unwrap();
            let got = node.handle_confirm(&confirm, &mut slot).map(|_| ());
            assert_eq!(got, expected.map_err(PairingError::Refused));
        }
    }

    #[test]
    fn a_replayed_confirm_from_another_session_is_refused() {
        // A local process that saw a page's message 3 cannot reuse it: the
        // proof covers the node's fresh ephemeral key.
        let mut slot = TokenSlot::new(token(1));
        let (mut page, hello) = Initiator::new(&secret(2), token(1)).unwrap();
        let mut first = Responder::new(&secret(3)).unwrap();
        let confirm = page
            .handle_key(&first.handle_hello(&hello).unwrap())
            .unwrap();
        let mut second = Responder::new(&secret(4)).unwrap();
        second.handle_hello(&hello).unwrap();
        assert_eq!(
            second.handle_confirm(&confirm, &mut slot).unwrap_err(),
            PairingError::Refused(RedeemError::Wrong)
        );
    }

    #[test]
    fn a_substituted_node_key_breaks_the_pairing() {
        let mut slot = TokenSlot::new(token(1));
        let (mut page, hello) = Initiator::new(&secret(2), token(1)).unwrap();
        let mut node = Responder::new(&secret(3)).unwrap();
        node.handle_hello(&hello).unwrap();
        let mut intruder = Responder::new(&secret(7)).unwrap();
        let forged_key = intruder.handle_hello(&hello).unwrap();
        let confirm = page.handle_key(&forged_key).unwrap();
        assert!(matches!(
            node.handle_confirm(&confirm, &mut slot),
            Err(PairingError::Refused(RedeemError::Wrong))
        ));
    }

    #[test]
    fn a_node_without_the_token_is_not_believed() {
        let (mut page, hello) = Initiator::new(&secret(2), token(1)).unwrap();
        let mut impostor = Responder::new(&secret(3)).unwrap();
        let confirm = page
            .handle_key(&impostor.handle_hello(&hello).unwrap())
            .unwrap();
        // The impostor's own slot holds another token; it cannot prove token(1).
        let mut own = TokenSlot::new(token(9));
        assert!(impostor.handle_confirm(&confirm, &mut own).is_err());
        let mut fake_proof = [0u8; PROOF_MESSAGE_LEN];
        fake_proof[0] = PROOF;
        assert_eq!(
            page.handle_proof(&fake_proof),
            Err(PairingError::NodeUnproven)
        );
    }

    #[test]
    fn malformed_and_out_of_turn_messages_are_refused() {
        let mut node = Responder::new(&secret(3)).unwrap();
        let mut slot = TokenSlot::new(token(1));
        assert!(matches!(
            node.handle_confirm(&[CONFIRM; PROOF_MESSAGE_LEN], &mut slot),
            Err(PairingError::Unexpected { .. })
        ));
        let mut node = Responder::new(&secret(3)).unwrap();
        assert_eq!(
            node.handle_hello(&[HELLO; 10]),
            Err(PairingError::Malformed("hello"))
        );
        let mut bad_point = [0u8; KEY_MESSAGE_LEN];
        bad_point[0] = HELLO;
        bad_point[1] = 0x04;
        assert_eq!(
            node.handle_hello(&bad_point),
            Err(PairingError::BadPublicKey)
        );
        let (_, hello) = Initiator::new(&secret(2), token(1)).unwrap();
        let mut compressed = hello;
        compressed[1] = 0x02;
        assert_eq!(
            node.handle_hello(&compressed),
            Err(PairingError::BadPublicKey)
        );
        assert!(matches!(
            node.handle_hello(&[]),
            Err(PairingError::Unexpected { .. })
        ));
        assert_eq!(
            Responder::new(&[0u8; 32]).unwrap_err(),
            PairingError::BadSecret
        );
        assert_eq!(
            Responder::new(&[0xff; 32]).unwrap_err(),
            PairingError::BadSecret
        );
    }
}
