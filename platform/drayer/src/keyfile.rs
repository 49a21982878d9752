//! `<stream>.privatekey`: standard base64 of the 64-byte libsodium secret
//! key (seed ‖ public key), no newline (spec §2.2). Created with mode 0600
//! in one step (the original wrote it and then chmod'ed: O19), never
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyway_core::drayer::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not base64 of a 64-byte Ed25519 secret key")]
    Malformed { path: PathBuf },
    #[error("{path} does not hold the key of this stream")]
    WrongKey { path: PathBuf },
}

/// The key file next to stream file `stream`.
pub fn path_for(stream: &Path) -> PathBuf {
    let mut name = stream.as_os_str().to_owned();
    name.push(".privatekey");
    PathBuf::from(name)
}

/// The 64-byte libsodium form.
pub fn encode(key: &SigningKey) -> String {
    let mut secret = [0u8; 64];
    secret[..32].copy_from_slice(key.as_bytes());
    secret[32..].copy_from_slice(key.verifying_key().as_bytes());
    STANDARD.encode(secret)
}

/// Creates `path` (mode 0600, failing if it exists) holding `key`.
pub fn create(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(encode(key).as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Loads the key in `path` and checks it signs for `public`.
pub fn load(path: &Path, public: &VerifyingKey) -> Result<SigningKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let malformed = || KeyFileError::Malformed {
        path: path.to_owned(),
    };
    let bytes = STANDARD.decode(text.trim()).map_err(|_| malformed())?;
    let secret: [u8; 64] = bytes.try_into().map_err(|_| malformed())?;
    let key = SigningKey::from_keypair_bytes(&secret).map_err(|_| malformed())?;
    if key.verifying_key() != *public {
        return Err(KeyFileError::WrongKey {
            path: path.to_owned(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_key_file_round_trips_and_is_private() {
        let key = SigningKey::from_bytes(&core::array::from_fn(|i| i as u8));
        // Spec §13.3: contents of owner.stream.privatekey.
        assert_eq!(
            encode(&key),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.stream.privatekey");
        create(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(create(&path, &key).is_err(), "never overwritten");
        assert_eq!(
            load(&path, &key.verifying_key()).unwrap().to_bytes(),
            key.to_bytes()
        );
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(matches!(
            load(&path, &other),
            Err(KeyFileError::WrongKey { .. })
        ));
    }
}
