//! aionetiface's "ECIES", byte for byte (namebump spec §2.3).
//!
//! Not SEC1 ECIES and not eciespy: the raw ECDH x-coordinate is the RC6 key
//! with no KDF, the cipher is RC6-32/20/32 in CBC mode with PKCS#7, and the
//! tag is HMAC-SHA256 keyed with `iv ‖ x`. Layout:
//! `E (33, compressed) ‖ iv (16) ‖ tag (32) ‖ ct (16·k)`.
//!
//! The construction is weak by modern standards (bug 3: no KDF, no domain
//! separation, E not bound into the MAC) but every namebump peer speaks it,
//! so it is isolated here. What we fix is invisible on the wire: the tag is
//! compared in constant time and padding is validated (bug 4), and length
//! checks run before any curve arithmetic so junk costs nothing.
//!
//! One malleability is inherent in the format: only the x-coordinate of the
//! ECDH product is used, and E and −E (prefix 02 vs 03) give the same one.
//! Flipping the lowest bit of the first byte therefore yields a different
//! blob that opens to the same plaintext. Nothing else about a message can
//! be changed unnoticed; and since the plaintext is identical, anything
//! that must recognise a message (replay caches) keys on the plaintext,
//! never on ciphertext bytes.

use core::fmt;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::typenum::{U20, U32};
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use k256::elliptic_curve::ecdh::diffie_hellman;
use rand_core::CryptoRng;
use rc6::RC6;
use sha2::Sha256;

use crate::identity::{Keypair, PUBLIC_KEY_LEN, PublicKey};

/// RC6-32/20/32: 32-bit words, 20 rounds, 32-byte key.
type Rc6 = RC6<u32, U20, U32>;
type HmacSha256 = Hmac<Sha256>;

/// Cipher block and IV length.
pub const BLOCK_LEN: usize = 16;
/// Tag length.
pub const TAG_LEN: usize = 32;
/// Bytes before the ciphertext: ephemeral key, IV and tag.
pub const HEADER_LEN: usize = PUBLIC_KEY_LEN + BLOCK_LEN + TAG_LEN;
/// The shortest valid message: an empty plaintext still pads to one block.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + BLOCK_LEN;

/// Ciphertext length for a plaintext: PKCS#7 always adds 1–16 bytes.
pub const fn ciphertext_len(plaintext_len: usize) -> usize {
    (plaintext_len / BLOCK_LEN + 1) * BLOCK_LEN
}

/// Length of a sealed message for a plaintext of `plaintext_len` bytes.
pub const fn sealed_len(plaintext_len: usize) -> usize {
    HEADER_LEN + ciphertext_len(plaintext_len)
}

/// Why a message could not be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EciesError {
    /// Shorter than the header plus one block.
    TooShort { len: usize },
    /// The ciphertext is not a whole number of blocks.
    RaggedCiphertext { len: usize },
    /// The ephemeral public key is not a point on the curve.
    InvalidEphemeralKey,
    /// The tag does not match: wrong recipient, corruption or forgery.
    BadTag,
    /// Decrypted, but the PKCS#7 padding is malformed.
    BadPadding,
    /// The caller's output buffer cannot hold the result.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for EciesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "encrypted message too short ({len} bytes, minimum {MIN_SEALED_LEN})"
                )
            }
            Self::RaggedCiphertext { len } => {
                write!(
                    f,
                    "ciphertext of {len} bytes is not a multiple of {BLOCK_LEN}"
                )
            }
            Self::InvalidEphemeralKey => f.write_str("ephemeral key is not a secp256k1 point"),
            Self::BadTag => f.write_str("authentication tag mismatch"),
            Self::BadPadding => f.write_str("invalid padding"),
            Self::BufferTooSmall { needed, got } => {
                write!(f, "output buffer too small ({got} bytes, need {needed})")
            }
        }
    }
}

impl core::error::Error for EciesError {}

/// Encrypts `plaintext` to `receiver` with a fresh ephemeral key and IV from
/// `rng`. Writes [`sealed_len`] bytes to the front of `out` and returns that length.
pub fn seal<R: CryptoRng + ?Sized>(
    receiver: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
    out: &mut [u8],
) -> Result<usize, EciesError> {
    let ephemeral = Keypair::generate(rng);
    let mut iv = [0u8; BLOCK_LEN];
    rng.fill_bytes(&mut iv);
    seal_with(receiver, plaintext, &ephemeral, &iv, out)
}

/// [`seal`] with a caller-chosen ephemeral key and IV. Both must be fresh
/// and secret for every message: this exists for known-answer tests and for
/// callers that bring their own entropy source.
pub fn seal_with(
    receiver: &PublicKey,
    plaintext: &[u8],
    ephemeral: &Keypair,
    iv: &[u8; BLOCK_LEN],
    out: &mut [u8],
) -> Result<usize, EciesError> {
    Sealing::new(receiver, ephemeral).seal(plaintext, iv, out)
}

/// The key material for sealing to one receiver under one ephemeral key:
/// the ephemeral public key and the ECDH secret (the expensive part).
///
/// [`seal`] makes a fresh one per message, as the reference does. A sender
/// may keep one for a stream of messages to the same receiver (a load
/// generator does); every message then still needs a fresh random IV, and
/// the messages share a key: whoever learns it reads them all.
pub struct Sealing {
    ephemeral: [u8; PUBLIC_KEY_LEN],
    shared_x: [u8; 32],
}

impl Sealing {
    pub fn new(receiver: &PublicKey, ephemeral: &Keypair) -> Self {
        let shared = diffie_hellman(ephemeral.scalar(), receiver.point().as_affine());
        let mut shared_x = [0u8; 32];
        shared_x.copy_from_slice(shared.raw_secret_bytes());
        Self {
            ephemeral: *ephemeral.public().as_bytes(),
            shared_x,
        }
    }

    /// Seals `plaintext` with `iv` into the front of `out`; returns the length.
    pub fn seal(
        &self,
        plaintext: &[u8],
        iv: &[u8; BLOCK_LEN],
        out: &mut [u8],
    ) -> Result<usize, EciesError> {
        let total = sealed_len(plaintext.len());
        let got = out.len();
        if got < total {
            return Err(EciesError::BufferTooSmall { needed: total, got });
        }
        let (head, body) = out[..total].split_at_mut(HEADER_LEN);
        // `body` is exactly ciphertext_len(plaintext.len()), so padding fits.
        cbc::Encryptor::<Rc6>::new((&self.shared_x).into(), iv.into())
            .encrypt_padded_b2b::<Pkcs7>(plaintext, body)
            .map_err(|_| EciesError::BufferTooSmall { needed: total, got })?;
        head[..PUBLIC_KEY_LEN].copy_from_slice(&self.ephemeral);
        head[PUBLIC_KEY_LEN..PUBLIC_KEY_LEN + BLOCK_LEN].copy_from_slice(iv);
        let tag = mac(iv, &self.shared_x, body).finalize().into_bytes();
        head[PUBLIC_KEY_LEN + BLOCK_LEN..].copy_from_slice(&tag);
        Ok(total)
    }
}

impl Drop for Sealing {
    fn drop(&mut self) {
        // Best effort: the secret encrypts every message sealed with it.
        self.shared_x = [0u8; 32];
    }
}

impl fmt::Debug for Sealing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealing(..)")
    }
}

/// Decrypts a sealed message addressed to `receiver` into `out`, which must
/// hold at least the ciphertext length (`sealed.len() - HEADER_LEN`).
/// Returns the plaintext, a prefix of `out`.
pub fn open<'o>(
    receiver: &Keypair,
    sealed: &[u8],
    out: &'o mut [u8],
) -> Result<&'o [u8], EciesError> {
    // Length checks first: junk costs no curve arithmetic.
    let (_, _, _, ct) = split(sealed)?;
    if out.len() < ct.len() {
        return Err(EciesError::BufferTooSmall {
            needed: ct.len(),
            got: out.len(),
        });
    }
    Opening::new(receiver, sealed)?.open(sealed, out)
}

/// The key material for one sealed message: the ECDH secret between the
/// receiver and the message's ephemeral key (its first 33 bytes).
///
/// Deriving it is the expensive step (a scalar multiplication); checking a
/// tag is cheap. A stream reader that does not know where a message ends
/// derives this once and then tries each plausible length.
pub struct Opening {
    shared_x: [u8; 32],
}

impl Opening {
    /// Derives the secret from the first 33 bytes of `sealed` (the rest is ignored).
    pub fn new(receiver: &Keypair, sealed: &[u8]) -> Result<Self, EciesError> {
        let ephemeral = sealed
            .get(..PUBLIC_KEY_LEN)
            .ok_or(EciesError::TooShort { len: sealed.len() })?;
        let ephemeral =
            PublicKey::from_bytes(ephemeral).map_err(|_| EciesError::InvalidEphemeralKey)?;
        let shared = diffie_hellman(receiver.scalar(), ephemeral.point().as_affine());
        let mut shared_x = [0u8; 32];
        shared_x.copy_from_slice(shared.raw_secret_bytes());
        Ok(Self { shared_x })
    }

    /// Whether `sealed` is complete and authentic under this secret.
    pub fn tag_matches(&self, sealed: &[u8]) -> bool {
        split(sealed)
            .is_ok_and(|(_, iv, tag, ct)| mac(iv, &self.shared_x, ct).verify_slice(tag).is_ok())
    }

    /// Checks the tag (in constant time) and decrypts into `out`, which must
    /// hold the ciphertext. Returns the plaintext, a prefix of `out`.
    pub fn open<'o>(&self, sealed: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], EciesError> {
        let (_, iv, tag, ct) = split(sealed)?;
        if out.len() < ct.len() {
            return Err(EciesError::BufferTooSmall {
                needed: ct.len(),
                got: out.len(),
            });
        }
        // Constant-time comparison (the reference uses `==` inside an assert).
        mac(iv, &self.shared_x, ct)
            .verify_slice(tag)
            .map_err(|_| EciesError::BadTag)?;
        let buf = &mut out[..ct.len()];
        buf.copy_from_slice(ct);
        let plaintext_len = cbc::Decryptor::<Rc6>::new((&self.shared_x).into(), iv.into())
            .decrypt_padded::<Pkcs7>(buf)
            .map_err(|_| EciesError::BadPadding)?
            .len();
        Ok(&out[..plaintext_len])
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        // Best effort: the secret decrypts this message.
        self.shared_x = [0u8; 32];
    }
}

impl fmt::Debug for Opening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opening(..)")
    }
}

/// Splits a sealed message into (E, iv, tag, ct) after the cheap checks.
#[allow(clippy::type_complexity)]
fn split(sealed: &[u8]) -> Result<(&[u8], &[u8; BLOCK_LEN], &[u8], &[u8]), EciesError> {
    if sealed.len() < MIN_SEALED_LEN {
        return Err(EciesError::TooShort { len: sealed.len() });
    }
    let (ephemeral, rest) = sealed.split_at(PUBLIC_KEY_LEN);
    let (iv, rest) = rest.split_at(BLOCK_LEN);
    let (tag, ct) = rest.split_at(TAG_LEN);
    if !ct.len().is_multiple_of(BLOCK_LEN) {
        return Err(EciesError::RaggedCiphertext { len: ct.len() });
    }
    let iv: &[u8; BLOCK_LEN] = iv
        .try_into()
        .map_err(|_| EciesError::TooShort { len: sealed.len() })?;
    Ok((ephemeral, iv, tag, ct))
}

/// HMAC-SHA256 keyed with `iv ‖ shared_x` over the ciphertext.
fn mac(iv: &[u8; BLOCK_LEN], shared_x: &[u8], ct: &[u8]) -> HmacSha256 {
    let mut key = [0u8; BLOCK_LEN + 32];
    key[..BLOCK_LEN].copy_from_slice(iv);
    key[BLOCK_LEN..].copy_from_slice(shared_x);
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
    mac.update(ct);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_pkcs7() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(15), 16);
        assert_eq!(ciphertext_len(16), 32);
        assert_eq!(sealed_len(172), 257);
    }

    #[test]
    fn rc6_matches_the_paper_vector_for_a_256_bit_key() {
        use cbc::cipher::BlockCipherEncrypt;
        // RC6 paper, 32-byte key vector (also `rc6_std_vector_ok` in the namebump vectors).
        let mut key = [0u8; 32];
        base16ct::lower::decode(
            "0123456789abcdef0112233445566778899aabbccddeeff01032547698badcfe",
            &mut key,
        )
        .unwrap();
        let mut block = [0u8; 16];
        base16ct::lower::decode("02132435465768798a9bacbdcedfe0f1", &mut block).unwrap();
        let cipher = Rc6::new(&key.into());
        let mut b = block.into();
        cipher.encrypt_block(&mut b);
        assert_eq!(
            base16ct::lower::encode_string(&b),
            "c8241816f0d7e48920ad16a1674e5d48"
        );
        // And the all-zero vector from the same paper.
        let cipher = Rc6::new(&[0u8; 32].into());
        let mut z = [0u8; 16].into();
        cipher.encrypt_block(&mut z);
        assert_eq!(
            base16ct::lower::encode_string(&z),
            "8f5fbd0510d15fa893fa3fda6e857ec2"
        );
    }

    #[test]
    fn junk_is_rejected_before_curve_arithmetic() {
        let kp = Keypair::from_secret_bytes(&[9u8; 32]).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            open(&kp, &[0u8; 32], &mut out),
            Err(EciesError::TooShort { len: 32 })
        );
        assert_eq!(
            open(&kp, &[0u8; 98], &mut out),
            Err(EciesError::RaggedCiphertext { len: 17 })
        );
        assert_eq!(
            open(&kp, &[0u8; 97], &mut out),
            Err(EciesError::InvalidEphemeralKey)
        );
        let mut tiny = [0u8; 8];
        assert_eq!(
            open(&kp, &[0u8; 97], &mut tiny),
            Err(EciesError::BufferTooSmall { needed: 16, got: 8 })
        );
    }

    #[test]
    fn bad_padding_under_a_valid_tag_is_rejected() {
        // Forge what only a key holder could: a correctly tagged ciphertext
        // whose last plaintext byte is 0 (the reference would return b"").
        let receiver = Keypair::from_secret_bytes(&[3u8; 32]).unwrap();
        let eph = Keypair::from_secret_bytes(&[4u8; 32]).unwrap();
        let iv = [1u8; 16];
        let shared = diffie_hellman(eph.scalar(), receiver.public().point().as_affine());
        let key = shared.raw_secret_bytes();
        let mut block = [0u8; 16];
        let ct = cbc::Encryptor::<Rc6>::new(key, (&iv).into())
            .encrypt_padded::<cbc::cipher::block_padding::NoPadding>(&mut block, 16)
            .unwrap()
            .to_vec();
        let tag = mac(&iv, key, &ct).finalize().into_bytes();
        let mut sealed = alloc::vec::Vec::new();
        sealed.extend_from_slice(eph.public().as_bytes());
        sealed.extend_from_slice(&iv);
        sealed.extend_from_slice(&tag);
        sealed.extend_from_slice(&ct);
        let mut out = [0u8; 16];
        assert_eq!(
            open(&receiver, &sealed, &mut out),
            Err(EciesError::BadPadding)
        );
    }
}
