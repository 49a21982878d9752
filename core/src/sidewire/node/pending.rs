//! Sends waiting for their ACK: when each publishes again and when it
//! gives up.
//!
//! A send publishes at once, then every `resend_every` (each time further
//! down the destination's ranking: [`super::widening`]) until an ACK from
//! the destination names its queue and sequence (spec §4.8), or its
//! deadline passes. The first publish always goes out (a zero timeout
//! still sends once); after that a deadline that falls on a resend wins:
//! the send fails rather than publish once more ([`Schedule`], which the
//! tokio shell's pipes use too). The table is fixed (`N` sends);
//! a send beyond it is refused with [`PendingFull`], never queued.

use core::time::Duration;

use crate::identity::PUBLIC_KEY_LEN;
use crate::time::Instant;

/// Names a send to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SendId(pub u64);

/// No room for another send: [`Pending`]'s capacity is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingFull;

impl core::fmt::Display for PendingFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("too many sends waiting for their ACK")
    }
}

impl core::error::Error for PendingFull {}

/// One send's timers: when it publishes again and when it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    deadline: Instant,
    next_publish: Instant,
    /// Publishes so far.
    attempts: u32,
}

/// What a send's timer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Publish (again); `attempt` counts from 0, the first publish.
    Publish { attempt: u32 },
    /// The deadline passed with no ACK.
    Expired,
}

impl Schedule {
    /// A send starting at `now`: its first publish is due at once. A
    /// timeout too long to add waits for the ACK alone.
    pub fn new(now: Instant, timeout: Duration) -> Self {
        Self {
            deadline: now + timeout,
            next_publish: now,
            attempts: 0,
        }
    }

    /// When [`Self::next_due`] has something to say.
    pub fn poll_timeout(&self) -> Instant {
        if self.attempts == 0 {
            return self.next_publish;
        }
        self.next_publish.min(self.deadline)
    }

    /// What is due at `now`, if anything; a publish sets the next one
    /// `resend_every` later.
    pub fn next_due(&mut self, now: Instant, resend_every: Duration) -> Option<Step> {
        if self.attempts > 0 && now >= self.deadline {
            return Some(Step::Expired);
        }
        if now < self.next_publish {
            return None;
        }
        let attempt = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        self.next_publish = now + resend_every;
        Some(Step::Publish { attempt })
    }
}

/// One send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingSend {
    pub id: SendId,
    pub dest: [u8; PUBLIC_KEY_LEN],
    pub queue_id: [u8; 32],
    pub seq_no: u32,
    schedule: Schedule,
}

/// What a send's timer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Publish again; `attempt` counts from 0 (the first publish).
    Publish { id: SendId, attempt: u32 },
    /// The deadline passed with no ACK; the send is gone.
    Expired(SendId),
}

/// The sends of a node, at most `N`.
#[derive(Debug)]
pub struct Pending<const N: usize> {
    sends: [Option<PendingSend>; N],
    next_id: u64,
    resend_every: Duration,
}

impl<const N: usize> Pending<N> {
    pub fn new(resend_every: Duration) -> Self {
        Self {
            sends: [None; N],
            next_id: 0,
            resend_every,
        }
    }

    /// Tracks a send of (queue, seq) to `dest`; its first publish is due
    /// at `now`. A timeout too long to add waits for the ACK alone.
    pub fn insert(
        &mut self,
        now: Instant,
        dest: [u8; PUBLIC_KEY_LEN],
        (queue_id, seq_no): ([u8; 32], u32),
        timeout: Duration,
    ) -> Result<SendId, PendingFull> {
        let slot = self
            .sends
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(PendingFull)?;
        let id = SendId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        *slot = Some(PendingSend {
            id,
            dest,
            queue_id,
            seq_no,
            schedule: Schedule::new(now, timeout),
        });
        Ok(id)
    }

    /// Whether an ACK from `src` for (queue, seq) would complete a send:
    /// the only ACKs worth a signature check.
    pub fn expects(&self, src: &[u8; PUBLIC_KEY_LEN], queue_id: &[u8; 32], seq_no: u32) -> bool {
        self.find(src, queue_id, seq_no).is_some()
    }

    /// A verified ACK arrived: the send it completes, now gone.
    pub fn acked(
        &mut self,
        src: &[u8; PUBLIC_KEY_LEN],
        queue_id: &[u8; 32],
        seq_no: u32,
    ) -> Option<PendingSend> {
        let at = self.find(src, queue_id, seq_no)?;
        self.sends[at].take()
    }

    /// Forgets a send (its caller stopped waiting).
    pub fn cancel(&mut self, id: SendId) -> Option<PendingSend> {
        self.sends
            .iter_mut()
            .find(|s| s.is_some_and(|s| s.id == id))
            .and_then(Option::take)
    }

    pub fn get(&self, id: SendId) -> Option<&PendingSend> {
        self.sends.iter().flatten().find(|s| s.id == id)
    }

    pub fn len(&self) -> usize {
        self.sends.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next time a send publishes or expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sends
            .iter()
            .flatten()
            .map(|s| s.schedule.poll_timeout())
            .min()
    }

    /// One send whose timer is due at `now`, with what to do; call until
    /// `None`.
    pub fn next_due(&mut self, now: Instant) -> Option<Due> {
        let resend_every = self.resend_every;
        for slot in &mut self.sends {
            let Some(send) = slot.as_mut() else { continue };
            match send.schedule.next_due(now, resend_every) {
                None => {}
                Some(Step::Expired) => {
                    let id = send.id;
                    *slot = None;
                    return Some(Due::Expired(id));
                }
                Some(Step::Publish { attempt }) => {
                    return Some(Due::Publish {
                        id: send.id,
                        attempt,
                    });
                }
            }
        }
        None
    }

    fn find(&self, src: &[u8; PUBLIC_KEY_LEN], queue_id: &[u8; 32], seq_no: u32) -> Option<usize> {
        self.sends.iter().position(|s| {
            s.is_some_and(|s| s.dest == *src && s.queue_id == *queue_id && s.seq_no == seq_no)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_timeout_still_publishes_once() {
        let mut s = Schedule::new(Instant::ZERO, Duration::ZERO);
        let second = Duration::from_secs(1);
        assert_eq!(
            s.next_due(Instant::ZERO, second),
            Some(Step::Publish { attempt: 0 })
        );
        assert_eq!(s.poll_timeout(), Instant::ZERO);
        assert_eq!(s.next_due(Instant::ZERO, second), Some(Step::Expired));
    }

    #[test]
    fn an_endless_timeout_publishes_each_interval() {
        let mut s = Schedule::new(Instant::from_secs(5), Duration::MAX);
        let second = Duration::from_secs(1);
        for a in 0..100u32 {
            let now = Instant::from_secs(5 + u64::from(a));
            assert_eq!(s.next_due(now, second), Some(Step::Publish { attempt: a }));
            assert_eq!(s.next_due(now, second), None);
            assert_eq!(s.poll_timeout(), now + second);
        }
    }
}
