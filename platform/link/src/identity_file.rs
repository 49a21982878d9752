//! The identity file: a node's secret keys sealed under its password
//! (issue 16, item 6).
//!
//! # Format, version 1
//!
//! UTF-8 text, one `name=value` per line, in this order and nothing else:
//!
//! ```text
//! keyway-identity v1
//! kdf=argon2id-v19
//! m_kib=65536
//! t=3
//! p=1
//! salt=<16 bytes, lowercase hex>
//! nonce=<24 bytes, lowercase hex>
//! sealed=<80 bytes, lowercase hex>
//! ```
//!
//! `sealed` is XChaCha20-Poly1305 (key: Argon2id v1.3 of the password and
//! `salt` with memory `m_kib` KiB, `t` passes, `p` lanes, 32-byte output;
//! nonce: `nonce`) of the 64-byte plaintext
//! `secp256k1 secret scalar (32, big-endian) ‖ Noise static X25519 secret (32)`,
//! followed by the 16-byte tag. The associated data is the first six lines
//! (from `keyway-identity v1` to `salt=…`, each with its `\n`), so the
//! parameters cannot be changed without the file failing to open. The file
//! is created with mode 0600 and never overwritten. A later version changes
//! the first line; this code refuses any version it does not know.
//!
//! The same key seals the node's other secret files ([`crate::sealed_file`]).

use std::path::Path;

use getrandom::SysRng;
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::{Keypair, PublicKey};
use zeroize::Zeroizing;

use crate::sealed_text::{self, FileError, Lines};
use crate::sealing_key::{KdfParams, NONCE_LEN, SALT_LEN, SealError, SealingKey, TAG_LEN};

const MAGIC: &str = "keyway-identity";
const VERSION: &str = "v1";
const KDF: &str = "argon2id-v19";
const WHAT: &str = "Keyway identity file";
const PLAINTEXT_LEN: usize = 64;

/// Why an identity file could not be created or unlocked.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFileError {
    /// Reading, writing or parsing the file.
    #[error(transparent)]
    File(#[from] FileError),
    /// The first line names a version this build does not read.
    #[error(
        "{path}: identity file version {version:?} is not supported (this build reads {VERSION})"
    )]
    UnsupportedVersion {
        /// The file.
        path: String,
        /// What the file says.
        version: String,
    },
    /// The password is wrong (or the file was altered).
    #[error("{path}: wrong password (or the identity file was altered)")]
    WrongPassword {
        /// The file.
        path: String,
    },
    /// The file's Argon2id parameters are refused.
    #[error("{path}: {source}")]
    Kdf {
        /// The file.
        path: String,
        /// Why.
        source: SealError,
    },
    /// The sealed secrets opened but are not valid keys (a file written by
    /// something else under the same password).
    #[error("{path}: the sealed identity key is not a valid secp256k1 key")]
    InvalidKey {
        /// The file.
        path: String,
    },
}

/// A node's secret keys.
#[derive(Clone)]
pub struct NodeSecrets {
    identity: Keypair,
    noise_static: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for NodeSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeSecrets")
            .field("node_pk", self.identity.public())
            .finish_non_exhaustive()
    }
}

impl NodeSecrets {
    /// Fresh keys from the OS generator. Any 32 random bytes are an X25519
    /// secret (clamping happens when it is used, RFC 7748 §5).
    pub fn generate() -> Self {
        let mut rng = UnwrapErr(SysRng);
        let identity = Keypair::generate(&mut rng);
        let mut noise_static = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(noise_static.as_mut());
        Self {
            identity,
            noise_static,
        }
    }

    /// Builds secrets from their parts.
    pub fn from_parts(identity: Keypair, noise_static: [u8; 32]) -> Self {
        Self {
            identity,
            noise_static: Zeroizing::new(noise_static),
        }
    }

    /// The long-term secp256k1 identity: its public key names the node.
    pub fn identity(&self) -> &Keypair {
        &self.identity
    }

    /// The node's public key (`node_pk`).
    pub fn public_key(&self) -> &PublicKey {
        self.identity.public()
    }

    /// The Noise static X25519 secret.
    pub fn noise_static_secret(&self) -> &[u8; 32] {
        &self.noise_static
    }

    fn plaintext(&self) -> Zeroizing<[u8; PLAINTEXT_LEN]> {
        let mut out = Zeroizing::new([0u8; PLAINTEXT_LEN]);
        out[..32].copy_from_slice(&Zeroizing::new(self.identity.secret_bytes())[..]);
        out[32..].copy_from_slice(&self.noise_static[..]);
        out
    }
}

/// An opened identity file: the secrets and the key that sealed them
/// (for [`crate::sealed_file`]).
#[derive(Clone, Debug)]
pub struct UnlockedIdentity {
    /// The node's keys.
    pub secrets: NodeSecrets,
    /// The password-derived key, to seal or open the node's other secrets.
    pub key: SealingKey,
}

fn header(params: KdfParams, salt: &[u8; SALT_LEN]) -> String {
    format!(
        "{MAGIC} {VERSION}\nkdf={KDF}\nm_kib={}\nt={}\np={}\nsalt={}\n",
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        base16ct::lower::encode_string(salt)
    )
}

/// Creates the identity file at `path` (mode 0600; an existing file is
/// never overwritten) holding `secrets` sealed under `password` with
/// Argon2id at `params` ([`KdfParams::DEFAULT`] unless a test wants a
/// cheaper unlock).
pub fn create(
    path: &Path,
    password: &[u8],
    params: KdfParams,
    secrets: NodeSecrets,
) -> Result<UnlockedIdentity, IdentityFileError> {
    // Refuse before the slow derivation, and again (atomically) on create.
    if path.exists() {
        return Err(FileError::Exists {
            path: path.to_owned(),
        }
        .into());
    }
    let mut salt = [0u8; SALT_LEN];
    UnwrapErr(SysRng).fill_bytes(&mut salt);
    let key =
        SealingKey::derive(password, salt, params).map_err(|source| IdentityFileError::Kdf {
            path: path.display().to_string(),
            source,
        })?;
    let header = header(params, &salt);
    let (nonce, sealed) = key.seal(header.as_bytes(), &secrets.plaintext()[..]);
    let text = format!(
        "{header}nonce={}\nsealed={}\n",
        base16ct::lower::encode_string(&nonce),
        base16ct::lower::encode_string(&sealed)
    );
    sealed_text::create_private(path, &text)?;
    Ok(UnlockedIdentity { secrets, key })
}

/// Opens the identity file at `path` with `password`.
pub fn unlock(path: &Path, password: &[u8]) -> Result<UnlockedIdentity, IdentityFileError> {
    let text = sealed_text::read(path, WHAT)?;
    let shown = || path.display().to_string();
    let mut lines = Lines::new(&text, path, WHAT);
    let first = text.lines().next().unwrap_or_default();
    match first.strip_prefix(MAGIC).and_then(|v| v.strip_prefix(' ')) {
        Some(VERSION) => lines.expect(&format!("{MAGIC} {VERSION}"))?,
        Some(version) => {
            return Err(IdentityFileError::UnsupportedVersion {
                path: shown(),
                version: version.to_owned(),
            });
        }
        None => {
            return Err(lines
                .malformed("it does not start with \"keyway-identity\"")
                .into());
        }
    }
    lines.expect(&format!("kdf={KDF}"))?;
    let params = KdfParams {
        m_cost_kib: lines.number("m_kib")?,
        t_cost: lines.number("t")?,
        p_cost: lines.number("p")?,
    };
    let salt = lines.hex::<SALT_LEN>("salt")?;
    let nonce = lines.hex::<NONCE_LEN>("nonce")?;
    let sealed = lines.hex::<{ PLAINTEXT_LEN + TAG_LEN }>("sealed")?;
    lines.end()?;
    let key =
        SealingKey::derive(password, salt, params).map_err(|source| IdentityFileError::Kdf {
            path: shown(),
            source,
        })?;
    let plaintext = key
        .open(header(params, &salt).as_bytes(), &nonce, &sealed)
        .map_err(|_| IdentityFileError::WrongPassword { path: shown() })?;
    let identity = Keypair::from_secret_bytes(&plaintext[..32])
        .map_err(|_| IdentityFileError::InvalidKey { path: shown() })?;
    let mut noise_static = Zeroizing::new([0u8; 32]);
    noise_static.copy_from_slice(&plaintext[32..]);
    Ok(UnlockedIdentity {
        secrets: NodeSecrets {
            identity,
            noise_static,
        },
        key,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Cheap Argon2id: these tests check the format, not the cost.
    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };

    fn fresh(dir: &Path) -> (std::path::PathBuf, NodeSecrets) {
        let path = dir.join("node.identity");
        let secrets = NodeSecrets::generate();
        create(&path, b"correct horse", CHEAP, secrets.clone()).unwrap();
        (path, secrets)
    }

    #[test]
    fn identity_unlocks_with_its_password_to_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (path, secrets) = fresh(dir.path());
        let opened = unlock(&path, b"correct horse").unwrap();
        assert_eq!(opened.secrets.public_key(), secrets.public_key());
        assert_eq!(
            opened.secrets.identity().secret_bytes(),
            secrets.identity().secret_bytes()
        );
        assert_eq!(
            opened.secrets.noise_static_secret(),
            secrets.noise_static_secret()
        );
        assert_eq!(opened.key.params(), CHEAP);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn file_holds_no_plaintext_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (path, secrets) = fresh(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let scalar = secrets.identity().secret_bytes();
        let noise = *secrets.noise_static_secret();
        for secret in [&scalar[..], &noise[..]] {
            // Neither raw, nor in hex of either case, nor any 8-byte run.
            assert!(!text.contains(&base16ct::lower::encode_string(secret)));
            assert!(!text.contains(&base16ct::upper::encode_string(secret)));
            for window in secret.windows(8) {
                assert!(!bytes.windows(8).any(|w| w == window));
                assert!(!text.contains(&base16ct::lower::encode_string(window)));
            }
        }
        assert!(text.starts_with("keyway-identity v1\nkdf=argon2id-v19\nm_kib=256\nt=1\np=1\n"));
    }

    #[test]
    fn wrong_password_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let err = unlock(&path, b"correct horse ").unwrap_err();
        assert!(
            matches!(err, IdentityFileError::WrongPassword { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("wrong password"), "{err}");
    }

    #[test]
    fn changed_parameters_or_salt_fail_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [("t=1\n", "t=2\n"), ("m_kib=256\n", "m_kib=512\n")] {
            std::fs::write(&path, text.replace(from, to)).unwrap();
            assert!(matches!(
                unlock(&path, b"correct horse"),
                Err(IdentityFileError::WrongPassword { .. })
            ));
        }
        // Flip one salt digit.
        let salt_at = text.find("salt=").unwrap() + 5;
        let mut altered = text.clone().into_bytes();
        altered[salt_at] = if altered[salt_at] == b'0' { b'1' } else { b'0' };
        std::fs::write(&path, &altered).unwrap();
        assert!(matches!(
            unlock(&path, b"correct horse"),
            Err(IdentityFileError::WrongPassword { .. })
        ));
    }

    #[test]
    fn unknown_version_and_junk_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("keyway-identity v1", "keyway-identity v9"),
        )
        .unwrap();
        let err = unlock(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("version \"v9\""), "{err}");
        std::fs::write(&path, "hello\n").unwrap();
        let err = unlock(&path, b"x").unwrap_err();
        assert!(
            err.to_string().contains("is not a Keyway identity file"),
            "{err}"
        );
        std::fs::write(&path, text.replace("p=1\n", "p=1\nextra=2\n")).unwrap();
        assert!(matches!(
            unlock(&path, b"x"),
            Err(IdentityFileError::File(FileError::Malformed { .. }))
        ));
        std::fs::write(&path, text.replace("t=1\n", "t=+1\n")).unwrap();
        assert!(matches!(
            unlock(&path, b"x"),
            Err(IdentityFileError::File(FileError::Malformed { .. }))
        ));
    }

    #[test]
    fn hostile_parameters_are_refused_without_deriving() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = fresh(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("m_kib=256\n", "m_kib=4294967295\n")).unwrap();
        let err = unlock(&path, b"correct horse").unwrap_err();
        assert!(matches!(err, IdentityFileError::Kdf { .. }), "{err:?}");
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (path, secrets) = fresh(dir.path());
        let before = std::fs::read(&path).unwrap();
        let err = create(&path, b"other", CHEAP, NodeSecrets::generate()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            unlock(&path, b"correct horse")
                .unwrap()
                .secrets
                .public_key(),
            secrets.public_key()
        );
    }
}
