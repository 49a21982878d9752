//! The namebump packet: the plaintext inside every request and reply (spec §3).
//!
//! ```text
//! op u8 | pkid u32 | reply_pk [33] | behavior u8 | updated f64 | ttl f64 |
//! name_len u16 | val_len u16 | name | value | vkc [33]? | sig [64]?
//! ```
//! Integers and floats are little-endian; the fixed header is 59 bytes.
//!
//! Where the reference is lenient this codec is strict, without changing a
//! byte that a reference peer sends or accepts:
//! - the reference *truncates* over-long names and values when packing
//!   (quirk 18); here that is an [`EncodeError`], never silent;
//! - the reference *clamps* over-long length fields and slices leniently
//!   when unpacking, which only ever produces packets whose signature
//!   fails (bug 32); here they are [`DecodeError`]s;
//! - a wire pkid of 0 is kept as 0 (the reference replaces it with a random
//!   one, so such requests can never verify there: bug 27).
//!
//! The signature covers the re-serialised packet from `op` through `vkc`
//! (spec §3.3). [`Packet::digest`] hashes the fields directly, so signing
//! and verifying need no buffer.

use core::fmt;

use crate::identity::{Keypair, PUBLIC_KEY_LEN, PublicKey};
use crate::namebump::{MAX_NAME_LEN, MAX_VALUE_LEN};
use crate::signature::{self, DIGEST_LEN, SIGNATURE_LEN, SignatureError};

/// Fixed header length.
pub const HEADER_LEN: usize = 59;
/// The largest packet: header, maximal name and value, vkc and signature.
pub const MAX_PACKET_LEN: usize =
    HEADER_LEN + MAX_NAME_LEN + MAX_VALUE_LEN + PUBLIC_KEY_LEN + SIGNATURE_LEN;

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// 0: read a name (unsigned).
    Get,
    /// 1: create or update a name (signed by the owner).
    Put,
    /// 2: delete a name (signed by the owner).
    Del,
    /// 3: the server's error reply.
    Error,
    /// 4: quota query (signed by any key).
    Usage,
    /// Any other byte. Decodable, so a server can answer it with an error.
    Unknown(u8),
}

impl From<u8> for Op {
    fn from(b: u8) -> Self {
        match b {
            0 => Self::Get,
            1 => Self::Put,
            2 => Self::Del,
            3 => Self::Error,
            4 => Self::Usage,
            other => Self::Unknown(other),
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::Get => 0,
            Op::Put => 1,
            Op::Del => 2,
            Op::Error => 3,
            Op::Usage => 4,
            Op::Unknown(b) => b,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Names are at most 50 bytes.
    NameTooLong { len: usize },
    /// Values are at most 1024 bytes.
    ValueTooLong { len: usize },
    /// The caller's buffer cannot hold the packet.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameTooLong { len } => {
                write!(f, "name is {len} bytes; the maximum is {MAX_NAME_LEN}")
            }
            Self::ValueTooLong { len } => {
                write!(f, "value is {len} bytes; the maximum is {MAX_VALUE_LEN}")
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

impl core::error::Error for EncodeError {}

/// Why bytes are not a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 59-byte header.
    TooShort { len: usize },
    /// The name length field exceeds 50.
    NameTooLong { len: usize },
    /// The value length field exceeds 1024.
    ValueTooLong { len: usize },
    /// The buffer ends before the name and value it announces.
    Truncated { needed: usize, got: usize },
    /// 1–32 bytes follow the value: neither a key nor nothing.
    TrailingBytes { len: usize },
    /// A key is followed by something other than a 64-byte signature.
    BadSignatureLength { len: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "packet of {len} bytes is shorter than the {HEADER_LEN}-byte header"
                )
            }
            Self::NameTooLong { len } => {
                write!(f, "name length {len} exceeds {MAX_NAME_LEN}")
            }
            Self::ValueTooLong { len } => {
                write!(f, "value length {len} exceeds {MAX_VALUE_LEN}")
            }
            Self::Truncated { needed, got } => {
                write!(f, "packet announces {needed} bytes but has {got}")
            }
            Self::TrailingBytes { len } => {
                write!(f, "{len} stray bytes after the value")
            }
            Self::BadSignatureLength { len } => {
                write!(f, "signature of {len} bytes (must be {SIGNATURE_LEN})")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// A namebump packet borrowing its name and value.
///
/// `PartialEq` compares floats by value; packets carrying NaN are never
/// equal, as with any float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Packet<'a> {
    pub op: Op,
    /// Request id, echoed by the server in its reply.
    pub pkid: u32,
    /// Where the reply is encrypted to. `None` is 33 zero bytes on the wire.
    pub reply_pk: Option<[u8; PUBLIC_KEY_LEN]>,
    /// Raw byte: 0 is DONT_BUMP and every other value bumps. Kept raw
    /// because the signature covers it.
    pub behavior: u8,
    /// Unix seconds, fractional: the request time, or a row's timestamp in replies.
    pub updated: f64,
    /// Seconds the request stays valid.
    pub ttl: f64,
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The signer's (or owner's) compressed public key.
    pub vkc: Option<[u8; PUBLIC_KEY_LEN]>,
    /// Raw `r‖s` ECDSA-SHA1 signature over [`Packet::digest`].
    pub sig: Option<[u8; SIGNATURE_LEN]>,
}

impl<'a> Packet<'a> {
    /// A packet with the reference's defaults: behavior DO_BUMP, ttl 10 s,
    /// no reply key, no vkc, no signature.
    pub fn new(op: Op, pkid: u32, updated: f64, name: &'a [u8], value: &'a [u8]) -> Self {
        Self {
            op,
            pkid,
            reply_pk: None,
            behavior: super::DO_BUMP,
            updated,
            ttl: super::DEFAULT_REQUEST_TTL,
            name,
            value,
            vkc: None,
            sig: None,
        }
    }

    /// Whether a PUT may evict another name at quota.
    pub fn bumps(&self) -> bool {
        self.behavior != super::DONT_BUMP
    }

    /// Bytes covered by the signature: everything up to and including vkc.
    pub fn signed_len(&self) -> usize {
        HEADER_LEN
            + self.name.len()
            + self.value.len()
            + if self.vkc.is_some() {
                PUBLIC_KEY_LEN
            } else {
                0
            }
    }

    /// Total encoded length, signature included.
    pub fn encoded_len(&self) -> usize {
        self.signed_len() + if self.sig.is_some() { SIGNATURE_LEN } else { 0 }
    }

    /// Feeds the wire bytes to `sink` in order, optionally without the
    /// signature. The one place the layout is written down.
    fn for_each_piece(&self, with_sig: bool, mut sink: impl FnMut(&[u8])) {
        let mut header = [0u8; HEADER_LEN];
        header[0] = self.op.into();
        header[1..5].copy_from_slice(&self.pkid.to_le_bytes());
        if let Some(pk) = &self.reply_pk {
            header[5..38].copy_from_slice(pk);
        }
        header[38] = self.behavior;
        header[39..47].copy_from_slice(&self.updated.to_le_bytes());
        header[47..55].copy_from_slice(&self.ttl.to_le_bytes());
        // Lengths were checked by the callers, so they fit in u16.
        header[55..57].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        header[57..59].copy_from_slice(&(self.value.len() as u16).to_le_bytes());
        sink(&header);
        sink(self.name);
        sink(self.value);
        if let Some(vkc) = &self.vkc {
            sink(vkc);
        }
        if let (true, Some(sig)) = (with_sig, &self.sig) {
            sink(sig);
        }
    }

    fn check_lengths(&self) -> Result<(), EncodeError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(EncodeError::NameTooLong {
                len: self.name.len(),
            });
        }
        if self.value.len() > MAX_VALUE_LEN {
            return Err(EncodeError::ValueTooLong {
                len: self.value.len(),
            });
        }
        Ok(())
    }

    fn write(&self, with_sig: bool, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.check_lengths()?;
        let needed = if with_sig {
            self.encoded_len()
        } else {
            self.signed_len()
        };
        if out.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                needed,
                got: out.len(),
            });
        }
        let mut at = 0;
        self.for_each_piece(with_sig, |piece| {
            out[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        });
        Ok(at)
    }

    /// Encodes the whole packet into `out`; returns the length written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.write(true, out)
    }

    /// Encodes the signed part (the reference's `get_msg_to_sign()`).
    pub fn encode_signed_part(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        self.write(false, out)
    }

    /// SHA-1 of the signed part, computed without a buffer.
    pub fn digest(&self) -> Result<[u8; DIGEST_LEN], EncodeError> {
        self.check_lengths()?;
        let mut hasher = signature::Sha1Stream::new();
        self.for_each_piece(false, |piece| hasher.update(piece));
        Ok(hasher.finish())
    }

    /// Sets `vkc` to the signer's key and signs. The reply key, ttl and
    /// behavior must be final: the signature covers them.
    pub fn sign(&mut self, keypair: &Keypair) -> Result<(), EncodeError> {
        self.vkc = Some(*keypair.public().as_bytes());
        self.sig = None;
        let digest = self.digest()?;
        self.sig = Some(signature::sign_digest(keypair, &digest));
        Ok(())
    }

    /// Verifies the signature under `key` (the stored owner, or `vkc`).
    pub fn verify(&self, key: &PublicKey) -> Result<(), VerifyError> {
        let sig = self.sig.as_ref().ok_or(VerifyError::Unsigned)?;
        let digest = self.digest().map_err(|_| VerifyError::Malformed)?;
        signature::verify_digest(key, &digest, sig).map_err(VerifyError::Signature)
    }

    /// Verifies the signature under the packet's own `vkc`, returning that
    /// key: the first check of a PUT or USAGE (spec §6.2).
    pub fn verify_self_signed(&self) -> Result<PublicKey, VerifyError> {
        let vkc = self.vkc.as_ref().ok_or(VerifyError::Unsigned)?;
        let key = PublicKey::from_bytes(vkc).map_err(|_| VerifyError::BadKey)?;
        self.verify(&key)?;
        Ok(key)
    }

    /// Parses a packet, borrowing name and value from `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort { len: buf.len() });
        }
        let (header, body) = buf.split_at(HEADER_LEN);
        let u16_at = |i: usize| usize::from(u16::from_le_bytes([header[i], header[i + 1]]));
        let f64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[i..i + 8]);
            f64::from_le_bytes(b)
        };
        let name_len = u16_at(55);
        let value_len = u16_at(57);
        if name_len > MAX_NAME_LEN {
            return Err(DecodeError::NameTooLong { len: name_len });
        }
        if value_len > MAX_VALUE_LEN {
            return Err(DecodeError::ValueTooLong { len: value_len });
        }
        if body.len() < name_len + value_len {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN + name_len + value_len,
                got: buf.len(),
            });
        }
        let (name, rest) = body.split_at(name_len);
        let (value, trailer) = rest.split_at(value_len);
        let (vkc, sig) = match trailer.len() {
            0 => (None, None),
            n if n < PUBLIC_KEY_LEN => return Err(DecodeError::TrailingBytes { len: n }),
            _ => {
                let (vkc, sig) = trailer.split_at(PUBLIC_KEY_LEN);
                let sig = match sig.len() {
                    0 => None,
                    SIGNATURE_LEN => Some(array(sig)),
                    n => return Err(DecodeError::BadSignatureLength { len: n }),
                };
                (Some(array(vkc)), sig)
            }
        };
        let reply_pk: [u8; PUBLIC_KEY_LEN] = array(&header[5..38]);
        Ok(Self {
            op: Op::from(header[0]),
            pkid: u32::from_le_bytes(array(&header[1..5])),
            // 33 zero bytes is the reference's "absent" sentinel.
            reply_pk: (reply_pk != [0u8; PUBLIC_KEY_LEN]).then_some(reply_pk),
            behavior: header[38],
            updated: f64_at(39),
            ttl: f64_at(47),
            name,
            value,
            vkc,
            sig,
        })
    }
}

/// Copies a slice whose length the caller has already established.
fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&s[..N]);
    out
}

/// Why a packet's signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// No signature (or no vkc to check it against).
    Unsigned,
    /// The vkc is not a valid public key.
    BadKey,
    /// Name or value too long to have been signed by a valid signer.
    Malformed,
    /// The signature does not verify.
    Signature(SignatureError),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsigned => f.write_str("request is not signed"),
            Self::BadKey => f.write_str("vkc is not a valid public key"),
            Self::Malformed => f.write_str("packet fields out of range"),
            Self::Signature(e) => write!(f, "bad signature: {e}"),
        }
    }
}

impl core::error::Error for VerifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Packet<'static> {
        let mut p = Packet::new(
            Op::Put,
            0x1234_5678,
            1_700_000_000.25,
            b"alice",
            b"hello world",
        );
        p.reply_pk = Some([2u8; 33]);
        p
    }

    #[test]
    fn trailer_shapes_decode_or_fail_precisely() {
        let kp = Keypair::from_secret_bytes(&[5u8; 32]).unwrap();
        let mut p = sample();
        p.sign(&kp).unwrap();
        let mut buf = [0u8; MAX_PACKET_LEN + 8];
        let n = p.encode(&mut buf).unwrap();
        assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
        // vkc only (a reply), nothing (bare), 1..=32 stray bytes, short sig.
        let bare = n - 64 - 33;
        assert!(Packet::decode(&buf[..n - 64]).unwrap().sig.is_none());
        assert!(Packet::decode(&buf[..bare]).unwrap().vkc.is_none());
        assert_eq!(
            Packet::decode(&buf[..bare + 5]),
            Err(DecodeError::TrailingBytes { len: 5 })
        );
        assert_eq!(
            Packet::decode(&buf[..n - 1]),
            Err(DecodeError::BadSignatureLength { len: 63 })
        );
        assert_eq!(
            Packet::decode(&buf[..n + 1]),
            Err(DecodeError::BadSignatureLength { len: 65 })
        );
        assert_eq!(
            Packet::decode(&buf[..58]),
            Err(DecodeError::TooShort { len: 58 })
        );
        assert_eq!(
            Packet::decode(&buf[..62]),
            Err(DecodeError::Truncated {
                needed: 75,
                got: 62
            })
        );
    }

    #[test]
    fn over_long_length_fields_are_refused() {
        let mut buf = [0u8; 200];
        let n = sample().encode(&mut buf).unwrap();
        buf[55] = 51;
        assert_eq!(
            Packet::decode(&buf[..n]),
            Err(DecodeError::NameTooLong { len: 51 })
        );
        buf[55] = 5;
        buf[57..59].copy_from_slice(&1025u16.to_le_bytes());
        assert_eq!(
            Packet::decode(&buf[..n]),
            Err(DecodeError::ValueTooLong { len: 1025 })
        );
    }

    #[test]
    fn over_long_inputs_are_never_truncated() {
        let long = [b'x'; 51];
        let p = Packet::new(Op::Put, 1, 0.0, &long, b"");
        assert_eq!(
            p.encode(&mut [0u8; 2000]),
            Err(EncodeError::NameTooLong { len: 51 })
        );
        let big = [0u8; 1025];
        let p = Packet::new(Op::Put, 1, 0.0, b"n", &big);
        assert_eq!(
            p.encode(&mut [0u8; 2000]),
            Err(EncodeError::ValueTooLong { len: 1025 })
        );
        assert_eq!(
            sample().encode(&mut [0u8; 10]),
            Err(EncodeError::BufferTooSmall {
                needed: 75,
                got: 10
            })
        );
    }

    #[test]
    fn pkid_zero_and_unknown_ops_survive_a_round_trip() {
        let mut p = sample();
        p.pkid = 0;
        p.op = Op::Unknown(9);
        let mut buf = [0u8; 200];
        let n = p.encode(&mut buf).unwrap();
        assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
    }

    #[test]
    fn signature_covers_every_signed_field() {
        let kp = Keypair::from_secret_bytes(&[6u8; 32]).unwrap();
        let mut p = sample();
        p.sign(&kp).unwrap();
        assert_eq!(p.verify_self_signed().unwrap(), *kp.public());
        let tweaks: [fn(&mut Packet<'static>); 7] = [
            |p| p.pkid ^= 1,
            |p| p.reply_pk = None,
            |p| p.behavior = 0,
            |p| p.updated += 1.0,
            |p| p.ttl = 11.0,
            |p| p.name = b"alicf",
            |p| p.value = b"hello worle",
        ];
        for tweak in tweaks {
            let mut q = p;
            tweak(&mut q);
            assert!(matches!(
                q.verify(kp.public()),
                Err(VerifyError::Signature(_))
            ));
        }
        let other = Keypair::from_secret_bytes(&[8u8; 32]).unwrap();
        assert!(p.verify(other.public()).is_err());
        let mut unsigned = p;
        unsigned.sig = None;
        assert_eq!(unsigned.verify(kp.public()), Err(VerifyError::Unsigned));
    }
}
