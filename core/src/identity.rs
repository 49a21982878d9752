//! secp256k1 identities: a keypair is the account.
//!
//! On the wire a public key is always the 33-byte SEC1 compressed form
//! (`02|03 ‖ X`); private keys travel (in key files, in the reference's
//! environment variables) as the 32-byte big-endian scalar in hex.

use core::fmt;
use core::str::FromStr;

use k256::elliptic_curve::Generate;
use k256::elliptic_curve::sec1::CompressedPoint;
use rand_core::CryptoRng;

/// Length of a compressed public key.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of a private scalar.
pub const SECRET_KEY_LEN: usize = 32;

/// Why a key could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The input had the wrong number of bytes (or hex digits / 2).
    WrongLength { expected: usize, got: usize },
    /// The text was not hexadecimal.
    InvalidHex,
    /// The bytes are not a compressed point on secp256k1.
    NotOnCurve,
    /// The scalar is zero or not below the group order.
    InvalidScalar,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength { expected, got } => {
                write!(f, "key must be {expected} bytes, got {got}")
            }
            Self::InvalidHex => f.write_str("key is not valid hexadecimal"),
            Self::NotOnCurve => f.write_str("not a compressed secp256k1 public key"),
            Self::InvalidScalar => f.write_str("private key is zero or not below the curve order"),
        }
    }
}

impl core::error::Error for KeyError {}

/// Decodes `N` bytes from hex (either case), with length errors in bytes.
fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], KeyError> {
    let text = text.trim();
    if text.len() != 2 * N {
        return Err(KeyError::WrongLength {
            expected: N,
            got: text.len() / 2,
        });
    }
    let mut out = [0u8; N];
    base16ct::mixed::decode(text, &mut out).map_err(|_| KeyError::InvalidHex)?;
    Ok(out)
}

/// A secp256k1 public key, kept with its compressed encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    point: k256::PublicKey,
    compressed: [u8; PUBLIC_KEY_LEN],
}

impl PublicKey {
    /// Parses a 33-byte compressed point. Uncompressed points are refused:
    /// no Warpgate protocol carries them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let compressed: [u8; PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| KeyError::WrongLength {
                expected: PUBLIC_KEY_LEN,
                got: bytes.len(),
            })?;
        if compressed[0] != 0x02 && compressed[0] != 0x03 {
            return Err(KeyError::NotOnCurve);
        }
        let point =
            k256::PublicKey::try_from(&CompressedPoint::<k256::Secp256k1>::from(compressed))
                .map_err(|_| KeyError::NotOnCurve)?;
        Ok(Self { point, compressed })
    }

    /// Parses 66 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_hex::<PUBLIC_KEY_LEN>(text)?)
    }

    /// The 33-byte compressed encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.compressed
    }

    pub(crate) fn point(&self) -> &k256::PublicKey {
        &self.point
    }

    fn from_point(point: k256::PublicKey) -> Self {
        let encoded = CompressedPoint::<k256::Secp256k1>::from(&point);
        let mut compressed = [0u8; PUBLIC_KEY_LEN];
        compressed.copy_from_slice(&encoded);
        Self { point, compressed }
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 2 * PUBLIC_KEY_LEN];
        let hex =
            base16ct::lower::encode_str(&self.compressed, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(hex)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_hex(s)
    }
}

/// A secp256k1 keypair. The secret is zeroised when dropped.
#[derive(Clone)]
pub struct Keypair {
    secret: k256::SecretKey,
    public: PublicKey,
}

impl Keypair {
    /// Draws a new keypair from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_scalar(k256::NonZeroScalar::generate_from_rng(rng))
    }

    /// Builds a keypair from the 32-byte big-endian private scalar.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; SECRET_KEY_LEN] = bytes.try_into().map_err(|_| KeyError::WrongLength {
            expected: SECRET_KEY_LEN,
            got: bytes.len(),
        })?;
        let scalar = Option::from(k256::NonZeroScalar::from_repr(bytes.into()))
            .ok_or(KeyError::InvalidScalar)?;
        Ok(Self::from_scalar(scalar))
    }

    /// Builds a keypair from 64 hex digits (the reference's `NB_ENC_SK` form).
    pub fn from_secret_hex(text: &str) -> Result<Self, KeyError> {
        Self::from_secret_bytes(&decode_hex::<SECRET_KEY_LEN>(text)?)
    }

    fn from_scalar(scalar: k256::NonZeroScalar) -> Self {
        let public = PublicKey::from_point(k256::PublicKey::from_secret_scalar(&scalar));
        Self {
            secret: k256::SecretKey::from(scalar),
            public,
        }
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The private scalar, big-endian. Handle with care: this is the account.
    pub fn secret_bytes(&self) -> [u8; SECRET_KEY_LEN] {
        self.secret.to_bytes().into()
    }

    pub(crate) fn scalar(&self) -> k256::NonZeroScalar {
        self.secret.to_nonzero_scalar()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in debug logs.
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER_PRIV: &str = "adde6ad807a5293106e1034241bb0d5fa6e5fc2fb9e15aa5695b9e756efbe95b";
    const OWNER_VKC: &str = "0292cd0fa4c61fc0e30af9eadf9e48b22202611d2a233191fbbf35aa48256e3646";

    #[test]
    fn secret_hex_derives_the_reference_compressed_key() {
        let kp = Keypair::from_secret_hex(OWNER_PRIV).unwrap();
        assert_eq!(std::format!("{}", kp.public()), OWNER_VKC);
        assert_eq!(PublicKey::from_hex(OWNER_VKC).unwrap(), *kp.public());
        assert_eq!(
            base16ct::lower::encode_string(&kp.secret_bytes()),
            OWNER_PRIV
        );
    }

    #[test]
    fn malformed_keys_are_typed_errors() {
        assert_eq!(
            PublicKey::from_bytes(&[2u8; 32]),
            Err(KeyError::WrongLength {
                expected: 33,
                got: 32
            })
        );
        // 0x04 prefix (uncompressed tag) on 33 bytes.
        let mut bad = [0u8; 33];
        bad[0] = 4;
        assert_eq!(PublicKey::from_bytes(&bad), Err(KeyError::NotOnCurve));
        // x = 5 is not on secp256k1 (y^2 = 132 has no root mod p).
        let mut off = [0u8; 33];
        off[0] = 2;
        off[32] = 5;
        assert_eq!(PublicKey::from_bytes(&off), Err(KeyError::NotOnCurve));
        assert_eq!(
            PublicKey::from_hex("zz"),
            Err(KeyError::WrongLength {
                expected: 33,
                got: 1
            })
        );
        assert_eq!(
            PublicKey::from_hex(&"g".repeat(66)),
            Err(KeyError::InvalidHex)
        );
        assert_eq!(
            Keypair::from_secret_bytes(&[0u8; 32]).err(),
            Some(KeyError::InvalidScalar)
        );
        assert_eq!(
            Keypair::from_secret_bytes(&[0xffu8; 32]).err(),
            Some(KeyError::InvalidScalar)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let kp = Keypair::from_secret_hex(OWNER_PRIV).unwrap();
        let shown = std::format!("{kp:?}");
        assert!(shown.contains(OWNER_VKC));
        assert!(!shown.contains(OWNER_PRIV));
    }
}
