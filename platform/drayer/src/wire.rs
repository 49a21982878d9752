//! The msgpack record map of `newRecords` and `crdr` (spec §8.3).
//!
//! Encoding reproduces the original server byte for byte: the 2019 code
//! packed with msgpack 0.6 defaults, so every string and byte field uses
//! the old raw family (fixstr, 0xda, 0xdb; never str8 or bin) and integers
//! take their smallest form, in the order `hash, type, key, val, id, sig,
//! prev, prevch, ts, mod, chain`. Decoding is lenient where the spec says
//! so (str or bin anywhere, keys in any order, unknown keys ignored, `val`
//! optional for metadata-only copies) and strict about everything else:
//! lengths, UTF-8, integer ranges, sizes, nesting.

use keyway_core::drayer::{Meta, VerifyingKey, hash};
use rmp::Marker;

use crate::sqlite::Body;

/// Largest value accepted in a record (the original's file import skipped
/// files over 50 MiB).
pub const MAX_VALUE: usize = 64 * 1024 * 1024;

/// Largest key or type accepted.
pub const MAX_TEXT: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated msgpack")]
    Truncated,
    #[error("unexpected msgpack type for {0}")]
    Type(&'static str),
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {field} has {got} bytes, expected {expected}")]
    Length {
        field: &'static str,
        got: usize,
        expected: &'static str,
    },
    #[error("field {0} is not UTF-8")]
    Utf8(&'static str),
    #[error("field {0} is out of range")]
    Range(&'static str),
    #[error("record is for another stream")]
    OtherChain,
    #[error("{0} bytes left after the msgpack value")]
    Trailing(usize),
}

/// Appends a string or byte field the way msgpack 0.6 did.
pub(crate) fn write_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    write_raw_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// The marker and length of a raw field of `len` bytes.
fn write_raw_len(out: &mut Vec<u8>, len: usize) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }
}

/// Appends an integer in its smallest form (unsigned when not negative,
/// as Python's msgpack does).
pub(crate) fn write_int(out: &mut Vec<u8>, value: i64) {
    // Writing to a Vec cannot fail.
    let _ = match u64::try_from(value) {
        Ok(unsigned) => rmp::encode::write_uint(out, unsigned).map(|_| ()),
        Err(_) => rmp::encode::write_sint(out, value).map(|_| ()),
    };
}

/// Appends one record map. `val` is left out for a metadata-only body.
pub fn encode_record(out: &mut Vec<u8>, meta: &Meta, body: &Body, stream: &VerifyingKey) {
    let value_len = body.value.as_ref().map(Vec::len);
    encode_head(out, meta, &body.kind, &body.key, value_len);
    if let Some(value) = &body.value {
        out.extend_from_slice(value);
    }
    encode_tail(out, meta, stream);
}

/// A record map up to its value's bytes, which follow (`value_len` of
/// them; `None`: no `val`), then [`encode_tail`]: a response can stream
/// a value it never holds whole.
pub fn encode_head(
    out: &mut Vec<u8>,
    meta: &Meta,
    kind: &str,
    key: &str,
    value_len: Option<usize>,
) {
    let fields = if value_len.is_some() { 11 } else { 10 };
    out.push(0x80 | fields);
    write_raw(out, b"hash");
    write_raw(out, &meta.value_hash);
    write_raw(out, b"type");
    write_raw(out, kind.as_bytes());
    write_raw(out, b"key");
    write_raw(out, key.as_bytes());
    if let Some(len) = value_len {
        write_raw(out, b"val");
        write_raw_len(out, len);
    }
}

/// The rest of a record map after its value.
pub fn encode_tail(out: &mut Vec<u8>, meta: &Meta, stream: &VerifyingKey) {
    write_raw(out, b"id");
    write_int(out, i64::try_from(meta.id).unwrap_or(i64::MAX));
    write_raw(out, b"sig");
    write_raw(out, &meta.signature);
    write_raw(out, b"prev");
    write_int(out, i64::try_from(meta.prev).unwrap_or(i64::MAX));
    write_raw(out, b"prevch");
    write_int(out, meta.prevchange);
    write_raw(out, b"ts");
    write_int(out, meta.timestamp);
    write_raw(out, b"mod");
    write_int(out, meta.modified);
    write_raw(out, b"chain");
    write_raw(out, stream.as_bytes());
}

/// A `newRecords` response: an array of record maps.
pub fn encode_records(records: &[(Meta, Body)], stream: &VerifyingKey) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmp::encode::write_array_len(&mut out, u32::try_from(records.len()).unwrap_or(0));
    for (meta, body) in records {
        encode_record(&mut out, meta, body, stream);
    }
    out
}

/// A cursor over msgpack bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn marker(&mut self) -> Result<Marker, WireError> {
        Ok(Marker::from_u8(self.take(1)?[0]))
    }

    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A str or bin of any width.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let len = match self.marker()? {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
            Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
            Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
            _ => return Err(WireError::Type(field)),
        };
        self.take(len)
    }

    fn text(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let bytes = self.bytes(field)?;
        if bytes.len() > MAX_TEXT {
            return Err(WireError::Range(field));
        }
        std::str::from_utf8(bytes).map_err(|_| WireError::Utf8(field))
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i64, WireError> {
        let range = || WireError::Range(field);
        Ok(match self.marker()? {
            Marker::FixPos(n) => i64::from(n),
            Marker::FixNeg(n) => i64::from(n),
            Marker::U8 => self.be(1)? as i64,
            Marker::U16 => self.be(2)? as i64,
            Marker::U32 => self.be(4)? as i64,
            Marker::U64 => i64::try_from(self.be(8)?).map_err(|_| range())?,
            Marker::I8 => i64::from(self.be(1)? as u8 as i8),
            Marker::I16 => i64::from(self.be(2)? as u16 as i16),
            Marker::I32 => i64::from(self.be(4)? as u32 as i32),
            Marker::I64 => self.be(8)? as i64,
            _ => return Err(WireError::Type(field)),
        })
    }

    /// Skips one value of any type (unknown keys), refusing deep nesting.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), WireError> {
        if depth > 8 {
            return Err(WireError::Type("nested value"));
        }
        let items = match self.marker()? {
            Marker::Null | Marker::True | Marker::False | Marker::FixPos(_) | Marker::FixNeg(_) => {
                0
            }
            Marker::U8 | Marker::I8 => return self.take(1).map(drop),
            Marker::U16 | Marker::I16 => return self.take(2).map(drop),
            Marker::U32 | Marker::I32 | Marker::F32 => return self.take(4).map(drop),
            Marker::U64 | Marker::I64 | Marker::F64 => return self.take(8).map(drop),
            Marker::FixStr(n) => return self.take(usize::from(n)).map(drop),
            Marker::Str8 | Marker::Bin8 => {
                return self.be(1).and_then(|n| self.take(n as usize)).map(drop);
            }
            Marker::Str16 | Marker::Bin16 => {
                return self.be(2).and_then(|n| self.take(n as usize)).map(drop);
            }
            Marker::Str32 | Marker::Bin32 => {
                return self.be(4).and_then(|n| self.take(n as usize)).map(drop);
            }
            Marker::FixArray(n) => usize::from(n),
            Marker::Array16 => self.be(2)? as usize,
            Marker::Array32 => self.be(4)? as usize,
            Marker::FixMap(n) => 2 * usize::from(n),
            Marker::Map16 => (self.be(2)? as usize).saturating_mul(2),
            Marker::Map32 => (self.be(4)? as usize).saturating_mul(2),
            Marker::FixExt1 => return self.take(2).map(drop),
            Marker::FixExt2 => return self.take(3).map(drop),
            Marker::FixExt4 => return self.take(5).map(drop),
            Marker::FixExt8 => return self.take(9).map(drop),
            Marker::FixExt16 => return self.take(17).map(drop),
            Marker::Ext8 => return self.be(1).and_then(|n| self.take(n as usize + 1)).map(drop),
            Marker::Ext16 => return self.be(2).and_then(|n| self.take(n as usize + 1)).map(drop),
            Marker::Ext32 => {
                return self
                    .be(4)
                    .and_then(|n| self.take((n as usize).saturating_add(1)))
                    .map(drop);
            }
            Marker::Reserved => return Err(WireError::Type("value")),
        };
        // Each item takes at least a byte: a huge count fails as truncated.
        if items > self.buf.len() {
            return Err(WireError::Truncated);
        }
        (0..items).try_for_each(|_| self.skip(depth + 1))
    }

    pub(crate) fn map_len(&mut self) -> Result<usize, WireError> {
        match self.marker()? {
            Marker::FixMap(n) => Ok(usize::from(n)),
            Marker::Map16 => Ok(self.be(2)? as usize),
            Marker::Map32 => Ok(self.be(4)? as usize),
            _ => Err(WireError::Type("record")),
        }
    }

    pub(crate) fn array_len(&mut self) -> Result<usize, WireError> {
        match self.marker()? {
            Marker::FixArray(n) => Ok(usize::from(n)),
            Marker::Array16 => Ok(self.be(2)? as usize),
            Marker::Array32 => Ok(self.be(4)? as usize),
            _ => Err(WireError::Type("record list")),
        }
    }

    fn record(&mut self, stream: &VerifyingKey) -> Result<(Meta, Body), WireError> {
        let fields = self.map_len()?;
        if fields > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let mut value_hash = None;
        let (mut kind, mut key, mut value) = (None, None, None);
        let (mut id, mut prev, mut prevch, mut ts, mut modified) = (None, None, None, None, None);
        let mut signature = None;
        for _ in 0..fields {
            let name = self.bytes("key name")?;
            match name {
                b"hash" => value_hash = Some(fixed::<32>(self.bytes("hash")?, "hash")?),
                b"type" => kind = Some(self.text("type")?.to_owned()),
                b"key" => key = Some(self.text("key")?.to_owned()),
                b"val" => {
                    let v = self.bytes("val")?;
                    if v.len() > MAX_VALUE {
                        return Err(WireError::Range("val"));
                    }
                    value = Some(v.to_vec());
                }
                b"id" => id = Some(self.int("id")?),
                b"sig" => signature = Some(fixed::<64>(self.bytes("sig")?, "sig")?),
                b"prev" => prev = Some(self.int("prev")?),
                b"prevch" => prevch = Some(self.int("prevch")?),
                b"ts" => ts = Some(self.int("ts")?),
                b"mod" => modified = Some(self.int("mod")?),
                b"chain" => {
                    let chain = self.bytes("chain")?;
                    if !chain.is_empty() && chain != stream.as_bytes() {
                        return Err(WireError::OtherChain);
                    }
                }
                _ => self.skip(0)?,
            }
        }
        let kind = kind.ok_or(WireError::Missing("type"))?;
        let key = key.ok_or(WireError::Missing("key"))?;
        let value_hash = match (value_hash, &value) {
            (Some(h), _) => h,
            (None, Some(v)) => hash(v),
            (None, None) => return Err(WireError::Missing("hash")),
        };
        let unsigned = |v: Option<i64>, field| {
            u64::try_from(v.ok_or(WireError::Missing(field))?).map_err(|_| WireError::Range(field))
        };
        let meta = Meta {
            id: unsigned(id, "id")?,
            timestamp: ts.ok_or(WireError::Missing("ts"))?,
            modified: modified.ok_or(WireError::Missing("mod"))?,
            prev: unsigned(prev, "prev")?,
            prevchange: prevch.ok_or(WireError::Missing("prevch"))?,
            key_hash: hash(key.as_bytes()),
            value_hash,
            type_hash: hash(kind.as_bytes()),
            signature: signature.ok_or(WireError::Missing("sig"))?,
        };
        Ok((meta, Body { key, kind, value }))
    }

    pub(crate) fn end(&self) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| WireError::Length {
        field,
        got: bytes.len(),
        expected: match N {
            32 => "32",
            _ => "64",
        },
    })
}

/// Decodes one record map (a `crdr` response).
pub fn decode_record(bytes: &[u8], stream: &VerifyingKey) -> Result<(Meta, Body), WireError> {
    let mut reader = Reader { buf: bytes };
    let record = reader.record(stream)?;
    reader.end()?;
    Ok(record)
}

/// Decodes a `newRecords` response.
pub fn decode_records(bytes: &[u8], stream: &VerifyingKey) -> Result<Vec<(Meta, Body)>, WireError> {
    let mut reader = Reader { buf: bytes };
    let count = reader.array_len()?;
    if count > bytes.len() {
        return Err(WireError::Truncated);
    }
    let records = (0..count)
        .map(|_| reader.record(stream))
        .collect::<Result<Vec<_>, _>>()?;
    reader.end()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_family_lengths_match_msgpack_0_6() {
        let mut out = Vec::new();
        write_raw(&mut out, &[7; 31]);
        assert_eq!(out[0], 0xbf);
        out.clear();
        write_raw(&mut out, &[7; 32]);
        assert_eq!(&out[..3], &[0xda, 0, 32]);
        out.clear();
        write_raw(&mut out, &vec![7; 70_000]);
        assert_eq!(&out[..5], &[0xdb, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn bin_fields_any_order_unknown_keys_and_no_value_decode() {
        let owner = keyway_core::drayer::SigningKey::from_bytes(&[1; 32]);
        let stream = owner.verifying_key();
        let mut meta = Meta::new(3, -5, 99, 2, 40, "k", "obj", hash(b"v"));
        meta.sign(&owner);
        // Newer msgpack: bin for bytes, str8 for text, keys reordered.
        let mut out = vec![0x8b];
        let bin = |out: &mut Vec<u8>, name: &str, bytes: &[u8]| {
            out.push(0xd9);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(0xc4);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        };
        bin(&mut out, "sig", &meta.signature);
        bin(&mut out, "chain", stream.as_bytes());
        bin(&mut out, "type", b"obj");
        bin(&mut out, "key", b"k");
        bin(&mut out, "hash", &meta.value_hash);
        for (name, value) in [
            ("mod", 99i64),
            ("prevch", 40),
            ("id", 3),
            ("prev", 2),
            ("ts", -5),
        ] {
            write_raw(&mut out, name.as_bytes());
            write_int(&mut out, value);
        }
        write_raw(&mut out, b"extra");
        out.extend_from_slice(&[0x92, 0xc0, 0xc3]);
        let (decoded, body) = decode_record(&out, &stream).unwrap();
        assert_eq!(decoded, meta);
        assert_eq!(body.value, None, "metadata only");
        assert_eq!(decoded.verify(&stream), Ok(()));
        // Another stream's record is refused.
        let other = keyway_core::drayer::SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(decode_record(&out, &other), Err(WireError::OtherChain));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = keyway_core::drayer::SigningKey::from_bytes(&[1; 32]).verifying_key();
        for bytes in [
            &[][..],
            &[0x91],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0xa2, b'i', b'd', 0xc0],
            &[0x8f],
        ] {
            assert!(decode_records(bytes, &key).is_err());
            assert!(decode_record(bytes, &key).is_err());
        }
    }
}
