//! Other secret files of a node (the private keys of streams it owns),
//! sealed under the key of its identity file (issue 16, item 6): one
//! password unlocks everything.
//!
//! # Format, version 1
//!
//! ```text
//! keyway-sealed v1
//! label=<what the secret is, [a-z0-9.:-], at most 64 characters>
//! key=<salt of the identity file whose key sealed it, 16 bytes hex>
//! nonce=<24 bytes, lowercase hex>
//! sealed=<XChaCha20-Poly1305 ciphertext and tag, lowercase hex>
//! ```
//!
//! The associated data is the first three lines, each with its `\n`: a
//! secret sealed as one label never opens as another, and a file sealed by
//! another identity is named as such instead of as a wrong password.

use std::path::Path;

use zeroize::Zeroizing;

use crate::sealed_text::{self, FileError, Lines};
use crate::sealing_key::{NONCE_LEN, SALT_LEN, SealingKey, TAG_LEN};

const FIRST_LINE: &str = "keyway-sealed v1";
const WHAT: &str = "Keyway sealed file";
/// The largest secret a sealed file holds (a key, not a database).
pub const MAX_SECRET_LEN: usize = 16 * 1024;
const MAX_LABEL_LEN: usize = 64;

/// Why a sealed file could not be written or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealedFileError {
    /// Reading, writing or parsing the file.
    #[error(transparent)]
    File(#[from] FileError),
    /// The label has characters outside `[a-z0-9.:-]` or is too long.
    #[error("label {0:?} must be 1 to 64 characters of [a-z0-9.:-]")]
    BadLabel(String),
    /// The secret is larger than [`MAX_SECRET_LEN`].
    #[error("a sealed secret holds at most {MAX_SECRET_LEN} bytes, not {0}")]
    TooLarge(usize),
    /// The file holds another kind of secret.
    #[error("{path} holds a {found:?} secret, not {expected:?}")]
    OtherLabel {
        /// The file.
        path: String,
        /// The label asked for.
        expected: String,
        /// The file's label.
        found: String,
    },
    /// The file was sealed under another identity file's key.
    #[error("{path} was sealed under another identity's key")]
    OtherKey {
        /// The file.
        path: String,
    },
    /// The tag did not verify.
    #[error("{path}: cannot open (altered, or sealed under another password)")]
    Inauthentic {
        /// The file.
        path: String,
    },
}

fn check_label(label: &str) -> Result<(), SealedFileError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SealedFileError::BadLabel(label.to_owned()))
    }
}

fn header(label: &str, key: &SealingKey) -> String {
    format!(
        "{FIRST_LINE}\nlabel={label}\nkey={}\n",
        base16ct::lower::encode_string(key.salt())
    )
}

/// Writes `secret` to a new file at `path` (mode 0600, never overwriting),
/// sealed under `key` as `label`.
pub fn create(
    path: &Path,
    key: &SealingKey,
    label: &str,
    secret: &[u8],
) -> Result<(), SealedFileError> {
    check_label(label)?;
    if secret.len() > MAX_SECRET_LEN {
        return Err(SealedFileError::TooLarge(secret.len()));
    }
    let header = header(label, key);
    let (nonce, sealed) = key.seal(header.as_bytes(), secret);
    let text = format!(
        "{header}nonce={}\nsealed={}\n",
        base16ct::lower::encode_string(&nonce),
        base16ct::lower::encode_string(&sealed)
    );
    Ok(sealed_text::create_private(path, &text)?)
}

/// Opens the sealed file at `path`, which must hold a `label` secret
/// sealed under `key`.
pub fn open(
    path: &Path,
    key: &SealingKey,
    label: &str,
) -> Result<Zeroizing<Vec<u8>>, SealedFileError> {
    check_label(label)?;
    let text = sealed_text::read(path, WHAT)?;
    let shown = || path.display().to_string();
    let mut lines = Lines::new(&text, path, WHAT);
    lines.expect(FIRST_LINE)?;
    let found = lines.value("label")?;
    if found != label {
        return Err(SealedFileError::OtherLabel {
            path: shown(),
            expected: label.to_owned(),
            found: found.to_owned(),
        });
    }
    let salt = lines.hex::<SALT_LEN>("key")?;
    if &salt != key.salt() {
        return Err(SealedFileError::OtherKey { path: shown() });
    }
    let nonce = lines.hex::<NONCE_LEN>("nonce")?;
    let sealed = lines.hex_vec("sealed", MAX_SECRET_LEN + TAG_LEN)?;
    lines.end()?;
    key.open(header(label, key).as_bytes(), &nonce, &sealed)
        .map_err(|_| SealedFileError::Inauthentic { path: shown() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_file::{self, NodeSecrets};
    use crate::sealing_key::KdfParams;

    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// A stream private key file's contents (`<stream>.privatekey`: base64
    /// of the 64-byte libsodium secret), sealed by an identity's key.
    const STREAM_KEY: &[u8] =
        b"YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5emFiY2RlZmdoaWprbA==\n";

    #[test]
    fn a_stream_key_sealed_under_the_identity_opens_after_unlocking_it() {
        let dir = tempfile::tempdir().unwrap();
        let id_path = dir.path().join("node.identity");
        let created =
            identity_file::create(&id_path, b"pw", CHEAP, NodeSecrets::generate()).unwrap();
        let sealed_path = dir.path().join("s.stream.privatekey.sealed");
        create(&sealed_path, &created.key, "drayer-private-key", STREAM_KEY).unwrap();

        let text = std::fs::read_to_string(&sealed_path).unwrap();
        assert!(!text.contains("YWJjZGVm"), "plaintext leaked: {text}");
        assert!(!text.contains(&base16ct::lower::encode_string(&STREAM_KEY[..16])));

        let unlocked = identity_file::unlock(&id_path, b"pw").unwrap();
        let opened = open(&sealed_path, &unlocked.key, "drayer-private-key").unwrap();
        assert_eq!(opened.as_slice(), STREAM_KEY);
        assert!(matches!(
            open(&sealed_path, &unlocked.key, "other-kind"),
            Err(SealedFileError::OtherLabel { .. })
        ));
    }

    #[test]
    fn another_identitys_key_or_an_altered_file_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::derive(b"pw", [1; SALT_LEN], CHEAP).unwrap();
        let path = dir.path().join("sealed");
        create(&path, &key, "x", b"secret").unwrap();
        let other = SealingKey::derive(b"pw", [2; SALT_LEN], CHEAP).unwrap();
        assert!(matches!(
            open(&path, &other, "x"),
            Err(SealedFileError::OtherKey { .. })
        ));
        // Same salt, other password: the tag fails.
        let wrong = SealingKey::derive(b"pw!", [1; SALT_LEN], CHEAP).unwrap();
        assert!(matches!(
            open(&path, &wrong, "x"),
            Err(SealedFileError::Inauthentic { .. })
        ));
        // Relabelled on disk: refused by the associated data.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("label=x\n", "label=y\n")).unwrap();
        assert!(matches!(
            open(&path, &key, "y"),
            Err(SealedFileError::Inauthentic { .. })
        ));
    }

    #[test]
    fn labels_and_sizes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::derive(b"pw", [1; SALT_LEN], CHEAP).unwrap();
        let path = dir.path().join("sealed");
        for bad in ["", "Upper", "new\nline", &"a".repeat(65)] {
            assert!(matches!(
                create(&path, &key, bad, b"s"),
                Err(SealedFileError::BadLabel(_))
            ));
        }
        assert!(matches!(
            create(&path, &key, "x", &vec![0; MAX_SECRET_LEN + 1]),
            Err(SealedFileError::TooLarge(_))
        ));
        assert!(!path.exists());
    }
}
