//! TCP: the stream is unframed (spec §4.2), so bytes accumulate in a
//! [`SealedStream`] until the MAC says a request is complete; several
//! requests may share a connection. A connection is closed on garbage, on
//! an idle timeout, or when the server shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::namebump::stream::{MAX_SEALED_REQUEST, SealedStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::store::NameStore;

pub(crate) async fn serve<S: NameStore>(
    listener: TcpListener,
    shared: Arc<Shared<S>>,
    connections: Arc<Semaphore>,
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
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            shared.handler.metrics.dropped("too_many_connections");
            continue;
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, peer, &shared, &shutdown).await {
                tracing::debug!(error = %e, %peer, "tcp connection");
            }
        });
    }
}

async fn connection<S: NameStore>(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared<S>,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let handler = &shared.handler;
    let mut framer = SealedStream::new();
    let mut plaintext = vec![0u8; MAX_SEALED_REQUEST];
    loop {
        loop {
            let request = match framer.next_message(&handler.key, &mut plaintext) {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(_) => {
                    handler.metrics.dropped("unframeable_stream");
                    return Ok(());
                }
            };
            if !shared.allow(peer.ip()) {
                handler.metrics.dropped("rate_limited");
                continue;
            }
            if let Some(reply) = handler.handle(request, peer.ip()).await {
                // One write per reply: a reference client reads one chunk.
                stream.write_all(&reply).await?;
            }
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(shared.config.tcp_idle_timeout, stream.read(framer.spare())) => r,
        };
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => framer.filled(n),
            Ok(Err(e)) => return Err(e),
        }
    }
}
