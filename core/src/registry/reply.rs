//! The registry's answer to a write.
//!
//! ```text
//! version (1) = 1
//! position (8)    i64 big-endian: the Drayer `modified` time (µs) of the
//!                 record this write appended (OK) or of the record that
//!                 already says so (IDEMPOTENT); 0 for an error
//! status (rest)   UTF-8, 2 ..= 128 bytes: `OK`, `IDEMPOTENT` or `ERR:<text>`
//! ```
//!
//! The status words are hyper-registry's, so a client prints them as they
//! come. The position gives read-your-writes: a client's replica holds the
//! write once its stream has a record modified at or after it (a record's
//! `modified` is unique and grows with every write of the owner).

use core::fmt;

/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Longest status text.
pub const MAX_STATUS_LEN: usize = 128;
/// Longest encoded reply.
pub const MAX_REPLY_LEN: usize = 1 + 8 + MAX_STATUS_LEN;

/// `register`: the name was free.
pub const OK: &str = "OK";
/// `register` by the owner of the name.
pub const IDEMPOTENT: &str = "IDEMPOTENT";

/// What a write came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<'a> {
    /// Appended.
    Ok,
    /// Already so; nothing appended.
    Idempotent,
    /// Refused; the text after `ERR:` (see [`super::decide`](mod@super::decide) for the
    /// texts this server sends).
    Err(&'a str),
}

impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str(OK),
            Self::Idempotent => f.write_str(IDEMPOTENT),
            Self::Err(text) => write!(f, "ERR:{text}"),
        }
    }
}

/// Why bytes are not a reply (or a reply cannot be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// Shorter than the header plus a status.
    Truncated,
    /// A status over [`MAX_STATUS_LEN`] bytes.
    TooLong,
    /// A version this code does not read.
    Version(u8),
    /// Not `OK`, `IDEMPOTENT` or `ERR:` + text, or not UTF-8, or holding a
    /// control character (the status is printed as one line).
    BadStatus,
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("reply is truncated"),
            Self::TooLong => f.write_str("reply status is too long"),
            Self::Version(v) => write!(f, "unknown reply version {v}"),
            Self::BadStatus => f.write_str("reply status is not OK, IDEMPOTENT or ERR:<text>"),
            Self::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl core::error::Error for ReplyError {}

/// A write's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReply<'a> {
    pub status: Status<'a>,
    /// Stream position (record `modified`, µs) to wait for; 0 for errors.
    pub position: i64,
}

fn check_text(text: &str) -> Result<(), ReplyError> {
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(ReplyError::BadStatus);
    }
    Ok(())
}

impl<'a> WriteReply<'a> {
    /// Writes the reply; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ReplyError> {
        let (prefix, text) = match self.status {
            Status::Ok => (OK, ""),
            Status::Idempotent => (IDEMPOTENT, ""),
            Status::Err(text) => {
                check_text(text)?;
                ("ERR:", text)
            }
        };
        let status_len = prefix.len() + text.len();
        if status_len > MAX_STATUS_LEN {
            return Err(ReplyError::TooLong);
        }
        let len = 9 + status_len;
        let out = out.get_mut(..len).ok_or(ReplyError::BufferTooSmall)?;
        out[0] = VERSION;
        out[1..9].copy_from_slice(&self.position.to_be_bytes());
        out[9..9 + prefix.len()].copy_from_slice(prefix.as_bytes());
        out[9 + prefix.len()..].copy_from_slice(text.as_bytes());
        Ok(len)
    }

    /// Reads a reply; the status borrows from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, ReplyError> {
        if bytes.len() > MAX_REPLY_LEN {
            return Err(ReplyError::TooLong);
        }
        if bytes.len() < 9 + OK.len() {
            return Err(ReplyError::Truncated);
        }
        if bytes[0] != VERSION {
            return Err(ReplyError::Version(bytes[0]));
        }
        let mut position = [0u8; 8];
        position.copy_from_slice(&bytes[1..9]);
        let text = core::str::from_utf8(&bytes[9..]).map_err(|_| ReplyError::BadStatus)?;
        let status = match text {
            OK => Status::Ok,
            IDEMPOTENT => Status::Idempotent,
            _ => {
                let err = text.strip_prefix("ERR:").ok_or(ReplyError::BadStatus)?;
                check_text(err)?;
                Status::Err(err)
            }
        };
        Ok(Self {
            status,
            position: i64::from_be_bytes(position),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn round_trips_the_three_shapes() {
        for status in [
            Status::Ok,
            Status::Idempotent,
            Status::Err("Username already taken"),
        ] {
            let reply = WriteReply {
                status,
                position: 1_795_000_000_000_001,
            };
            let mut buf = [0u8; MAX_REPLY_LEN];
            let n = reply.encode(&mut buf).unwrap();
            assert_eq!(WriteReply::decode(&buf[..n]), Ok(reply));
        }
        assert_eq!(
            Status::Err("Username not found").to_string(),
            "ERR:Username not found"
        );
    }

    #[test]
    fn refuses_other_words() {
        let mut bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, b'O', b'K', b'!'];
        assert_eq!(WriteReply::decode(&bytes), Err(ReplyError::BadStatus));
        bytes[9..].copy_from_slice(b"ERR");
        assert_eq!(WriteReply::decode(&bytes), Err(ReplyError::BadStatus));
        assert_eq!(
            WriteReply::decode(b"\x01\0\0\0\0\0\0\0\0ERR:\n"),
            Err(ReplyError::BadStatus)
        );
    }
}
