//! A name as a namebump server publishes it in a Drayer stream (issue 17,
//! "namebump as a verifiable replica"), and the check a replica makes.
//!
//! One record per live name: type [`RECORD_TYPE`], key the name's bytes in
//! lowercase hex ([`stream_key`]: names are bytes, Drayer keys are text),
//! value the owner's PUT packet exactly as the server decoded it (the
//! plaintext, `vkc` and signature included). The stream's own Ed25519
//! signature says the server published it; the owner's ECDSA signature
//! inside says the owner asked for this value, so a replica checks the
//! latter itself ([`verify_record`]) and not even the server can forge a
//! value. (The server can still withhold a record or keep an older signed
//! PUT of the same owner: a signature proves origin, not freshness.)

use core::fmt;

use crate::namebump::packet::VerifyError;
use crate::namebump::{DecodeError, MAX_NAME_LEN, Op, Packet};

/// The Drayer record type of a published name.
pub const RECORD_TYPE: &str = "namebump";

/// Length of the longest key: two hex digits per name byte.
pub const MAX_KEY_LEN: usize = 2 * MAX_NAME_LEN;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The record key of `name`: its bytes in lowercase hex, written into
/// `out`. `None` for a name longer than [`MAX_NAME_LEN`] (no PUT carries one).
pub fn stream_key<'o>(name: &[u8], out: &'o mut [u8; MAX_KEY_LEN]) -> Option<&'o str> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    for (i, b) in name.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    core::str::from_utf8(&out[..2 * name.len()]).ok()
}

/// Whether `key` is exactly [`stream_key`] of `name`.
fn key_names(key: &str, name: &[u8]) -> bool {
    let mut buf = [0u8; MAX_KEY_LEN];
    stream_key(name, &mut buf) == Some(key)
}

/// A published name whose owner signature checked out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PublishedName<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The owner's compressed public key (the PUT's `vkc`).
    pub owner: [u8; 33],
    /// The PUT's `updated`, full precision.
    pub updated: f64,
}

impl PublishedName<'_> {
    /// Whole seconds, as a server's GET reports the name's timestamp
    /// (its last write's `updated`, rounded).
    pub fn timestamp(&self) -> i64 {
        // `as` saturates; a NaN `updated` never verifies (see below).
        round(self.updated) as i64
    }
}

/// `f64::round` without std: half away from zero.
fn round(x: f64) -> f64 {
    let t = x as i64 as f64;
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Why a published record is not a name its owner signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishedError {
    /// The value is not a namebump packet.
    Malformed(DecodeError),
    /// A packet, but not a PUT.
    NotAPut,
    /// The record's key is not the packet's name in hex: the server filed
    /// a signed value under another name.
    WrongKey,
    /// `updated` is not a finite number.
    BadTime,
    /// The owner's signature does not cover these bytes: the value (or
    /// anything else the owner signed) was altered.
    Signature(VerifyError),
}

impl fmt::Display for PublishedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "the record is not a namebump packet: {e}"),
            Self::NotAPut => f.write_str("the record is not a PUT"),
            Self::WrongKey => f.write_str("the record's key is not the signed name"),
            Self::BadTime => f.write_str("the record's time is not a finite number"),
            Self::Signature(e) => write!(f, "the owner's signature does not verify ({e})"),
        }
    }
}

impl core::error::Error for PublishedError {}

/// Checks a published record: a PUT, filed under its own name's key, with
/// a valid signature by its `vkc` (the owner).
pub fn verify_record<'a>(key: &str, value: &'a [u8]) -> Result<PublishedName<'a>, PublishedError> {
    let packet = Packet::decode(value).map_err(PublishedError::Malformed)?;
    if packet.op != Op::Put {
        return Err(PublishedError::NotAPut);
    }
    if !key_names(key, packet.name) {
        return Err(PublishedError::WrongKey);
    }
    if !packet.updated.is_finite() {
        return Err(PublishedError::BadTime);
    }
    let owner = packet
        .verify_self_signed()
        .map_err(PublishedError::Signature)?;
    Ok(PublishedName {
        name: packet.name,
        value: packet.value,
        owner: *owner.as_bytes(),
        updated: packet.updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lowercase_hex() {
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(stream_key(b"a\xff\x00", &mut buf), Some("61ff00"));
        assert_eq!(stream_key(b"", &mut buf), Some(""));
        assert_eq!(stream_key(&[0u8; MAX_NAME_LEN + 1], &mut buf), None);
    }

    #[test]
    fn timestamps_round_like_the_server() {
        let at = |updated| PublishedName {
            name: b"",
            value: b"",
            owner: [0; 33],
            updated,
        };
        assert_eq!(at(1_700_000_000.4).timestamp(), 1_700_000_000);
        assert_eq!(at(1_700_000_000.5).timestamp(), 1_700_000_001);
        assert_eq!(at(1_700_000_000.9).timestamp(), 1_700_000_001);
    }
}
