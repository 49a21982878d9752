//! A secp256k1 identity: what signs names and sidewire messages. The app
//! keeps `privateHex()` in the platform keystore.

use getrandom::SysRng;
use keyway_core::rand_core::UnwrapErr;

use crate::error::KeywayError;

#[derive(uniffi::Object)]
pub struct Keypair {
    pub(crate) inner: keyway_core::Keypair,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Keypair")
            .field("public", self.inner.public())
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl Keypair {
    /// A new keypair from the system's random source.
    #[uniffi::constructor]
    pub fn generate() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            inner: keyway_core::Keypair::generate(&mut UnwrapErr(SysRng)),
        })
    }

    /// The keypair of a 32-byte secret, 64 hex digits.
    #[uniffi::constructor]
    pub fn from_private_hex(hex: String) -> Result<std::sync::Arc<Self>, KeywayError> {
        let bytes = base16ct::mixed::decode_vec(hex.trim())
            .map_err(|_| KeywayError::InvalidInput("the private key is not hex".into()))?;
        let inner = keyway_core::Keypair::from_secret_bytes(&bytes)
            .map_err(|e| KeywayError::InvalidInput(format!("not a secp256k1 private key: {e}")))?;
        Ok(std::sync::Arc::new(Self { inner }))
    }

    /// The compressed public key, 66 hex digits.
    pub fn public_key_hex(&self) -> String {
        self.inner.public().to_string()
    }

    /// The secret, 64 hex digits.
    pub fn private_hex(&self) -> String {
        base16ct::lower::encode_string(&self.inner.secret_bytes())
    }
}
