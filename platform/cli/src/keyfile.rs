//! Key files: the 32-byte secp256k1 scalar as 64 hex digits and a newline,
//! readable by the owner only.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use getrandom::SysRng;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};

/// Creates a new key file (mode 0600 from the first byte: the file is
/// created with that mode, never chmod-ed afterwards) and returns its public key.
pub(crate) fn generate(path: &Path) -> Result<PublicKey> {
    let keypair = Keypair::generate(&mut UnwrapErr(SysRng));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    let mut hex = [0u8; 64];
    let text = base16ct::lower::encode_str(&keypair.secret_bytes(), &mut hex)
        .map_err(|_| anyhow::anyhow!("hex buffer too small"))?;
    writeln!(file, "{text}")
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    Ok(*keypair.public())
}

/// Loads the key at `path`, creating it (mode 0600) if it does not exist:
/// a server's identity on first start.
pub(crate) fn load_or_generate(path: &Path) -> Result<Keypair> {
    if !path.exists() {
        generate(path)?;
    }
    load(path)
}

/// Reads a key file written by [`generate`] (or any 64-hex-digit secret).
pub(crate) fn load(path: &Path) -> Result<Keypair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    Keypair::from_secret_hex(text.trim())
        .with_context(|| format!("{} is not a secp256k1 key file", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        let pk = generate(&path).expect("generate");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(*load(&path).expect("load").public(), pk);
        assert!(
            generate(&path).is_err(),
            "an existing key must never be overwritten"
        );
    }

    #[test]
    fn load_or_generate_creates_once_then_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.key");
        let first = load_or_generate(&path).expect("create");
        let again = load_or_generate(&path).expect("load");
        assert_eq!(first.public(), again.public());
    }

    #[test]
    fn junk_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        std::fs::write(&path, "not a key").expect("write");
        let err = format!("{:#}", load(&path).expect_err("junk"));
        assert!(err.contains("is not a secp256k1 key file"), "{err}");
    }
}
