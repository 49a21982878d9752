//! The Router's links: one per broker, connected on demand (skipping
//! brokers that back off, one connect per broker at a time), walked down
//! a destination's ranking, and kept up for the node's own subscriptions.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use keyway_core::PublicKey;
use keyway_core::sidewire::node::walk::Walk;
use keyway_core::sidewire::node::{LinkDown, links};

use super::Inner;
use crate::link::BrokerLink;
use crate::pool::BrokerEntry;

impl Inner {
    /// An open link to `broker`, connecting (and so subscribing to our own
    /// topic there) if needed; `None` while the broker backs off after a
    /// failure (hinted brokers too: a dead hint must not be dialled on
    /// every send) or while another connect to it is under way. The
    /// connect runs in a task of its own, so a caller that stops waiting
    /// (its deadline passed) does not cancel it: its outcome, a link or a
    /// backoff, is recorded all the same.
    pub(super) async fn link(self: &Arc<Self>, broker: &BrokerEntry) -> Option<BrokerLink> {
        if self.closed.is_cancelled() {
            return None;
        }
        let address = broker.address();
        {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            self.prune(&mut links);
            if let Some((_, l)) = links.iter().find(|(a, _)| *a == address) {
                self.touch(&address);
                return Some(l.clone());
            }
        }
        let ready = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ready(&address, self.mono());
        if !ready {
            return None;
        }
        // One connect per broker at a time: concurrent walks (sends, ACKs,
        // the maintenance loop) skip a broker whose connect is under way,
        // or a silent broker would be dialled once per walk until its
        // first timeout is recorded.
        let claim = Connecting::claim(&self.connecting, &address)?;
        let inner = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            inner.connect(address).await
        })
        .await
        .ok()
        .flatten()
    }

    /// Opens a link to `address` (bounded by the link's connect timeout)
    /// and records the outcome.
    pub(super) async fn connect(&self, address: String) -> Option<BrokerLink> {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let connected = BrokerLink::connect(
            &address,
            self.topic.as_bytes(),
            id,
            &self.config.link,
            self.inbound.clone(),
        )
        .await;
        let link = {
            let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            match connected {
                Ok(link) => {
                    // Not reset yet: a broker that accepts and then stops
                    // reading keeps backing off further ([`Self::prune`]).
                    backoff.connected(&address, self.mono());
                    link
                }
                Err(e) => {
                    let (failures, wait) = backoff.failed(address, self.mono());
                    tracing::debug!(error = %e, failures, ?wait, "broker unavailable");
                    return None;
                }
            }
        };
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.is_cancelled() {
            // Closed while connecting: the link goes with this handle.
            return None;
        }
        if let Some((_, existing)) = links.iter().find(|(a, _)| *a == address) {
            // Lost a race with another connect: keep the first.
            return Some(existing.clone());
        }
        self.touch(&address);
        links.push((address, link.clone()));
        Some(link)
    }

    /// Drops closed links. One closed because a write missed its deadline
    /// counts as a failure of its broker (it completes handshakes, then
    /// stops reading: reconnecting at once would only wedge a new link),
    /// and so does one that never heard from its broker after the
    /// handshake (closed at a missing PINGRESP: the broker neither reads
    /// nor writes). Only one that worked resets the backoff.
    pub(super) fn prune(&self, links: &mut Vec<(String, BrokerLink)>) {
        links.retain(|(address, l)| {
            if l.is_alive() {
                return true;
            }
            let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            let how = LinkDown::of(l.stalled(), l.heard());
            if how.is_failure() {
                let (failures, wait) = backoff.failed(address.clone(), self.mono());
                tracing::debug!(failures, ?wait, ?how, "broker link failed");
            } else {
                backoff.worked(address);
            }
            false
        });
    }

    /// The walk to the top of each family of `dest`'s ranking: the set
    /// size plus `extra` brokers (at most the 10 a reference node may use).
    pub(super) fn set_walk(&self, dest: &PublicKey, extra: usize) -> Candidates<'_> {
        let families = self.pool.ranked(dest);
        let walk = Walk::for_set(family_lens(&families), extra);
        (families, walk)
    }

    /// Links to the brokers of each group that answer, in the order and
    /// parallelism the core's [`Walk`] gives, each handed to
    /// `found` as soon as it is up.
    pub(super) async fn walk(
        self: &Arc<Self>,
        (groups, mut walk): Candidates<'_>,
        mut found: impl FnMut(BrokerLink),
    ) {
        let mut connects = FuturesUnordered::new();
        loop {
            while let Some((group, index)) = walk.poll_connect() {
                if let Some(broker) = groups.get(group).and_then(|b| b.get(index)) {
                    connects.push(self.tagged_link(group, broker));
                }
            }
            let Some((group, link)) = connects.next().await else {
                return;
            };
            match link {
                Some(link) => {
                    walk.handle_up(group);
                    found(link);
                }
                None => walk.handle_failed(group),
            }
        }
    }

    pub(super) async fn tagged_link(
        self: &Arc<Self>,
        group: usize,
        broker: &BrokerEntry,
    ) -> (usize, Option<BrokerLink>) {
        (group, self.link(broker).await)
    }

    /// The top of `dest`'s ranking in each family that answers, `extra`
    /// more than the set size, skipping brokers that fail.
    pub(super) async fn links_for(
        self: &Arc<Self>,
        dest: &PublicKey,
        extra: usize,
    ) -> Vec<BrokerLink> {
        let mut chosen = Vec::new();
        self.walk(self.set_walk(dest, extra), |link| chosen.push(link))
            .await;
        chosen
    }

    pub(super) fn touch(&self, address: &str) {
        let mut used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        used.insert(address.to_owned(), self.mono());
    }

    /// Keeps the node's own subscriptions up and closes links opened only
    /// to send that have been idle for `idle_timeout`.
    pub(super) async fn maintain(self: &Arc<Self>) {
        let own_key = *self.key.public();
        let own: Vec<String> = self
            .links_for(&own_key, self.config.spare_subscriptions)
            .await
            .iter()
            .map(|l| l.broker().to_owned())
            .collect();
        let used = self
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = self.mono();
        let idle = |address: &String| {
            !own.contains(address)
                && used
                    .get(address)
                    .is_none_or(|t| links::idle(*t, now, self.config.idle_timeout))
        };
        // Dropping the last handle sends DISCONNECT.
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(a, _)| !idle(a));
    }
}

/// Candidate brokers by group, and the walk that picks among them.
pub(super) type Candidates<'a> = (Vec<Vec<&'a BrokerEntry>>, Walk);

/// The lengths of the two families of a ranking (IPv4, IPv6).
pub(super) fn family_lens(families: &[Vec<&BrokerEntry>]) -> [usize; 2] {
    [0, 1].map(|i| families.get(i).map_or(0, Vec::len))
}

/// A claim on connecting to one broker, released when dropped (also when
/// the connecting future is cancelled).
struct Connecting {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    address: String,
}

impl Connecting {
    pub(super) fn claim(
        set: &Arc<Mutex<std::collections::HashSet<String>>>,
        address: &str,
    ) -> Option<Self> {
        let fresh = set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address.to_owned());
        fresh.then(|| Self {
            set: set.clone(),
            address: address.to_owned(),
        })
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.address);
    }
}
