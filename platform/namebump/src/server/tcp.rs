//! TCP: the stream is unframed (spec §4.2), so bytes accumulate in a
//! [`SealedStream`] until the MAC says a request is complete; several
//! requests may share a connection.
//!
//! No peer can hold a connection for free: each request must arrive whole
//! within `tcp_request_timeout` of the accept or of the previous reply (a
//! deadline, not an idle timer that every trickled byte restarts), each
//! reply must be taken within `tcp_write_timeout`, and the connection
//! table caps what one source may hold. The per-source rate limit is
//! charged before each message's ECDH, as for a datagram; a connection
//! over the limit is closed (its bytes cannot be skipped unread: only the
//! MAC says where the message ends). A connection is also closed on
//! garbage, on eviction and when the server shuts down.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::namebump::tcp_framing::{MAX_SEALED_REQUEST, SealedStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::connections::{ConnectionTable, Slot};
use crate::store::NameStore;

pub(crate) async fn serve<S: NameStore>(
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    connections: Arc<ConnectionTable>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = &shared.handler.metrics;
        let slot = match connections.admit(peer.ip(), &shutdown) {
            Ok(slot) => slot,
            Err(refused) => {
                metrics.dropped(refused.reason());
                continue;
            }
        };
        if slot.evicted_another {
            metrics.dropped("connection_evicted");
        }
        metrics.tcp_connection(1);
        let shared = shared.clone();
        tracker.spawn(async move {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, %peer, "tcp nodelay");
            }
            if let Err(e) = connection(stream, peer.ip(), &shared, &slot).await {
                tracing::debug!(error = %e, %peer, "tcp connection");
            }
            drop(slot);
            shared.handler.metrics.tcp_connection(-1);
        });
    }
}

/// Serves one connection until the peer closes it, a deadline passes, the
/// source's rate limit is hit, garbage arrives or the slot is stopped.
async fn connection<S, T>(
    mut stream: T,
    source: IpAddr,
    shared: &Shared<S>,
    slot: &Slot,
) -> std::io::Result<()>
where
    S: NameStore,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let stop = &slot.stop;
    let handler = &shared.handler;
    let config = &shared.config;
    let mut framer = SealedStream::new();
    let mut plaintext = vec![0u8; MAX_SEALED_REQUEST];
    let mut deadline = Instant::now() + config.tcp_request_timeout;
    loop {
        loop {
            if framer.needs_key_agreement() {
                if !shared.allow(source) {
                    handler.metrics.dropped("rate_limited");
                    return Ok(());
                }
                handler.metrics.key_agreement();
            }
            let request = match framer.next_message(&handler.key, &mut plaintext) {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(_) => {
                    handler.metrics.dropped("unframeable_stream");
                    return Ok(());
                }
            };
            if let Some(reply) = handler.handle(request, source).await {
                // One write per reply: a reference client reads one chunk.
                let write =
                    tokio::time::timeout(config.tcp_write_timeout, stream.write_all(&reply));
                match tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    r = write => r,
                } {
                    Ok(written) => written?,
                    Err(_) => {
                        handler.metrics.dropped("tcp_write_timeout");
                        return Ok(());
                    }
                }
            }
            // Answered: from now on it may be evicted before connections
            // still waiting for their first reply.
            slot.mark_served();
            deadline = Instant::now() + config.tcp_request_timeout;
        }
        let read = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            r = tokio::time::timeout_at(deadline, stream.read(framer.spare())) => r,
        };
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => framer.filled(n),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                if framer.buffered() > 0 {
                    handler.metrics.dropped("tcp_request_timeout");
                }
                return Ok(());
            }
        }
    }
}
