//! The 32-byte Drayer stream key in standard, padded base64 (44 characters),
//! as `keyway drayer new` prints it: the spelling of `sync:<key>` capabilities.

use core::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Characters of an encoded key.
pub const ENCODED_LEN: usize = 44;

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u32)
}

/// Decodes exactly 44 characters (43 digits and one `=`) into 32 bytes.
/// Non-canonical spellings (stray low bits in the last digit) are refused,
/// so each key has one spelling in an allow-list.
pub fn decode(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != ENCODED_LEN || bytes[ENCODED_LEN - 1] != b'=' {
        return None;
    }
    let mut out = [0u8; 32];
    // 10 groups of 4 digits → 30 bytes, then 3 digits → 2 bytes.
    for (group, chunk) in bytes[..40].chunks_exact(4).enumerate() {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | value(c)?;
        }
        out[3 * group..3 * group + 3].copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let mut n = 0u32;
    for &c in &bytes[40..43] {
        n = (n << 6) | value(c)?;
    }
    if n & 0b11 != 0 {
        return None;
    }
    out[30..32].copy_from_slice(&((n >> 2) as u16).to_be_bytes());
    Some(out)
}

/// Writes the 44-character form.
pub fn display(key: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut out = [0u8; ENCODED_LEN];
    for (group, chunk) in key[..30].chunks_exact(3).enumerate() {
        let n = u32::from_be_bytes([0, chunk[0], chunk[1], chunk[2]]);
        for i in 0..4 {
            out[4 * group + i] = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
        }
    }
    let n = u32::from(u16::from_be_bytes([key[30], key[31]])) << 2;
    for i in 0..3 {
        out[40 + i] = ALPHABET[((n >> (12 - 6 * i)) & 63) as usize];
    }
    out[43] = b'=';
    // The alphabet is ASCII, so this cannot fail.
    f.write_str(core::str::from_utf8(&out).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    struct Shown([u8; 32]);
    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            display(&self.0, f)
        }
    }

    #[test]
    fn known_encoding_round_trips() {
        // base64 of bytes 0..32 (checked against Python's base64.b64encode).
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let text = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert_eq!(format!("{}", Shown(key)), text);
        assert_eq!(decode(text), Some(key));
        assert_eq!(decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9="), None);
        assert_eq!(decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"), None);
        assert_eq!(decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-="), None);
    }
}
