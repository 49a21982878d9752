//! `obj` records (spec §10.1): the original's dict API stores the msgpack
//! of a Python value, packed with bin types (msgpack ≥ 1.0 defaults).

/// The value of an `obj` record holding the string `text`.
pub fn encode_str(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 5);
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_str(&mut out, text);
    out
}

/// The bytes of an `obj` value that is exactly one msgpack str or bin.
pub fn decode_bytes(value: &[u8]) -> Option<&[u8]> {
    let mut reader = crate::wire::Reader { buf: value };
    let bytes = reader.bytes("obj").ok()?;
    reader.end().ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_as_the_original_stores_them() {
        // Spec §10.1: "world" is a5 77 6f 72 6c 64.
        assert_eq!(encode_str("world"), b"\xa5world");
        assert_eq!(encode_str(&"x".repeat(40))[..2], [0xd9, 40]);
        assert_eq!(decode_bytes(b"\xa5world"), Some(&b"world"[..]));
        assert_eq!(decode_bytes(b"\xc4\x02hi"), Some(&b"hi"[..]));
        assert_eq!(decode_bytes(b"\x01"), None);
        assert_eq!(decode_bytes(b"\xa5wor"), None);
        assert_eq!(decode_bytes(b"\xa1ab"), None, "trailing bytes");
    }
}
