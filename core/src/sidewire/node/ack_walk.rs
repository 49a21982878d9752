//! A first copy's ACK through the sender's own set (spec §6): the MSG's
//! arrival link is only one way back; the sender listens on the top of
//! its own ranking, so the ACK also goes there, connecting the brokers of
//! that set the node has no link to.
//!
//! Rules: the set is the top `set_size` of each family of the sender's
//! ranking, a broker backing off replaced by the next (the same rule as a
//! send's first publish); the ACK is published on each
//! link of the set as soon as it is up, once per broker (never again on
//! the broker it arrived by); a broker whose connect fails is replaced by
//! the next of its family; the walk ends when every broker of the set has
//! the ACK or at `connect_timeout`. At most `W` ([`ACK_WALKS`]) walks wait for
//! connects: beyond that an ACK goes only on links already up and opens
//! none (bounded work per inbound MSG; the sender's resend is answered
//! from the kept bytes).

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::receiver::Slot;
use crate::sidewire::screen::Peer;
use crate::time::Instant;

use super::ack_cache::{ACK_LEN, SourceAcks};
use super::route::Targets;
use super::{LinkId, Node, PoolView, Table};

/// ACK walks waiting for connects, at most, by default (`Node`'s `W`).
pub const ACK_WALKS: usize = 16;

/// One ACK on its way to the sender's set.
#[derive(Clone, Copy, Debug)]
pub(super) struct AckWalk<const T: usize> {
    to: [u8; PUBLIC_KEY_LEN],
    bytes: [u8; ACK_LEN],
    /// Brokers that have it (the arrival link's among them).
    sent: Targets<T>,
    deadline: Instant,
}

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const T: usize,
    const O: usize,
    const W: usize,
> Node<P, Sl, Wm, Pe, Ak, L, S, Q, B, T, O, W>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    /// Starts the walk of a first copy's ACK (published on `arrived_on`
    /// already).
    pub(super) fn ack_on_sender_set(
        &mut self,
        now: Instant,
        to: &[u8; PUBLIC_KEY_LEN],
        arrived_on: LinkId,
        bytes: [u8; ACK_LEN],
    ) {
        let mut walk = AckWalk {
            to: *to,
            bytes,
            sent: Targets::new_empty(),
            deadline: now + self.config.connect_timeout,
        };
        if let Some(l) = self.links.get(arrived_on) {
            walk.sent.push(l.broker);
        }
        let free = if self.ack_walks() < self.config.max_ack_walks {
            self.ack_walks.iter().position(Option::is_none)
        } else {
            None
        };
        if self.advance_ack(now, &mut walk, free.is_some())
            && let Some(slot) = free
        {
            self.ack_walks[slot] = Some(walk);
        }
    }

    /// Publishes `walk`'s ACK on every link of the set that is up and
    /// lacks it, connecting the missing brokers if `connect`; whether a
    /// connect it waits for is under way.
    fn advance_ack(&mut self, now: Instant, walk: &mut AckWalk<T>, connect: bool) -> bool {
        let mut set = Targets::new_empty();
        self.ranked_targets(now, &walk.to, 0, &mut set);
        let mut waiting = false;
        for &b in set.as_slice() {
            if walk.sent.contains(b) {
                continue;
            }
            let link = match self.links.to(b) {
                Some(l) => l.up.then_some(l.id),
                None if connect => self.ensure(now, b),
                None => None,
            };
            match link {
                Some(link) => {
                    self.links.touch(link, now);
                    self.outbox.publish_ack(link, walk.to, walk.bytes);
                    walk.sent.push(b);
                }
                None => waiting |= connect && self.links.to(b).is_some(),
            }
        }
        waiting
    }

    /// Every waiting walk after a link came up or went down.
    pub(super) fn advance_acks(&mut self, now: Instant) {
        for i in 0..self.ack_walks.len() {
            if let Some(mut walk) = self.ack_walks[i] {
                let waiting = self.advance_ack(now, &mut walk, true);
                self.ack_walks[i] = waiting.then_some(walk);
            }
        }
    }

    /// Ends the walks whose connect time is over.
    pub(super) fn expire_acks(&mut self, now: Instant) {
        for slot in &mut self.ack_walks {
            if slot.is_some_and(|w| w.deadline <= now) {
                *slot = None;
            }
        }
    }

    /// When the next walk ends.
    pub(super) fn acks_timeout(&self) -> Option<Instant> {
        self.ack_walks.iter().flatten().map(|w| w.deadline).min()
    }

    /// ACK walks waiting for connects now.
    pub fn ack_walks(&self) -> usize {
        self.ack_walks.iter().flatten().count()
    }
}
