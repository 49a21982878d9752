//! The network key: the 32-byte Noise PSK that gates a Keyway network.
//!
//! A random secret shared by the network's nodes (issue 16, item 1), never
//! derived from public values: WarpNet's PSK was computed from the network
//! name, code hash and version, so anyone could compute it. Reading it
//! from the key file is the shell's job; the core takes the value.

use core::fmt;

use rand_core::CryptoRng;

use crate::identity::KeyError;

/// Length of the network key.
pub const NETWORK_KEY_LEN: usize = 32;

/// The network's pre-shared key. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey([u8; NETWORK_KEY_LEN]);

impl NetworkKey {
    /// Wraps 32 secret bytes.
    pub const fn from_bytes(bytes: [u8; NETWORK_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; NETWORK_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses 64 hex digits (surrounding whitespace, such as a key file's
    /// trailing newline, is ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.len() != 2 * NETWORK_KEY_LEN {
            return Err(KeyError::WrongLength {
                expected: NETWORK_KEY_LEN,
                got: text.len() / 2,
            });
        }
        let mut out = [0u8; NETWORK_KEY_LEN];
        base16ct::mixed::decode(text, &mut out).map_err(|_| KeyError::InvalidHex)?;
        Ok(Self(out))
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; NETWORK_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parses_and_debug_hides_the_key() {
        let text = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let key = NetworkKey::from_hex(text).unwrap();
        assert_eq!(key.as_bytes()[1], 0x11);
        assert_eq!(alloc::format!("{key:?}"), "NetworkKey(..)");
        assert!(NetworkKey::from_hex("0011").is_err());
        assert_eq!(
            NetworkKey::from_hex(&"zz".repeat(32)),
            Err(KeyError::InvalidHex)
        );
    }
}
