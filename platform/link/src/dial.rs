//! Dialing a node: TCP within a deadline, the link's handshake and proofs,
//! and retries with exponential backoff that report the last real reason
//! (issue 16, item 8: a wrong network key ends in `handshake failed`, not
//! `timeout`).

use std::sync::Arc;
use std::time::Duration;

use getrandom::SysRng;
use keyway_core::link::{CloseReason, Link, LinkConfig};
use keyway_core::rand_core::UnwrapErr;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::address::PeerAddress;
use crate::clock::Clock;
use crate::connection::{self, Handler, LinkHandle};
use crate::error::LinkError;

/// First pause between attempts; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Dials `addr` once: connects, runs the handshake and the proofs, and
/// returns a handle once the peer proved the key `addr` names. Everything
/// within `timeout`.
pub async fn dial(
    config: Arc<LinkConfig>,
    addr: &PeerAddress,
    handler: Arc<dyn Handler>,
    timeout: Duration,
) -> Result<LinkHandle, LinkError> {
    let deadline = Instant::now() + timeout;
    let target = format!("{}:{}", addr.host, addr.port);
    let connect = |why: String| LinkError::Connect {
        addr: target.clone(),
        why,
    };
    let socket = match tokio::time::timeout_at(deadline, TcpStream::connect(&target)).await {
        Err(_) => return Err(LinkError::Timeout),
        Ok(Err(e)) => return Err(connect(e.to_string())),
        Ok(Ok(socket)) => socket,
    };
    // Small frames (acks, 64-byte messages) must not wait for Nagle.
    let _ = socket.set_nodelay(true);
    let clock = Clock::new();
    let link = Link::new_initiator(config, addr.key, clock.now(), &mut UnwrapErr(SysRng));
    let (ready_tx, ready) = oneshot::channel();
    let task = tokio::spawn(connection::run(
        link,
        socket,
        clock,
        handler,
        None,
        Some(ready_tx),
        Arc::default(),
    ));
    match tokio::time::timeout_at(deadline, ready).await {
        Ok(Ok(Ok(handle))) => Ok(handle),
        Ok(Ok(Err(CloseReason::Timeout))) => Err(LinkError::Timeout),
        Ok(Ok(Err(reason))) => Err(LinkError::Closed(reason)),
        Ok(Err(_)) => Err(LinkError::Closed(CloseReason::Internal)),
        Err(_) => {
            task.abort();
            Err(LinkError::Timeout)
        }
    }
}

/// Runs `attempt` (given the time left) until it succeeds, fails for good
/// ([`LinkError::is_final`]), or `total` runs out, pausing with
/// exponential backoff in between. The error reported is the last one
/// that was not merely the time running out, if any: the user learns why
/// the peer could not be reached, not that the clock stopped.
pub async fn with_retries<T, F, Fut>(total: Duration, mut attempt: F) -> Result<T, LinkError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, LinkError>>,
{
    let deadline = Instant::now() + total;
    let mut backoff = FIRST_BACKOFF;
    let mut last_real: Option<LinkError> = None;
    // Bounded by the deadline: at least one backoff per attempt.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last_real.unwrap_or(LinkError::Timeout));
        }
        match tokio::time::timeout(left, attempt(left)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_final() => return Err(e),
            Ok(Err(LinkError::Timeout)) | Err(_) => {}
            Ok(Err(e)) => last_real = Some(e),
        }
        let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use keyway_core::link::Refusal;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_report_the_last_real_reason_not_the_clock() {
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(Duration::from_secs(3), |_| {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(LinkError::Closed(CloseReason::HandshakeFailed))
                } else {
                    Err(LinkError::Timeout)
                }
            }
        })
        .await;
        assert_eq!(result, Err(LinkError::Closed(CloseReason::HandshakeFailed)));
        assert!(tries.load(Ordering::Relaxed) >= 3, "it retried");
    }

    #[tokio::test(start_paused = true)]
    async fn final_errors_stop_at_once_and_success_ends_retrying() {
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = with_retries(Duration::from_secs(60), |_| {
            tries.fetch_add(1, Ordering::Relaxed);
            async { Err(LinkError::Refused(Refusal::NotAuthorized)) }
        })
        .await;
        assert_eq!(result, Err(LinkError::Refused(Refusal::NotAuthorized)));
        assert_eq!(tries.load(Ordering::Relaxed), 1);

        let tries = AtomicU32::new(0);
        let result = with_retries(Duration::from_secs(60), |_| {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 2 {
                    Err(LinkError::Closed(CloseReason::HandshakeFailed))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(2));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_but_timeouts_is_a_timeout() {
        let result: Result<(), _> = with_retries(Duration::from_secs(2), |_| async {
            Err(LinkError::Timeout)
        })
        .await;
        assert_eq!(result, Err(LinkError::Timeout));
    }
}
