//! Screened packets waiting for their signature check, for one [`Class`]
//! (the node keeps one queue per class and checks `Peer` first).
//!
//! Bounded (`N`); when full, the packet dropped is the newest of the key
//! with the most packets queued (the arriving one if that is its own
//! key), so a few keys sending flat out (throwaway keys become peers once
//! verified) cannot keep another key's packet out: it is dropped only
//! when every queued packet comes from a different key (issue 11 item 7).
//!
//! [`Class`]: crate::sidewire::screen::Class

use crate::identity::PUBLIC_KEY_LEN;

/// A bounded FIFO of items tagged with their claimed key.
#[derive(Debug)]
pub struct VerifyQueue<T, const N: usize> {
    /// `items[..len]`, oldest first.
    items: [Option<([u8; PUBLIC_KEY_LEN], T)>; N],
    len: usize,
    /// Packets queued per key, for the keys in `items`.
    counts: [([u8; PUBLIC_KEY_LEN], u32); N],
    keys: usize,
}

impl<T, const N: usize> Default for VerifyQueue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> VerifyQueue<T, N> {
    pub fn new() -> Self {
        Self {
            items: core::array::from_fn(|_| None),
            len: 0,
            counts: [([0; PUBLIC_KEY_LEN], 0); N],
            keys: 0,
        }
    }

    /// Queues `item` from `key`, returning the item it displaced (the
    /// newest of the heaviest key) if any; gives `item` back if it was
    /// dropped instead.
    pub fn push(&mut self, key: [u8; PUBLIC_KEY_LEN], item: T) -> Result<Option<T>, T> {
        if N == 0 {
            return Err(item);
        }
        let mut evicted = None;
        if self.len >= N {
            let own = self.count(&key);
            let Some((heaviest, most)) = self.counts[..self.keys]
                .iter()
                .max_by_key(|(_, n)| *n)
                .copied()
            else {
                return Err(item);
            };
            if own >= most {
                return Err(item);
            }
            let Some(at) = self.items[..self.len]
                .iter()
                .rposition(|i| i.as_ref().is_some_and(|(k, _)| *k == heaviest))
            else {
                return Err(item);
            };
            evicted = self.remove(at).map(|(_, item)| item);
        }
        self.items[self.len] = Some((key, item));
        self.len += 1;
        match self.counts[..self.keys].iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => {
                self.counts[self.keys] = (key, 1);
                self.keys += 1;
            }
        }
        Ok(evicted)
    }

    /// The oldest item.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.remove(0).map(|(_, item)| item)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys with a packet queued.
    pub fn keys(&self) -> usize {
        self.keys
    }

    fn count(&self, key: &[u8; PUBLIC_KEY_LEN]) -> u32 {
        self.counts[..self.keys]
            .iter()
            .find(|(k, _)| k == key)
            .map_or(0, |(_, n)| *n)
    }

    fn remove(&mut self, at: usize) -> Option<([u8; PUBLIC_KEY_LEN], T)> {
        let taken = self.items[at].take();
        self.items[at..self.len].rotate_left(1);
        self.len -= 1;
        if let Some((key, _)) = &taken
            && let Some(c) = self.counts[..self.keys].iter().position(|(k, _)| k == key)
        {
            self.counts[c].1 -= 1;
            if self.counts[c].1 == 0 {
                self.keys -= 1;
                self.counts.swap(c, self.keys);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;

    /// Review of issue 11 item 7: a few keys sending flat out kept the
    /// queue full, and a peer's packet arriving then was dropped.
    #[test]
    fn a_flooding_key_cannot_crowd_out_another_keys_packet() {
        let mut queue = VerifyQueue::<u32, 256>::new();
        for i in 0..10_000u32 {
            let _ = queue.push([(i % 4) as u8; 33], i);
        }
        assert!(
            queue.push([9; 33], u32::MAX).is_ok(),
            "A's packet is queued"
        );
        for i in 0..10_000u32 {
            let _ = queue.push([(i % 4) as u8; 33], i);
        }
        let popped: Vec<u32> = core::iter::from_fn(|| queue.pop()).collect();
        assert!(popped.len() <= 256);
        assert!(popped.contains(&u32::MAX), "and checked");
    }

    #[test]
    fn a_single_key_keeps_its_oldest_packets_in_order() {
        let mut queue = VerifyQueue::<u32, 4>::new();
        for i in 0..10u32 {
            let _ = queue.push([1; 33], i);
        }
        let popped: Vec<u32> = core::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(popped, [0, 1, 2, 3]);
        assert!(queue.is_empty());
        assert_eq!(queue.keys(), 0);
    }
}
