//! Which message ids a receiver has already accepted, per sender: what makes
//! the messages service replay-safe (issue 16, item 5). A sender retries a
//! message under the same id; the receiver acknowledges the copy and never
//! delivers it twice. Bounded: at most `max_ids` ids per sender (the oldest
//! forgotten first) and `max_senders` senders (some sender forgotten when a
//! new one comes); a replay this lets through is still confined to an
//! authenticated, authorized peer.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

/// A message's id: 16 random bytes chosen by its sender.
pub type MessageId = [u8; MESSAGE_ID_LEN];

/// Length of a [`MessageId`]; a message request's body starts with it.
pub const MESSAGE_ID_LEN: usize = 16;

#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<MessageId>,
    ids: BTreeSet<MessageId>,
}

/// The ids seen, per sender (its 33-byte identity key).
#[derive(Debug)]
pub struct SeenMessages {
    senders: BTreeMap<[u8; 33], Seen>,
    max_senders: usize,
    max_ids: usize,
}

impl SeenMessages {
    /// An empty table remembering at most `max_ids` ids for each of at
    /// most `max_senders` senders.
    pub const fn new(max_senders: usize, max_ids: usize) -> Self {
        Self {
            senders: BTreeMap::new(),
            max_senders,
            max_ids,
        }
    }

    /// Marks `id` from `from` as seen; false if it already was.
    pub fn first_time(&mut self, from: &[u8; 33], id: MessageId) -> bool {
        if !self.senders.contains_key(from)
            && self.senders.len() >= self.max_senders
            && let Some(evict) = self.senders.keys().next().copied()
        {
            self.senders.remove(&evict);
        }
        let entry = self.senders.entry(*from).or_default();
        if !entry.ids.insert(id) {
            return false;
        }
        entry.order.push_back(id);
        if entry.order.len() > self.max_ids
            && let Some(old) = entry.order.pop_front()
        {
            entry.ids.remove(&old);
        }
        true
    }

    /// How many ids of `from` are remembered.
    pub fn remembered(&self, from: &[u8; 33]) -> usize {
        self.senders.get(from).map_or(0, |s| s.ids.len())
    }

    /// Forgets `id` from `from` (its delivery failed: a retry may deliver it).
    pub fn forget(&mut self, from: &[u8; 33], id: &MessageId) {
        if let Some(entry) = self.senders.get_mut(from) {
            entry.ids.remove(id);
            entry.order.retain(|x| x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SeenMessages;

    #[test]
    fn a_copy_is_refused_until_forgotten_and_the_tables_stay_bounded() {
        let mut seen = SeenMessages::new(2, 3);
        let (a, b, c) = ([1u8; 33], [2u8; 33], [3u8; 33]);
        assert!(seen.first_time(&a, [0; 16]));
        assert!(!seen.first_time(&a, [0; 16]));
        seen.forget(&a, &[0; 16]);
        assert!(seen.first_time(&a, [0; 16]));
        // The oldest id goes once a sender has more than 3.
        for i in 1..=3u8 {
            assert!(seen.first_time(&a, [i; 16]));
        }
        assert!(seen.first_time(&a, [0; 16]));
        assert!(!seen.first_time(&a, [3; 16]));
        // A third sender evicts one of the two.
        assert!(seen.first_time(&b, [9; 16]));
        assert!(seen.first_time(&c, [9; 16]));
        assert_eq!(seen.senders.len(), 2);
    }
}
