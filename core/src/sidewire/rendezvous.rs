//! Which brokers serve a destination: rendezvous (highest-random-weight)
//! hashing, exactly as sidewire ranks them (spec §5.2).
//!
//! ```text
//! H     = SHA-256(af ‖ dest (33 bytes) ‖ host)
//! u     = (H + 1) / 2^256        (a double, correctly rounded, as Python computes it)
//! score = −ln(u)                 (lowest first)
//! ```
//! The address family byte is always 2 or 10, whatever the local OS calls
//! AF_INET6 (the reference used the OS constant: spec §10 item 12).
//!
//! [`Ranking::Compatible`] orders by `u` descending, ties by pool order,
//! which is the reference's order exactly (`−ln` is strictly decreasing on
//! doubles in (0, 1], and Python's sort is stable). [`Ranking::Weighted`] is
//! the weighted form the seed promises, `−ln(u) / weight`: opt-in and
//! pool-wide, since every peer must use the same weights.
//!
//! Sender and receiver converge because both take the top of the same
//! ranking ([`set_size`]), skipping only brokers that actually fail
//! (spec §10 item 10), rather than whichever connects first.

use sha2::{Digest, Sha256};

use crate::identity::PUBLIC_KEY_LEN;

/// Address-family bytes of brokers (Linux's values, on every OS).
pub use crate::address_family::{AF_INET, AF_INET6};

/// A broker of the pool. Its identity is the host string alone (an FQDN
/// or an IP literal); the port is not hashed (spec §5.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Broker<'a> {
    pub host: &'a str,
    /// Used by [`Ranking::Weighted`] only; must be finite and > 0.
    pub weight: f64,
}

/// How a pool is ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ranking {
    /// The reference's unweighted order (every peer running sidewire 0.1.9).
    #[default]
    Compatible,
    /// `−ln(u) / weight`: only when every peer of the pool ranks this way.
    Weighted,
}

/// One ranked broker: its index in the pool and its score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked {
    pub index: usize,
    /// `−ln(u)` (divided by the weight when weighted); lower is better.
    pub score: f64,
    /// What the order compares: `−u` (compatible) or the score (weighted).
    key: f64,
}

impl Default for Ranked {
    fn default() -> Self {
        Self {
            index: 0,
            score: f64::INFINITY,
            key: f64::INFINITY,
        }
    }
}

/// `SHA-256(af ‖ dest ‖ host)`.
pub fn digest(af: u8, dest: &[u8; PUBLIC_KEY_LEN], host: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([af]);
    h.update(dest);
    h.update(host.as_bytes());
    h.finalize().into()
}

/// `(H + 1) / 2^256` as the nearest double (ties to even), which is what
/// Python's `(int(H) + 1) / 2**256` gives.
pub fn unit(digest: &[u8; 32]) -> f64 {
    let mut hi = u128::from_be_bytes(digest[..16].try_into().unwrap_or([0; 16]));
    let mut lo = u128::from_be_bytes(digest[16..].try_into().unwrap_or([0; 16]));
    // v = H + 1, which is 2^256 (u = 1) only when H is all ones.
    let (l, carry) = lo.overflowing_add(1);
    lo = l;
    if carry {
        let (h, carry) = hi.overflowing_add(1);
        if carry {
            return 1.0;
        }
        hi = h;
    }
    // Normalise so the leading one is bit 255; p is its original position.
    let lz = if hi != 0 {
        hi.leading_zeros()
    } else {
        128 + lo.leading_zeros()
    };
    let p = 255 - lz as i32;
    let (top, rest) = if lz < 128 {
        let shifted_hi = if lz == 0 {
            hi
        } else {
            (hi << lz) | (lo >> (128 - lz))
        };
        (shifted_hi, lo << lz)
    } else {
        (lo << (lz - 128), 0)
    };
    let head = (top >> 64) as u64; // bit 63 is the leading one
    let sticky = (top as u64) != 0 || rest != 0;
    let mut mantissa = head >> 11; // 53 bits
    let round = head & 0x7ff;
    if round > 0x400 || (round == 0x400 && (sticky || mantissa & 1 == 1)) {
        mantissa += 1;
    }
    let mut exponent = p - 256; // value = 1.m × 2^(p − 256)
    if mantissa == 1 << 53 {
        mantissa >>= 1;
        exponent += 1;
    }
    let biased = (exponent + 1023) as u64; // p − 256 ∈ [−256, 0]: always normal
    f64::from_bits((biased << 52) | (mantissa & ((1 << 52) - 1)))
}

/// The reference's score, `−ln(u)`.
pub fn score(digest: &[u8; 32]) -> f64 {
    -libm::log(unit(digest))
}

/// Ranks `brokers` for `dest` in one address family, best first, into
/// `scratch` (which must hold one entry per broker; extra brokers are not
/// ranked). Returns the ranked prefix of `scratch`.
pub fn rank<'s>(
    af: u8,
    dest: &[u8; PUBLIC_KEY_LEN],
    brokers: &[Broker<'_>],
    ranking: Ranking,
    scratch: &'s mut [Ranked],
) -> &'s [Ranked] {
    let n = brokers.len().min(scratch.len());
    for (index, (broker, slot)) in brokers.iter().zip(scratch.iter_mut()).enumerate() {
        let d = digest(af, dest, broker.host);
        let u = unit(&d);
        let base = -libm::log(u);
        *slot = match ranking {
            Ranking::Compatible => Ranked {
                index,
                score: base,
                key: -u,
            },
            Ranking::Weighted => {
                let valid = broker.weight.is_finite() && broker.weight > 0.0;
                let score = if valid {
                    base / broker.weight
                } else {
                    f64::INFINITY
                };
                Ranked {
                    index,
                    score,
                    key: score,
                }
            }
        };
    }
    let ranked = &mut scratch[..n];
    // Keys are never NaN; equal keys keep pool order, as Python's stable sort.
    ranked.sort_unstable_by(|a, b| a.key.total_cmp(&b.key).then(a.index.cmp(&b.index)));
    ranked
}

/// How many of a family's top-ranked brokers a node subscribes at (and a
/// sender publishes to): the reference's `min(3, ⌊log2 n⌋)`, but never 0
/// for a non-empty family (a one-broker pool works: spec §10 item 11).
pub fn set_size(candidates: usize) -> usize {
    match candidates {
        0 => 0,
        n => (n.ilog2() as usize).clamp(1, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_rounds_like_python_division() {
        assert_eq!(unit(&[0xff; 32]), 1.0);
        assert_eq!(unit(&[0; 32]), 2f64.powi(-256));
        let mut half = [0u8; 32];
        half[0] = 0x80;
        // 2^255 + 1 over 2^256: the +1 is far below half an ulp.
        assert_eq!(unit(&half), 0.5);
        // 0x7fff…ff + 1 = 2^255 exactly.
        let mut below = [0xffu8; 32];
        below[0] = 0x7f;
        assert_eq!(unit(&below), 0.5);
        // v = H + 1 = 2^255 + 2^202 is exactly half an ulp above 0.5:
        // ties go to the even mantissa, 0.5.
        let mut tie = [0xffu8; 32];
        tie[..7].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x03]);
        assert_eq!(unit(&tie), 0.5);
        // One more makes it more than half an ulp: up.
        let mut above = [0u8; 32];
        above[..7].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x04]);
        assert_eq!(unit(&above), 0.5 + 2f64.powi(-53));
        // A tie on an odd mantissa (bit 203 set) rounds up to even.
        let mut odd = [0xffu8; 32];
        odd[..7].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0x0b]);
        assert_eq!(unit(&odd), 0.5 + 2f64.powi(-52));
    }

    #[test]
    fn set_sizes_follow_the_reference_but_never_zero() {
        let sizes: [usize; 10] = core::array::from_fn(set_size);
        assert_eq!(sizes, [0, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
        assert_eq!(set_size(1000), 3);
    }

    #[test]
    fn weights_reorder_only_in_weighted_mode() {
        let dest = [2u8; 33];
        let pool = [
            Broker {
                host: "a.example",
                weight: 1.0,
            },
            Broker {
                host: "b.example",
                weight: 1.0,
            },
            Broker {
                host: "c.example",
                weight: 1.0,
            },
        ];
        let mut s1 = [Ranked::default(); 3];
        let mut s2 = [Ranked::default(); 3];
        let compat: [usize; 3] = core::array::from_fn(|i| {
            rank(AF_INET, &dest, &pool, Ranking::Compatible, &mut s1)[i].index
        });
        let weighted: [usize; 3] = core::array::from_fn(|i| {
            rank(AF_INET, &dest, &pool, Ranking::Weighted, &mut s2)[i].index
        });
        assert_eq!(compat, weighted, "equal weights keep the reference order");
        // A huge weight on the last-ranked broker brings it first.
        let mut heavy = pool;
        heavy[compat[2]].weight = 1e9;
        let first = rank(AF_INET, &dest, &heavy, Ranking::Weighted, &mut s2)[0].index;
        assert_eq!(first, compat[2]);
        // A zero or NaN weight sinks a broker to the end.
        let mut broken = pool;
        broken[compat[0]].weight = f64::NAN;
        assert_eq!(
            rank(AF_INET, &dest, &broken, Ranking::Weighted, &mut s2)[2].index,
            compat[0]
        );
    }
}
