//! Screened packets waiting for their signature check, per class.
//!
//! Bounded; when full, the packet dropped is the newest of the key with
//! the most packets queued (the arriving one if that is its own key), so
//! a few keys sending flat out (throwaway keys become peers once
//! verified) cannot keep another key's packet out: it is dropped only
//! when every queued packet comes from a different key.

use std::collections::{HashMap, VecDeque};

/// A bounded FIFO of packets tagged with their claimed key.
pub(crate) struct VerifyQueue<T> {
    items: VecDeque<([u8; 33], T)>,
    counts: HashMap<[u8; 33], usize>,
    cap: usize,
}

impl<T> VerifyQueue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            items: VecDeque::new(),
            counts: HashMap::new(),
            cap,
        }
    }

    /// Queues `item` from `key`; false if it was dropped.
    pub(crate) fn push(&mut self, key: [u8; 33], item: T) -> bool {
        if self.cap == 0 {
            return false;
        }
        if self.items.len() >= self.cap {
            // At most `cap` entries each: bounded work per arrival.
            let own = self.counts.get(&key).copied().unwrap_or(0);
            let Some((&heaviest, &most)) = self.counts.iter().max_by_key(|(_, n)| **n) else {
                return false;
            };
            if own >= most {
                return false;
            }
            let Some(at) = self.items.iter().rposition(|(k, _)| *k == heaviest) else {
                return false;
            };
            self.items.remove(at);
            self.forget_one(&heaviest);
        }
        *self.counts.entry(key).or_default() += 1;
        self.items.push_back((key, item));
        true
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let (key, item) = self.items.pop_front()?;
        self.forget_one(&key);
        Some(item)
    }

    fn forget_one(&mut self, key: &[u8; 33]) {
        if let Some(n) = self.counts.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of issue 11 item 7: a few keys sending flat out kept the
    /// queue full, and a peer's packet arriving then was dropped.
    #[test]
    fn a_flooding_key_cannot_crowd_out_another_keys_packet() {
        let mut queue = VerifyQueue::new(256);
        for i in 0..10_000u32 {
            queue.push([(i % 4) as u8; 33], i);
        }
        assert!(queue.push([9; 33], u32::MAX), "A's packet is queued");
        for i in 0..10_000u32 {
            queue.push([(i % 4) as u8; 33], i);
        }
        let mut popped = Vec::new();
        while let Some(item) = queue.pop() {
            popped.push(item);
        }
        assert!(popped.len() <= 256);
        assert!(popped.contains(&u32::MAX), "and checked");
    }

    #[test]
    fn a_single_key_keeps_its_oldest_packets_in_order() {
        let mut queue = VerifyQueue::new(4);
        for i in 0..10u32 {
            queue.push([1; 33], i);
        }
        let popped: Vec<u32> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(popped, [0, 1, 2, 3]);
        assert!(queue.is_empty());
        assert!(queue.counts.is_empty());
    }
}
