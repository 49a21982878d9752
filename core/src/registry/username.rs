//! Registry usernames: one spelling per name.
//!
//! A name as typed is *folded* into its canonical form:
//!
//! 1. Unicode NFC (canonical composition), so `K` (U+212A KELVIN SIGN)
//!    and `K` are one letter;
//! 2. Unicode full case folding (`CaseFolding.txt`, status C and F), so
//!    `Alice`, `ALICE` and `alice` are one name, and so are `ſtraße`,
//!    `STRASSE` and `strasse`;
//! 3. the result must be 3–32 characters, each one of `a`–`z`, `0`–`9`,
//!    `_` and `-`. Anything else (spaces, dots, accents, other scripts) is
//!    refused rather than mapped, so two different names can never look
//!    alike once folded.
//!
//! Because step 3 keeps only ASCII, full case folding needs only the
//! characters whose folding *is* ASCII: `A`–`Z`, and the ten that
//! [`char::to_lowercase`] leaves non-ASCII but folding does not (ß, ẞ, ſ
//! and the Latin ligatures ﬀ–ﬆ), which `fold_char` lists. Every other
//! character folds to something non-ASCII and is refused either way.
//!
//! The wire carries only the canonical form ([`Username::from_canonical`]
//! refuses anything else), so a signature covers exactly one spelling.
//! Folding works in a fixed 32-byte buffer; the input is capped at
//! [`MAX_INPUT_LEN`] bytes so hostile input costs bounded work.

use core::fmt;

use unicode_normalization::UnicodeNormalization;

/// Fewest characters in a name.
pub const MIN_LEN: usize = 3;
/// Most characters (= bytes: canonical names are ASCII) in a name.
pub const MAX_LEN: usize = 32;
/// Longest input [`Username::fold`] looks at: room for 32 characters each
/// with a few combining marks; anything longer cannot fold to 32 ASCII
/// letters.
pub const MAX_INPUT_LEN: usize = 4 * MAX_LEN * 4;

/// Why a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsernameError {
    /// Fewer than [`MIN_LEN`] characters after folding.
    TooShort,
    /// More than [`MAX_LEN`] characters after folding (or an input over
    /// [`MAX_INPUT_LEN`] bytes).
    TooLong,
    /// A character outside `a`–`z`, `0`–`9`, `_`, `-` after folding.
    BadCharacter,
    /// Bytes on the wire that are not already canonical.
    NotCanonical,
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooShort => "username must be at least 3 characters",
            Self::TooLong => "username must be at most 32 characters",
            Self::BadCharacter => "username may only hold a-z, 0-9, _ and - (after case folding)",
            Self::NotCanonical => "username is not in canonical (folded) form",
        })
    }
}

impl core::error::Error for UsernameError {}

/// A canonical username: 3–32 bytes of `[a-z0-9_-]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username {
    bytes: [u8; MAX_LEN],
    len: u8,
}

/// Whether `b` may appear in a canonical name.
pub const fn is_allowed(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')
}

/// The full case folding of `c` when it is ASCII (as bytes), else `None`.
/// `None` means the character cannot be part of a name.
fn fold_char(c: char) -> Option<&'static [u8]> {
    // `to_lowercase` agrees with full case folding on every character
    // whose folding is ASCII except these (CaseFolding.txt, status F and
    // the S/F entry for U+017F).
    let special: &'static [u8] = match c {
        '\u{00DF}' | '\u{1E9E}' => b"ss",
        '\u{017F}' => b"s",
        '\u{FB00}' => b"ff",
        '\u{FB01}' => b"fi",
        '\u{FB02}' => b"fl",
        '\u{FB03}' => b"ffi",
        '\u{FB04}' => b"ffl",
        '\u{FB05}' | '\u{FB06}' => b"st",
        _ => {
            let mut lower = c.to_lowercase();
            let first = lower.next()?;
            if lower.next().is_some() || !first.is_ascii() {
                return None;
            }
            return ASCII.get(first as usize).map(core::slice::from_ref);
        }
    };
    Some(special)
}

/// Every ASCII byte, so [`fold_char`] can hand out `'static` slices.
const ASCII: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

impl Username {
    /// Folds a name as typed (NFC, case folding) and validates it.
    pub fn fold(input: &str) -> Result<Self, UsernameError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(UsernameError::TooLong);
        }
        let mut bytes = [0u8; MAX_LEN];
        let mut len = 0;
        for c in input.chars().nfc() {
            let folded = fold_char(c).ok_or(UsernameError::BadCharacter)?;
            for &b in folded {
                if !is_allowed(b) {
                    return Err(UsernameError::BadCharacter);
                }
                *bytes.get_mut(len).ok_or(UsernameError::TooLong)? = b;
                len += 1;
            }
        }
        if len < MIN_LEN {
            return Err(UsernameError::TooShort);
        }
        Ok(Self {
            bytes,
            len: len as u8,
        })
    }

    /// Takes bytes that must already be canonical (as on the wire).
    pub fn from_canonical(raw: &[u8]) -> Result<Self, UsernameError> {
        if raw.len() < MIN_LEN {
            return Err(UsernameError::TooShort);
        }
        if raw.len() > MAX_LEN {
            return Err(UsernameError::TooLong);
        }
        if !raw.iter().all(|&b| is_allowed(b)) {
            return Err(UsernameError::NotCanonical);
        }
        let mut bytes = [0u8; MAX_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Self {
            bytes,
            len: raw.len() as u8,
        })
    }

    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        // Only allowed ASCII bytes are ever stored.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.as_str())
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Username {
    type Err = UsernameError;

    fn from_str(s: &str) -> Result<Self, UsernameError> {
        Self::fold(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_look_alikes_to_one_name() {
        for typed in ["alice", "Alice", "ALICE", "aLiCe"] {
            assert_eq!(Username::fold(typed).unwrap().as_str(), "alice");
        }
        // Kelvin sign (NFC singleton) and the long s / sharp s (folding).
        assert_eq!(Username::fold("\u{212A}im").unwrap().as_str(), "kim");
        assert_eq!(Username::fold("STRA\u{1E9E}E").unwrap().as_str(), "strasse");
        assert_eq!(Username::fold("stra\u{00DF}e").unwrap().as_str(), "strasse");
        assert_eq!(
            Username::fold("\u{017F}trasse").unwrap().as_str(),
            "strasse"
        );
        assert_eq!(Username::fold("\u{FB01}ve").unwrap().as_str(), "five");
    }

    #[test]
    fn refuses_what_is_not_a_name() {
        assert_eq!(Username::fold("ab"), Err(UsernameError::TooShort));
        assert_eq!(Username::fold(""), Err(UsernameError::TooShort));
        assert_eq!(Username::fold(&"a".repeat(33)), Err(UsernameError::TooLong));
        assert!(Username::fold(&"a".repeat(32)).is_ok());
        for bad in [
            "al ice",
            "al.ice",
            "caf\u{00E9}",
            "e\u{0301}te",
            "\u{0430}lice",
            "İlk",
        ] {
            assert_eq!(
                Username::fold(bad),
                Err(UsernameError::BadCharacter),
                "{bad}"
            );
        }
        assert_eq!(
            Username::fold(&"a".repeat(MAX_INPUT_LEN + 1)),
            Err(UsernameError::TooLong)
        );
    }

    #[test]
    fn canonical_bytes_only_on_the_wire() {
        assert!(Username::from_canonical(b"alice_01-x").is_ok());
        assert_eq!(
            Username::from_canonical(b"Alice"),
            Err(UsernameError::NotCanonical)
        );
        assert_eq!(
            Username::from_canonical(b"al"),
            Err(UsernameError::TooShort)
        );
    }
}
