//! The Noise layer: `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` through snow.
//!
//! snow's default resolver brings X25519, ChaCha20-Poly1305 and BLAKE2s
//! without std; its random source would be getrandom, which the core must
//! not call (time and randomness are arguments). `seeded_resolver` wraps
//! the default resolver with a source that hands out bytes drawn once from
//! the caller's RNG: an XX handshake draws exactly one ephemeral key per
//! side, so 32 bytes suffice and any further draw is an error, not a reuse.

use alloc::boxed::Box;

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// The Noise protocol name (Noise spec §8, §9: the `psk3` modifier mixes
/// the network key in at the end of the third message).
pub const PROTOCOL_NAME: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// The prologue every Keyway link hashes in: a peer speaking another
/// version of this protocol fails the handshake instead of misreading it.
pub const PROLOGUE: &[u8] = b"keyway-link/1";
/// Largest Noise message (Noise spec §3).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// The AEAD tag on every encrypted Noise payload.
pub const TAG_LEN: usize = 16;
/// Largest plaintext one transport message carries.
pub const MAX_TRANSPORT_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Length of an X25519 key and of the handshake hash (BLAKE2s).
pub const KEY_LEN: usize = 32;
/// Bytes of randomness one side of a handshake draws: one ephemeral key.
pub(crate) const SEED_LEN: usize = 32;

/// The parsed protocol parameters.
pub(crate) fn params() -> snow::params::NoiseParams {
    // The name is a constant this module's tests parse; a failure here
    // would be a snow build without the features Cargo.toml selects.
    match PROTOCOL_NAME.parse() {
        Ok(params) => params,
        Err(_) => unreachable!("snow is built with 25519, ChaChaPoly and BLAKE2s"),
    }
}

/// Hands out a fixed seed once.
struct SeededRandom {
    seed: [u8; SEED_LEN],
    used: usize,
}

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        let end = self
            .used
            .checked_add(dest.len())
            .filter(|&end| end <= SEED_LEN)
            .ok_or(snow::Error::Rng)?;
        dest.copy_from_slice(&self.seed[self.used..end]);
        self.used = end;
        Ok(())
    }
}

struct SeededResolver {
    seed: [u8; SEED_LEN],
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom {
            seed: self.seed,
            used: 0,
        }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// A resolver whose only randomness is `seed` (the ephemeral key).
fn seeded_resolver(seed: [u8; SEED_LEN]) -> BoxedCryptoResolver {
    Box::new(SeededResolver { seed })
}

/// Builds one side of the handshake: `static_secret` is this link's X25519
/// static key, `seed` its ephemeral key, `psk` the network key.
pub(crate) fn handshake(
    initiator: bool,
    static_secret: &[u8; KEY_LEN],
    seed: [u8; SEED_LEN],
    psk: &[u8; KEY_LEN],
) -> Result<snow::HandshakeState, snow::Error> {
    handshake_with(initiator, PROLOGUE, static_secret, seed, psk)
}

/// The Noise layer the link machine uses, with the prologue as an
/// argument: `ephemeral` becomes the ephemeral private key exactly (the
/// seeded random source hands it to snow's key generation). For published
/// test vectors (which fix prologue and ephemerals), relays in tests and
/// fuzzing; links use [`PROLOGUE`] and fresh random keys.
pub fn handshake_with(
    initiator: bool,
    prologue: &[u8],
    static_secret: &[u8; KEY_LEN],
    ephemeral: [u8; SEED_LEN],
    psk: &[u8; KEY_LEN],
) -> Result<snow::HandshakeState, snow::Error> {
    let builder = snow::Builder::with_resolver(params(), seeded_resolver(ephemeral))
        .prologue(prologue)?
        .local_private_key(static_secret)?
        .psk(3, psk)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
}

/// The X25519 public key of a static secret (the Noise static key the
/// identity proof covers).
pub fn static_public(static_secret: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], snow::Error> {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or(snow::Error::Dh)?;
    dh.set(static_secret);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(dh.pubkey());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_handed_out_once() {
        let mut random = SeededRandom {
            seed: [7; SEED_LEN],
            used: 0,
        };
        let mut a = [0u8; 20];
        random.try_fill_bytes(&mut a).unwrap();
        assert_eq!(a, [7; 20]);
        let mut b = [0u8; 13];
        assert!(random.try_fill_bytes(&mut b).is_err());
        let mut c = [0u8; 12];
        random.try_fill_bytes(&mut c).unwrap();
        assert!(random.try_fill_bytes(&mut [0u8; 1]).is_err());
    }

    #[test]
    fn the_protocol_name_parses() {
        let params = params();
        assert_eq!(params.name, PROTOCOL_NAME);
    }
}
