//! Sending: a pipe to one destination hands each send to the Router's
//! driver (a bounded queue) and waits for the node's verdict: the ACK,
//! the timeout, or the Router's close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keyway_core::PublicKey;
use keyway_core::sidewire::app_packet::HEADER_LEN;
use tokio::sync::oneshot;

use super::driver::SendRequest;
use super::{Inner, RouterError};
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
    /// node may listen on), until acknowledged or `timeout` passes. While
    /// the node has as many sends as it holds, this waits for room
    /// (within `timeout`).
    pub async fn send(&self, data: &[u8], timeout: Duration) -> Result<(), RouterError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(RouterError::Closed);
        }
        let max = inner.max_message;
        if data.len().saturating_add(HEADER_LEN) > max {
            return Err(RouterError::TooLarge {
                len: data.len(),
                max,
            });
        }
        inner.spawn_driver();
        // Counted until this future ends, cancellation included.
        let _waiting = Waiting::new(inner);
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let (done, result) = oneshot::channel();
        let request = SendRequest {
            dest: self.dest,
            data: data.to_vec(),
            hints: self.hints.clone(),
            use_cache: self.use_cache,
            cache_expiry: self.cache_expiry,
            timeout,
            done,
        };
        let handed = async {
            match deadline {
                Some(at) => tokio::time::timeout_at(at, inner.commands.send(request))
                    .await
                    .map_err(|_| RouterError::Timeout(timeout))?,
                None => inner.commands.send(request).await,
            }
            .map_err(|_| RouterError::Closed)
        };
        tokio::select! {
            handed = handed => handed?,
            () = inner.closed.cancelled() => return Err(RouterError::Closed),
        }
        tokio::select! {
            result = result => result.unwrap_or(Err(RouterError::Closed)),
            () = inner.closed.cancelled() => Err(RouterError::Closed),
        }
    }
}

/// A send whose caller waits: counted in [`super::Router::pending_sends`];
/// when it ends the driver is told to forget it if it did not end there.
struct Waiting<'a> {
    inner: &'a Inner,
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.sending.fetch_add(1, Ordering::SeqCst);
        Self { inner }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner.sending.fetch_sub(1, Ordering::SeqCst);
        self.inner.shared.abandoned.notify_one();
    }
}
