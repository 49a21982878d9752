//! The AppPacket: sidewire's signed envelope, one per MQTT payload (spec §4).
//!
//! ```text
//! src_pk [33] | sig [64] | queue_id [32] | seq_no u32 | timestamp u64 | msg_type u8 | msg …
//! ```
//! Integers are big-endian; there is no length field (the MQTT payload ends
//! the message). The signature is ECDSA-SHA1 over everything after `sig`
//! (spec §4.2), the same scheme as namebump ([`crate::signature`]): low-S
//! out, high-S accepted, since the reference signs with random nonces and
//! no normalisation.
//!
//! Payloads are bytes end to end (the reference decodes them as lossy UTF-8,
//! spec §4.3; that is a concern of its Python API, not of the wire).

use core::fmt;

use crate::identity::{Keypair, PUBLIC_KEY_LEN, PublicKey};
use crate::signature::{self, DIGEST_LEN, SIGNATURE_LEN, Sha1Stream, SignatureError};

/// Bytes before the payload; also the shortest valid packet.
pub const HEADER_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN + 32 + 4 + 8 + 1;
/// Offset of the signed part (queue id onwards).
const SIGNED_FROM: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// What a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// 1: application data.
    Msg,
    /// 2: acknowledgement of a MSG (payload `ack`).
    Ack,
    /// 3: the reference's unused discovery probe.
    Probe,
    /// Anything else: verifiable, then ignored (spec §4.1).
    Unknown(u8),
}

impl From<u8> for MsgType {
    fn from(b: u8) -> Self {
        match b {
            1 => Self::Msg,
            2 => Self::Ack,
            3 => Self::Probe,
            other => Self::Unknown(other),
        }
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        match t {
            MsgType::Msg => 1,
            MsgType::Ack => 2,
            MsgType::Probe => 3,
            MsgType::Unknown(b) => b,
        }
    }
}

/// The payload of an ACK, as the reference sends it.
pub const ACK_PAYLOAD: &[u8] = b"ack";

/// Why bytes are not an AppPacket, or a packet cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppPacketError {
    /// Shorter than the 142-byte header.
    TooShort { len: usize },
    /// The caller's buffer cannot hold the packet.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for AppPacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "packet of {len} bytes is shorter than the {HEADER_LEN}-byte header"
                )
            }
            Self::BufferTooSmall { needed, got } => {
                write!(
                    f,
                    "buffer of {got} bytes cannot hold a {needed}-byte packet"
                )
            }
        }
    }
}

impl core::error::Error for AppPacketError {}

/// Why a packet's signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppVerifyError {
    /// `src_pk` is not a valid compressed point.
    BadKey,
    Signature(SignatureError),
}

impl fmt::Display for AppVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey => f.write_str("source key is not a secp256k1 point"),
            Self::Signature(e) => write!(f, "bad signature: {e}"),
        }
    }
}

impl core::error::Error for AppVerifyError {}

/// An AppPacket borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppPacket<'a> {
    pub src_pk: [u8; PUBLIC_KEY_LEN],
    pub sig: [u8; SIGNATURE_LEN],
    pub queue_id: [u8; 32],
    pub seq_no: u32,
    /// Unix seconds (the integer part of the sender's clock).
    pub timestamp: u64,
    pub msg_type: MsgType,
    pub msg: &'a [u8],
}

impl<'a> AppPacket<'a> {
    /// An unsigned packet; [`Self::sign`] fills in `src_pk` and `sig`.
    pub fn new(
        queue_id: [u8; 32],
        seq_no: u32,
        timestamp: u64,
        msg_type: MsgType,
        msg: &'a [u8],
    ) -> Self {
        Self {
            src_pk: [0; PUBLIC_KEY_LEN],
            sig: [0; SIGNATURE_LEN],
            queue_id,
            seq_no,
            timestamp,
            msg_type,
            msg,
        }
    }

    /// The ACK a receiver sends for this MSG (same queue and seq), unsigned.
    pub fn ack(&self, timestamp: u64) -> AppPacket<'static> {
        AppPacket::new(
            self.queue_id,
            self.seq_no,
            timestamp,
            MsgType::Ack,
            ACK_PAYLOAD,
        )
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.msg.len()
    }

    /// The fixed fields after `sig`, as signed and sent.
    fn signed_header(&self) -> [u8; HEADER_LEN - SIGNED_FROM] {
        let mut h = [0u8; HEADER_LEN - SIGNED_FROM];
        h[..32].copy_from_slice(&self.queue_id);
        h[32..36].copy_from_slice(&self.seq_no.to_be_bytes());
        h[36..44].copy_from_slice(&self.timestamp.to_be_bytes());
        h[44] = self.msg_type.into();
        h
    }

    /// SHA-1 of the signed part (`queue_id` through `msg`).
    pub fn digest(&self) -> [u8; DIGEST_LEN] {
        let mut hasher = Sha1Stream::new();
        hasher.update(&self.signed_header());
        hasher.update(self.msg);
        hasher.finish()
    }

    /// Sets `src_pk` to the signer's key and signs.
    pub fn sign(&mut self, keypair: &Keypair) {
        self.src_pk = *keypair.public().as_bytes();
        self.sig = signature::sign_digest(keypair, &self.digest());
    }

    /// Verifies the signature under `src_pk`, returning that key.
    pub fn verify(&self) -> Result<PublicKey, AppVerifyError> {
        let key = PublicKey::from_bytes(&self.src_pk).map_err(|_| AppVerifyError::BadKey)?;
        self.verify_as(&key)?;
        Ok(key)
    }

    /// [`Self::verify`] with `src_pk` already parsed (parsing a key costs
    /// a square root): fails unless `key` is `src_pk`.
    pub fn verify_as(&self, key: &PublicKey) -> Result<(), AppVerifyError> {
        if *key.as_bytes() != self.src_pk {
            return Err(AppVerifyError::BadKey);
        }
        signature::verify_digest(key, &self.digest(), &self.sig).map_err(AppVerifyError::Signature)
    }

    /// Writes the packet; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, AppPacketError> {
        let needed = self.encoded_len();
        if out.len() < needed {
            return Err(AppPacketError::BufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        out[..PUBLIC_KEY_LEN].copy_from_slice(&self.src_pk);
        out[PUBLIC_KEY_LEN..SIGNED_FROM].copy_from_slice(&self.sig);
        out[SIGNED_FROM..HEADER_LEN].copy_from_slice(&self.signed_header());
        out[HEADER_LEN..needed].copy_from_slice(self.msg);
        Ok(needed)
    }

    /// Parses a packet (the whole MQTT payload), borrowing the message.
    pub fn decode(buf: &'a [u8]) -> Result<Self, AppPacketError> {
        if buf.len() < HEADER_LEN {
            return Err(AppPacketError::TooShort { len: buf.len() });
        }
        let array = |from: usize| -> [u8; 8] {
            let mut a = [0u8; 8];
            a.copy_from_slice(&buf[from..from + 8]);
            a
        };
        let mut src_pk = [0u8; PUBLIC_KEY_LEN];
        src_pk.copy_from_slice(&buf[..PUBLIC_KEY_LEN]);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(&buf[PUBLIC_KEY_LEN..SIGNED_FROM]);
        let mut queue_id = [0u8; 32];
        queue_id.copy_from_slice(&buf[SIGNED_FROM..SIGNED_FROM + 32]);
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&buf[SIGNED_FROM + 32..SIGNED_FROM + 36]);
        Ok(Self {
            src_pk,
            sig,
            queue_id,
            seq_no: u32::from_be_bytes(seq),
            timestamp: u64::from_be_bytes(array(SIGNED_FROM + 36)),
            msg_type: MsgType::from(buf[SIGNED_FROM + 44]),
            msg: &buf[HEADER_LEN..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_as_checks_the_key_is_the_sender() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let b = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let mut p = AppPacket::new([1; 32], 0, 10, MsgType::Msg, b"x");
        p.sign(&a);
        assert_eq!(p.verify_as(a.public()), Ok(()));
        assert_eq!(p.verify_as(b.public()), Err(AppVerifyError::BadKey));
        p.msg = b"y";
        assert!(matches!(
            p.verify_as(a.public()),
            Err(AppVerifyError::Signature(_))
        ));
    }

    #[test]
    fn header_is_142_bytes_and_an_ack_145() {
        assert_eq!(HEADER_LEN, 142);
        let msg = AppPacket::new([1; 32], 7, 10, MsgType::Msg, b"x");
        assert_eq!(msg.ack(11).encoded_len(), 145);
    }

    #[test]
    fn short_input_is_refused_and_round_trips_hold() {
        assert_eq!(
            AppPacket::decode(&[0u8; 141]),
            Err(AppPacketError::TooShort { len: 141 })
        );
        let kp = Keypair::from_secret_bytes(&[3u8; 32]).unwrap();
        let mut p = AppPacket::new([9; 32], 1, 1_700_000_000, MsgType::Unknown(9), b"payload");
        p.sign(&kp);
        let mut buf = [0u8; 256];
        let n = p.encode(&mut buf).unwrap();
        let q = AppPacket::decode(&buf[..n]).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.verify().unwrap(), *kp.public());
        let mut tampered = q;
        tampered.seq_no += 1;
        assert!(matches!(
            tampered.verify(),
            Err(AppVerifyError::Signature(_))
        ));
    }
}
