//! The key that seals a node's secrets at rest: Argon2id of the password
//! and a random 16-byte salt (issue 16, item 6), used with
//! XChaCha20-Poly1305.
//!
//! XChaCha's 24-byte nonces are drawn at random for every sealing: with
//! 192 bits a collision under one key is out of reach, so no counter has to
//! be stored anywhere. Every sealed blob names what it is in its associated
//! data (the file's header), so a blob of one kind (a stream's private key)
//! can never be opened as another (the identity).

use argon2::{Algorithm, Argon2, Version};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use getrandom::SysRng;
use keyway_core::rand_core::{Rng, UnwrapErr};
use zeroize::Zeroizing;

/// Length of the random salt.
pub const SALT_LEN: usize = 16;
/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag that follows every sealed blob.
pub const TAG_LEN: usize = 16;

/// Argon2id's cost parameters, stored beside the salt so a file made with
/// other costs (older defaults, a test's cheap ones) still opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// What new identity files get: 64 MiB and 3 passes (issue 16), one
    /// lane — the cost an attacker pays per guess does not shrink with more
    /// lanes, only our wall time would, and the CLI runs single-threaded.
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// The most a file may ask for. A corrupted or hostile file must not
    /// make an unlock allocate more than this, or spin for hours.
    pub const MAX: Self = Self {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 64,
        p_cost: 16,
    };

    fn argon2(self) -> Result<Argon2<'static>, SealError> {
        if self.m_cost_kib > Self::MAX.m_cost_kib
            || self.t_cost > Self::MAX.t_cost
            || self.p_cost > Self::MAX.p_cost
        {
            return Err(SealError::ParamsOutOfRange(self));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| SealError::ParamsOutOfRange(self))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

// Issue 16: at least 64 MiB and 3 passes by default, checked at compile time.
const _: () = assert!(KdfParams::DEFAULT.m_cost_kib >= 64 * 1024 && KdfParams::DEFAULT.t_cost >= 3);

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The Argon2id parameters are outside what we accept.
    #[error(
        "Argon2id parameters out of range (m={} KiB, t={}, p={}; at most {} KiB, 64 passes, 16 lanes)",
        .0.m_cost_kib, .0.t_cost, .0.p_cost, KdfParams::MAX.m_cost_kib
    )]
    ParamsOutOfRange(KdfParams),
    /// Argon2 refused the password (longer than 2^32 - 1 bytes).
    #[error("the password cannot be used with Argon2id")]
    Password,
    /// The tag did not verify: the password is wrong, or the file was
    /// altered.
    #[error("wrong password (or the file was altered)")]
    WrongPassword,
}

/// The 32-byte XChaCha20-Poly1305 key derived from the password. Zeroised
/// on drop; never printed.
#[derive(Clone)]
pub struct SealingKey {
    key: Zeroizing<[u8; 32]>,
    salt: [u8; SALT_LEN],
    params: KdfParams,
}

impl core::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealingKey")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Runs Argon2id over `password` and `salt` (this is the slow step: the
    /// whole point of it).
    pub fn derive(
        password: &[u8],
        salt: [u8; SALT_LEN],
        params: KdfParams,
    ) -> Result<Self, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        params
            .argon2()?
            .hash_password_into(password, &salt, key.as_mut())
            .map_err(|_| SealError::Password)?;
        Ok(Self { key, salt, params })
    }

    /// The salt this key was derived with; it also names the key in sealed
    /// files (which identity file unlocks them).
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// The Argon2id parameters this key was derived with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.key))
    }

    /// Seals `plaintext` with `aad` under a fresh random nonce; returns the
    /// nonce and the ciphertext with its tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        UnwrapErr(SysRng).fill_bytes(&mut nonce);
        let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buffer.extend_from_slice(plaintext);
        // Only fails for messages over 256 GiB; ours are a few hundred bytes.
        let sealed = self
            .cipher()
            .encrypt_in_place(&XNonce::from(nonce), aad, &mut buffer);
        debug_assert!(sealed.is_ok());
        (nonce, buffer)
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`.
    pub fn open(
        &self,
        aad: &[u8],
        nonce: &[u8; NONCE_LEN],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut buffer = Zeroizing::new(sealed.to_vec());
        self.cipher()
            .decrypt_in_place(&XNonce::from(*nonce), aad, &mut *buffer)
            .map_err(|_| SealError::WrongPassword)?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check the sealing, not the cost.
    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn sealed_blob_opens_with_the_same_key_and_aad_only() {
        let key = SealingKey::derive(b"pw", [7; SALT_LEN], CHEAP).unwrap();
        let (nonce, sealed) = key.seal(b"kind-a", b"secret bytes");
        assert_eq!(sealed.len(), 12 + TAG_LEN);
        assert_eq!(
            key.open(b"kind-a", &nonce, &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        assert_eq!(
            key.open(b"kind-b", &nonce, &sealed),
            Err(SealError::WrongPassword)
        );
        let other = SealingKey::derive(b"pw2", [7; SALT_LEN], CHEAP).unwrap();
        assert_eq!(
            other.open(b"kind-a", &nonce, &sealed),
            Err(SealError::WrongPassword)
        );
        let salted = SealingKey::derive(b"pw", [8; SALT_LEN], CHEAP).unwrap();
        assert_eq!(
            salted.open(b"kind-a", &nonce, &sealed),
            Err(SealError::WrongPassword)
        );
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert_eq!(
            key.open(b"kind-a", &nonce, &flipped),
            Err(SealError::WrongPassword)
        );
    }

    #[test]
    fn each_sealing_draws_a_new_nonce() {
        let key = SealingKey::derive(b"pw", [1; SALT_LEN], CHEAP).unwrap();
        let (n1, c1) = key.seal(b"", b"same");
        let (n2, c2) = key.seal(b"", b"same");
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
    }

    #[test]
    fn outlandish_params_are_refused_before_any_work() {
        let huge = KdfParams {
            m_cost_kib: u32::MAX,
            ..CHEAP
        };
        assert_eq!(
            SealingKey::derive(b"pw", [0; SALT_LEN], huge).err(),
            Some(SealError::ParamsOutOfRange(huge))
        );
        let zero_passes = KdfParams { t_cost: 0, ..CHEAP };
        assert!(SealingKey::derive(b"pw", [0; SALT_LEN], zero_passes).is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = SealingKey::derive(b"pw", [3; SALT_LEN], CHEAP).unwrap();
        let shown = format!("{key:?}");
        let hex = base16ct::lower::encode_string(key.key.as_ref());
        assert!(!shown.contains(&hex));
    }
}
