//! The USAGE reply's value: a tiny JSON object (spec §6.4).
//!
//! The reference writes it with Python's `json.dumps` defaults, so the exact
//! bytes are `{"af": 2, "names_used": 1, "name_limit": 20}`: this key order,
//! `", "` and `": "` separators. Reading is lenient about order and spaces
//! but strict about everything else, and never allocates.

use core::fmt::{self, Write};

/// A peer's quota state as the server reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// 2 (IPv4) or 10 (IPv6).
    pub af: u8,
    /// Names held by the requester's quota row.
    pub names_used: u32,
    /// Names that row may hold.
    pub name_limit: u32,
}

/// The value is not a USAGE object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// Not the expected JSON object.
    Malformed,
    /// A field is missing.
    Missing(&'static str),
    /// The output buffer is too small.
    BufferTooSmall,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("usage reply is not the expected JSON object"),
            Self::Missing(field) => write!(f, "usage reply lacks \"{field}\""),
            Self::BufferTooSmall => f.write_str("buffer too small for the usage reply"),
        }
    }
}

impl core::error::Error for UsageError {}

/// Longest encoding: `{"af": 255, "names_used": 4294967295, "name_limit": 4294967295}`.
pub const MAX_USAGE_LEN: usize = 64;

struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Usage {
    /// Writes the reference's exact bytes; returns their length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, UsageError> {
        let mut w = SliceWriter { buf: out, len: 0 };
        write!(
            w,
            "{{\"af\": {}, \"names_used\": {}, \"name_limit\": {}}}",
            self.af, self.names_used, self.name_limit
        )
        .map_err(|_| UsageError::BufferTooSmall)?;
        Ok(w.len)
    }

    /// Reads a flat JSON object with the three integer fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, UsageError> {
        let text = core::str::from_utf8(bytes)
            .map_err(|_| UsageError::Malformed)?
            .trim();
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or(UsageError::Malformed)?;
        let (mut af, mut used, mut limit) = (None, None, None);
        for member in inner.split(',') {
            let (key, value) = member.split_once(':').ok_or(UsageError::Malformed)?;
            let key = key
                .trim()
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'));
            let value: u64 = value.trim().parse().map_err(|_| UsageError::Malformed)?;
            let slot = match key.ok_or(UsageError::Malformed)? {
                "af" => &mut af,
                "names_used" => &mut used,
                "name_limit" => &mut limit,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(UsageError::Malformed);
            }
        }
        let narrow = |v: Option<u64>, name| -> Result<u32, UsageError> {
            u32::try_from(v.ok_or(UsageError::Missing(name))?).map_err(|_| UsageError::Malformed)
        };
        Ok(Self {
            af: u8::try_from(narrow(af, "af")?).map_err(|_| UsageError::Malformed)?,
            names_used: narrow(used, "names_used")?,
            name_limit: narrow(limit, "name_limit")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_python_json_dumps_bytes() {
        let mut buf = [0u8; MAX_USAGE_LEN];
        let u = Usage {
            af: 2,
            names_used: 1,
            name_limit: 20,
        };
        let n = u.encode(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"af": 2, "names_used": 1, "name_limit": 20}"#
        );
        let max = Usage {
            af: 255,
            names_used: u32::MAX,
            name_limit: u32::MAX,
        };
        assert!(max.encode(&mut buf).is_ok());
        assert_eq!(u.encode(&mut [0u8; 10]), Err(UsageError::BufferTooSmall));
    }

    #[test]
    fn decodes_any_order_and_rejects_junk() {
        let u = Usage::decode(br#" {"name_limit":5,"af":10 , "names_used": 3} "#).unwrap();
        assert_eq!(
            u,
            Usage {
                af: 10,
                names_used: 3,
                name_limit: 5
            }
        );
        assert_eq!(
            Usage::decode(b"Unknown error occured."),
            Err(UsageError::Malformed)
        );
        assert_eq!(
            Usage::decode(br#"{"af": 2}"#),
            Err(UsageError::Missing("names_used"))
        );
        assert_eq!(
            Usage::decode(br#"{"af": 2, "af": 2, "names_used": 1, "name_limit": 1}"#),
            Err(UsageError::Malformed)
        );
        assert_eq!(
            Usage::decode(br#"{"af": 999, "names_used": 1, "name_limit": 1}"#),
            Err(UsageError::Malformed)
        );
    }
}
