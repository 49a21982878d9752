//! The network key: the 32-byte secret that gates a Keyway network (the
//! Noise PSK, issue 16 item 1). It is drawn at random and kept in a file —
//! never derived from public values such as a network name or a version,
//! which is how WarpNet's "PSK" ended up gating nothing.
//!
//! File format: 64 lowercase hex digits and a newline, mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use getrandom::SysRng;
use keyway_core::rand_core::{Rng, UnwrapErr};
use zeroize::Zeroizing;

use crate::sealed_text::{self, FileError};

const WHAT: &str = "Keyway network key file";

/// Why a network key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum NetworkKeyError {
    /// Reading or writing the file.
    #[error(transparent)]
    File(#[from] FileError),
    /// Other users may read the file: the network is open to them.
    #[error("{0} is readable by other users: `chmod 600` it (a network key is a secret)")]
    Exposed(String),
}

/// A 32-byte network secret, zeroised on drop.
#[derive(Clone)]
pub struct NetworkKey(Zeroizing<[u8; 32]>);

impl core::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("NetworkKey(..)")
    }
}

impl NetworkKey {
    /// A fresh key from the OS generator.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        UnwrapErr(SysRng).fill_bytes(key.as_mut());
        Self(key)
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The 32 bytes (the Noise PSK).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Writes this key to a new file at `path` (mode 0600 from the start;
    /// never overwriting).
    pub fn write_new(&self, path: &Path) -> Result<(), NetworkKeyError> {
        let text = Zeroizing::new(format!(
            "{}\n",
            base16ct::lower::encode_string(self.0.as_ref())
        ));
        Ok(sealed_text::create_private(path, &text)?)
    }

    /// Reads a key file; refuses one that other users can read.
    pub fn load(path: &Path) -> Result<Self, NetworkKeyError> {
        let shown = || path.display().to_string();
        let mode = std::fs::metadata(path)
            .map_err(|source| FileError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(NetworkKeyError::Exposed(shown()));
        }
        let text = Zeroizing::new(sealed_text::read(path, WHAT)?);
        let mut key = Zeroizing::new([0u8; 32]);
        let hex = text.trim_end();
        if hex.len() != 64 || base16ct::mixed::decode(hex, key.as_mut()).is_err() {
            return Err(FileError::Malformed {
                path: path.to_owned(),
                what: WHAT,
                why: "expected 64 hex digits".into(),
            }
            .into());
        }
        Ok(Self(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_hex_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.key");
        let key = NetworkKey::generate();
        key.write_new(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(NetworkKey::load(&path).unwrap().as_bytes(), key.as_bytes());
        assert!(matches!(
            NetworkKey::generate().write_new(&path),
            Err(NetworkKeyError::File(FileError::Exists { .. }))
        ));
    }

    #[test]
    fn exposed_or_junk_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            NetworkKey::load(&path),
            Err(NetworkKeyError::Exposed(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(NetworkKey::load(&path).unwrap().as_bytes(), &[0xab; 32]);
        std::fs::write(&path, "abcd\n").unwrap();
        assert!(matches!(
            NetworkKey::load(&path),
            Err(NetworkKeyError::File(FileError::Malformed { .. }))
        ));
    }
}
