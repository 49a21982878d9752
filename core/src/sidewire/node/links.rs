//! The node's links: which broker each goes to, whether it is up, whether
//! it carries the node's own subscription, and when it was last used.
//!
//! Rules: one link per broker (a second connect to a broker whose connect
//! is under way is never started, or a silent broker would be dialled on
//! every walk); a connect not answered within the connect timeout counts
//! as failed; a link outside the node's own set is closed after the idle
//! timeout unused, and reopened when a send needs it again.

use core::time::Duration;

use crate::time::Instant;

use super::{BrokerId, LinkId};

/// One link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: LinkId,
    pub broker: BrokerId,
    /// Connected and subscribed; false while connecting.
    pub up: bool,
    /// Among the node's own subscriptions (kept open however idle).
    pub own: bool,
    /// When the connect started (while connecting), or the link was last
    /// handed out.
    pub used: Instant,
}

/// At most `N` links.
#[derive(Debug)]
pub struct Links<const N: usize> {
    links: [Option<Link>; N],
    next: u64,
}

impl<const N: usize> Default for Links<N> {
    fn default() -> Self {
        Self {
            links: [None; N],
            next: 0,
        }
    }
}

impl<const N: usize> Links<N> {
    pub fn to(&self, broker: BrokerId) -> Option<&Link> {
        self.links.iter().flatten().find(|l| l.broker == broker)
    }

    pub fn get(&self, id: LinkId) -> Option<&Link> {
        self.links.iter().flatten().find(|l| l.id == id)
    }

    pub fn get_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links.iter_mut().flatten().find(|l| l.id == id)
    }

    /// A new link to `broker`, connecting; `None` if one exists or the
    /// table is full.
    pub fn open(&mut self, broker: BrokerId, now: Instant) -> Option<LinkId> {
        if self.to(broker).is_some() {
            return None;
        }
        let slot = self.links.iter_mut().find(|l| l.is_none())?;
        let id = LinkId(self.next);
        self.next = self.next.wrapping_add(1);
        *slot = Some(Link {
            id,
            broker,
            up: false,
            own: false,
            used: now,
        });
        Some(id)
    }

    pub fn remove(&mut self, id: LinkId) -> Option<Link> {
        self.links
            .iter_mut()
            .find(|l| l.is_some_and(|l| l.id == id))
            .and_then(Option::take)
    }

    /// Marks a link used at `now` (it is handed out to a send).
    pub fn touch(&mut self, id: LinkId, now: Instant) {
        if let Some(l) = self.get_mut(id) {
            l.used = now;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.links.iter_mut().flatten()
    }

    /// A link to close at `now`: a connect older than `connect_timeout`
    /// (`true`: it failed) or an up link outside the own set idle for
    /// longer than `idle_timeout` (`false`).
    pub fn next_expired(
        &self,
        now: Instant,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<(LinkId, bool)> {
        self.iter().find_map(|l| {
            if !l.up && now.saturating_duration_since(l.used) >= connect_timeout {
                Some((l.id, true))
            } else if l.up && !l.own && idle(l.used, now, idle_timeout) {
                Some((l.id, false))
            } else {
                None
            }
        })
    }

    /// When the next connect times out or link goes idle.
    pub fn poll_timeout(
        &self,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<Instant> {
        self.iter()
            .filter_map(|l| match (l.up, l.own) {
                (false, _) => Some(l.used + connect_timeout),
                (true, false) => Some(l.used + idle_timeout + Duration::from_micros(1)),
                (true, true) => None,
            })
            .min()
    }
}

/// The idle rule: unused for longer than `timeout`.
pub fn idle(used: Instant, now: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(used) > timeout
}
