//! Parsed public keys of recent senders, for whoever checks signatures:
//! peers' keys recur, and parsing one costs a square root.
//!
//! A fixed table in the caller's storage, in buckets of [`WAYS`] found by
//! a keyed hash (a secret seed, so a flood of crafted keys cannot aim at a
//! peer's bucket); in a full bucket the least recently used key goes. An
//! invalid point is never kept. Only keys that signed something valid
//! would be worth keeping, but a valid point is cheap to hold and the
//! table is bounded whatever arrives.

use crate::identity::{PUBLIC_KEY_LEN, PublicKey};
use crate::sidewire::buckets;

/// Keys per bucket.
pub const WAYS: usize = 4;

/// One place of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeySlot {
    key: Option<PublicKey>,
    used: u64,
}

impl KeySlot {
    pub const EMPTY: Self = Self { key: None, used: 0 };
}

/// The cache over the caller's slots.
#[derive(Debug)]
pub struct KeyCache<S> {
    slots: S,
    seed: [u8; 16],
    clock: u64,
}

impl<S: AsRef<[KeySlot]> + AsMut<[KeySlot]>> KeyCache<S> {
    /// `seed` must be random and secret.
    pub fn new(mut slots: S, seed: [u8; 16]) -> Self {
        slots.as_mut().fill(KeySlot::EMPTY);
        Self {
            slots,
            seed,
            clock: 0,
        }
    }

    /// `bytes` as a key, from the table or parsed (and then kept); `None`
    /// for an invalid point.
    pub fn get(&mut self, bytes: &[u8; PUBLIC_KEY_LEN]) -> Option<PublicKey> {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        let bucket = self.bucket(bytes);
        let slots = &mut self.slots.as_mut()[bucket];
        if let Some(slot) = slots
            .iter_mut()
            .find(|s| s.key.is_some_and(|k| k.as_bytes() == bytes))
        {
            slot.used = clock;
            return slot.key;
        }
        let key = PublicKey::from_bytes(bytes).ok()?;
        if let Some(slot) = slots
            .iter_mut()
            .min_by_key(|s| if s.key.is_none() { 0 } else { s.used })
        {
            *slot = KeySlot {
                key: Some(key),
                used: clock,
            };
        }
        Some(key)
    }

    /// Whether `bytes` is held (without parsing or touching it).
    pub fn contains(&self, bytes: &[u8; PUBLIC_KEY_LEN]) -> bool {
        self.slots.as_ref()[self.bucket(bytes)]
            .iter()
            .any(|s| s.key.is_some_and(|k| k.as_bytes() == bytes))
    }

    fn bucket(&self, bytes: &[u8; PUBLIC_KEY_LEN]) -> core::ops::Range<usize> {
        buckets::bucket(
            &self.seed,
            &[b"key", bytes],
            self.slots.as_ref().len(),
            WAYS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn recent_keys_stay_and_invalid_points_are_never_kept() {
        let mut cache = KeyCache::new([KeySlot::EMPTY; 8], [5; 16]);
        let peer = *Keypair::from_secret_bytes(&[1; 32]).unwrap().public();
        assert_eq!(cache.get(peer.as_bytes()), Some(peer));
        assert!(cache.contains(peer.as_bytes()));
        assert_eq!(cache.get(&[0xff; PUBLIC_KEY_LEN]), None);
        assert!(!cache.contains(&[0xff; PUBLIC_KEY_LEN]));
        // A flood of other keys: the peer, used between them, stays.
        for i in 2..60u8 {
            let other = *Keypair::from_secret_bytes(&[i; 32]).unwrap().public();
            cache.get(other.as_bytes());
            cache.get(peer.as_bytes());
        }
        assert!(cache.contains(peer.as_bytes()));
    }

    #[test]
    fn an_empty_table_still_parses() {
        let mut cache = KeyCache::new([KeySlot::EMPTY; 0], [5; 16]);
        let peer = *Keypair::from_secret_bytes(&[1; 32]).unwrap().public();
        assert_eq!(cache.get(peer.as_bytes()), Some(peer));
    }
}
