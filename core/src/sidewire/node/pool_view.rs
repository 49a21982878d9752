//! How the node sees the pool: each destination's ranking per family, as
//! broker ids the shell understands (spec §5).
//!
//! The node never holds host names: a shell keeps its brokers (hosts,
//! ports, addresses) and answers [`PoolView::ranked`] with
//! [`rendezvous::rank`]; [`PoolSlice`] does so for a pool in a slice.

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::rendezvous::{self, Broker, Ranked, Ranking};

use super::BrokerId;

/// Brokers per family a [`PoolSlice`] ranks, at most.
pub const MAX_FAMILY: usize = 64;

/// The pool, ranked.
pub trait PoolView {
    /// `dest`'s ranking in family `af` (2 or 10), best first, written to
    /// `out` (as much as fits); returns how many were written.
    fn ranked(&self, af: u8, dest: &[u8; PUBLIC_KEY_LEN], out: &mut [BrokerId]) -> usize;
}

/// A broker of a [`PoolSlice`]; its id is its index in the slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolBroker<'a> {
    pub host: &'a str,
    pub weight: f64,
    pub af: u8,
}

/// A pool held in a slice (firmware: a `static`), at most
/// [`MAX_FAMILY`] brokers per family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolSlice<'a> {
    pub brokers: &'a [PoolBroker<'a>],
    pub ranking: Ranking,
}

impl PoolView for PoolSlice<'_> {
    fn ranked(&self, af: u8, dest: &[u8; PUBLIC_KEY_LEN], out: &mut [BrokerId]) -> usize {
        let mut family = [Broker {
            host: "",
            weight: 0.0,
        }; MAX_FAMILY];
        let mut index = [0usize; MAX_FAMILY];
        let mut n = 0;
        for (i, b) in self.brokers.iter().enumerate().filter(|(_, b)| b.af == af) {
            if n == MAX_FAMILY {
                break;
            }
            family[n] = Broker {
                host: b.host,
                weight: b.weight,
            };
            index[n] = i;
            n += 1;
        }
        let mut scratch = [Ranked::default(); MAX_FAMILY];
        let ranked = rendezvous::rank(af, dest, &family[..n], self.ranking, &mut scratch);
        let mut written = 0;
        for (r, slot) in ranked.iter().zip(out.iter_mut()) {
            *slot = BrokerId(index[r.index] as u32);
            written += 1;
        }
        written
    }
}
