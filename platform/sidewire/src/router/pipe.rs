//! Sending: a pipe to one destination, publishing on its hints and the
//! top of its ranking, wider with each resend, until the ACK or timeout.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::PublicKey;
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::sidewire::node::pending::{Schedule, Step};
use keyway_core::sidewire::node::walk::Walk;
use keyway_core::sidewire::{AppPacket, MsgType};
use tokio::sync::oneshot;

use super::links::family_lens;
use super::{Inner, MessageId, RouterError};
use crate::pool::BrokerEntry;

/// Sends to one destination.
#[derive(Clone)]
pub struct SmartPipe {
    inner: Arc<Inner>,
    dest: PublicKey,
    /// Brokers to publish on first (and always try), e.g. where the
    /// destination said it listens.
    hints: Vec<BrokerEntry>,
    /// Whether brokers remembered in the hint cache are tried too.
    use_cache: bool,
    /// Remembered brokers older than this are not tried (the cache's own
    /// expiry still applies).
    cache_expiry: Option<Duration>,
}

impl std::fmt::Debug for SmartPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartPipe")
            .field("dest", &self.dest)
            .finish_non_exhaustive()
    }
}

impl SmartPipe {
    pub(super) fn new(inner: Arc<Inner>, dest: PublicKey) -> Self {
        Self {
            inner,
            dest,
            hints: Vec::new(),
            use_cache: true,
            cache_expiry: None,
        }
    }

    /// Publishes on `hints` first: the fast path when the destination's
    /// brokers are known (they need not be in the pool). The destination's
    /// ranking is still used as well. All are connected at once, so only
    /// the first 16 (with any the hint cache remembers) are used.
    #[must_use]
    pub fn with_hints(mut self, hints: Vec<BrokerEntry>) -> Self {
        self.hints = hints;
        self
    }

    /// Whether to try the brokers the hint cache remembers for the
    /// destination (default: yes, when the Router has a cache file).
    #[must_use]
    pub fn use_cache(mut self, use_cache: bool) -> Self {
        self.use_cache = use_cache;
        self
    }

    /// Tries only remembered brokers seen within `expiry`.
    #[must_use]
    pub fn cache_expiry(mut self, expiry: Duration) -> Self {
        self.cache_expiry = Some(expiry);
        self
    }

    /// Sends `data` and waits for the destination's ACK, publishing on the
    /// top of its ranking and again every `resend_every`, each time further
    /// down it (1, 3, 7… brokers more per family, up to the 10 a reference
    /// node may listen on), until acknowledged or `timeout` passes.
    pub async fn send(&self, data: &[u8], timeout: Duration) -> Result<(), RouterError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(RouterError::Closed);
        }
        let max = inner.config.max_message;
        if data.len() + keyway_core::sidewire::app_packet::HEADER_LEN > max {
            return Err(RouterError::TooLarge {
                len: data.len(),
                max,
            });
        }
        let mut queue_id = [0u8; 32];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut queue_id);
        let mut packet = AppPacket::new(queue_id, 0, inner.now(), MsgType::Msg, data);
        packet.sign(&inner.key);
        let mut bytes = vec![0u8; packet.encoded_len()];
        packet
            .encode(&mut bytes)
            .map_err(|_| RouterError::TooLarge {
                len: data.len(),
                max,
            })?;
        let (done_tx, mut done) = oneshot::channel();
        inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((queue_id, 0), (*self.dest.as_bytes(), done_tx));
        // Removed however this future ends, cancellation included.
        let _pending = PendingGuard {
            inner,
            id: (queue_id, 0),
        };
        let topic = self.dest.to_string();
        // The core's schedule in this send's own time (tokio's clock, so
        // its timers and the schedule agree).
        let origin = tokio::time::Instant::now();
        let since = |t: tokio::time::Instant| {
            let micros = t.saturating_duration_since(origin).as_micros();
            keyway_core::time::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
        };
        // A time too far to add (Duration::MAX) waits for the ACK alone,
        // rather than panic.
        let at = |i: keyway_core::time::Instant| {
            origin
                .checked_add(Duration::from_micros(i.as_micros()))
                .unwrap_or_else(|| origin + Duration::from_secs(100 * 365 * 86_400))
        };
        let mut schedule = Schedule::new(since(origin), timeout);
        loop {
            let now = since(tokio::time::Instant::now());
            let attempt = match schedule.next_due(now, inner.config.resend_every) {
                Some(Step::Expired) => break Err(RouterError::Timeout(timeout)),
                Some(Step::Publish { attempt }) => Some(attempt),
                None => None,
            };
            let remembered = match attempt {
                Some(_) if self.use_cache => {
                    let hints = inner.hints.lock().unwrap_or_else(|e| e.into_inner());
                    hints.hints(&topic, inner.now(), self.cache_expiry.map(|d| d.as_secs()))
                }
                _ => Vec::new(),
            };
            // Every hint, then the destination's set, then 1, 3, 7… brokers
            // more per family with each resend (`Walk::for_send`).
            let groups = attempt.map(|attempt| {
                let hints: Vec<&BrokerEntry> = self.hints.iter().chain(&remembered).collect();
                let families = inner.pool.ranked(&self.dest);
                let walk = Walk::for_send(hints.len(), family_lens(&families), attempt);
                let mut groups = vec![hints];
                groups.extend(families);
                (groups, walk)
            });
            let wait = at(schedule.poll_timeout());
            // All connected in parallel, each link given the packet as soon
            // as it is up and never waited on (a full queue skips it until
            // the next resend): no broker delays the others or this send
            // past `wait`. Connects still going on then finish in the
            // background, for the next attempt.
            let mut published = Vec::new();
            let publish = async {
                if let Some(groups) = groups {
                    inner
                        .walk(groups, |link| {
                            // Once per broker, though a hint may also rank high.
                            if !published.contains(&link.id()) {
                                published.push(link.id());
                                let _ = link.try_publish(topic.as_bytes(), &bytes);
                            }
                        })
                        .await;
                }
            };
            let attempt_over = async {
                let _ = tokio::time::timeout_at(wait, publish).await;
                tokio::time::sleep_until(wait).await;
            };
            tokio::select! {
                _ = &mut done => break Ok(()),
                () = inner.closed.cancelled() => break Err(RouterError::Closed),
                () = attempt_over => {}
            }
        }
    }
}

/// A send's entry in [`Inner::pending`], removed when the send ends or
/// its future is dropped (a caller's timeout, a cancelled awaitable).
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: MessageId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
