//! Properties of the packet codec and ECIES over generated inputs.
#![allow(clippy::unwrap_used)]

use keyway_core::Keypair;
use keyway_core::ecies::{self, EciesError};
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet};
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use proptest::prelude::*;

/// Keys are expensive to derive; a handful cover the key space for these
/// properties (the vectors and the live reference test cover specific keys).
fn keypair(seed: u8) -> Keypair {
    Keypair::from_secret_bytes(&[seed.max(1); 32]).unwrap()
}

/// Deterministic CryptoRng for reproducible ephemeral keys and IVs.
struct SplitMix(u64);
impl TryRng for SplitMix {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for SplitMix {}

prop_compose! {
    fn in_range_packet()(
        op in any::<u8>(),
        pkid in any::<u32>(),
        reply_pk in proptest::option::of(any::<[u8; 33]>()
            .prop_filter("all-zero means absent", |k| *k != [0u8; 33])),
        behavior in any::<u8>(),
        updated in any::<f64>().prop_filter("finite", |f| !f.is_nan()),
        ttl in any::<f64>().prop_filter("finite", |f| !f.is_nan()),
        name in proptest::collection::vec(any::<u8>(), 0..=MAX_NAME_LEN),
        value in proptest::collection::vec(any::<u8>(), 0..=MAX_VALUE_LEN),
        vkc in proptest::option::of(any::<[u8; 33]>()),
        sig in any::<[u8; 64]>(),
        signed in any::<bool>(),
    ) -> (u8, u32, Option<[u8; 33]>, u8, f64, f64, Vec<u8>, Vec<u8>, Option<[u8; 33]>, Option<[u8; 64]>) {
        // A signature without a vkc has no wire form (the reference reads
        // the first 33 trailing bytes as vkc).
        let sig = (signed && vkc.is_some()).then_some(sig);
        (op, pkid, reply_pk, behavior, updated, ttl, name, value, vkc, sig)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_inverts_encode(fields in in_range_packet()) {
        let (op, pkid, reply_pk, behavior, updated, ttl, name, value, vkc, sig) = fields;
        let p = Packet { op: Op::from(op), pkid, reply_pk, behavior, updated, ttl,
                         name: &name, value: &value, vkc, sig };
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut buf).unwrap();
        prop_assert_eq!(n, p.encoded_len());
        prop_assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
    }

    #[test]
    fn decode_never_panics_and_accepted_bytes_re_encode_identically(
        bytes in proptest::collection::vec(any::<u8>(), 0..1400)
    ) {
        if let Ok(p) = Packet::decode(&bytes) {
            let mut buf = [0u8; MAX_PACKET_LEN];
            let n = p.encode(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &bytes[..]);
        }
    }

    #[test]
    fn decode_of_a_valid_header_with_random_tail_never_panics(
        lens in (0u16..=60, 0u16..=1100),
        tail in proptest::collection::vec(any::<u8>(), 0..1300)
    ) {
        let mut bytes = vec![0u8; 59];
        bytes[55..57].copy_from_slice(&lens.0.to_le_bytes());
        bytes[57..59].copy_from_slice(&lens.1.to_le_bytes());
        bytes.extend_from_slice(&tail);
        let _ = Packet::decode(&bytes);
    }
}

proptest! {
    // Each case costs two or three scalar multiplications.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_then_open_round_trips(
        receiver in 1u8..=4,
        seed in any::<u64>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..1300),
    ) {
        let kp = keypair(receiver);
        let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
        let n = ecies::seal(kp.public(), &plaintext, &mut SplitMix(seed), &mut sealed).unwrap();
        prop_assert_eq!(n, sealed.len());
        let mut out = vec![0u8; n];
        prop_assert_eq!(ecies::open(&kp, &sealed, &mut out).unwrap(), &plaintext[..]);
        // Someone else's key never opens it.
        let other = keypair(receiver + 10);
        prop_assert_eq!(ecies::open(&other, &sealed, &mut out), Err(EciesError::BadTag));
    }

    #[test]
    fn every_flipped_bit_but_the_ephemeral_parity_is_rejected(
        seed in any::<u64>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        bit in any::<proptest::sample::Index>(),
    ) {
        let kp = keypair(7);
        let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
        ecies::seal(kp.public(), &plaintext, &mut SplitMix(seed), &mut sealed).unwrap();
        let bit = bit.index(sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        let mut out = vec![0u8; sealed.len()];
        let result = ecies::open(&kp, &sealed, &mut out);
        if bit == 0 {
            // 02 <-> 03 turns E into -E, and x(d(-E)) = x(dE): the same
            // shared secret, so the same plaintext. The wire cannot tell
            // (see the module doc of ecies); nothing else gets through.
            prop_assert_eq!(result.unwrap(), &plaintext[..]);
        } else {
            // A flip elsewhere in E leaves the curve or changes the shared
            // secret; anywhere else the tag catches it.
            let err = result.unwrap_err();
            prop_assert!(matches!(err, EciesError::BadTag | EciesError::InvalidEphemeralKey), "{:?}", err);
        }
    }

    #[test]
    fn open_never_panics_on_junk(
        junk in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let kp = keypair(9);
        let mut out = vec![0u8; 400];
        prop_assert!(ecies::open(&kp, &junk, &mut out).is_err());
    }
}

proptest! {
    // One scalar multiplication per bit of the message: few cases.
    #![proptest_config(ProptestConfig::with_cases(2))]

    #[test]
    fn the_parity_bit_is_the_only_exception(
        seed in any::<u64>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        // Exhaustive over every bit of one message, so the exception above
        // is shown to be the only one rather than sampled.
        let kp = keypair(8);
        let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
        ecies::seal(kp.public(), &plaintext, &mut SplitMix(seed), &mut sealed).unwrap();
        let mut out = vec![0u8; sealed.len()];
        let mut parity = sealed.clone();
        parity[0] ^= 1;
        prop_assert_eq!(ecies::open(&kp, &parity, &mut out).unwrap(), &plaintext[..]);
        for bit in 1..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ecies::open(&kp, &flipped, &mut out).is_err(), "bit {} got through", bit);
        }
    }
}
