//! UDP: one request per datagram, one reply per request, to the datagram's
//! own source (not to a shared "current peer", bug 9), sent once (not 5×,
//! bug 8), and never larger than the datagram that asked for it, so the
//! server cannot be used to amplify traffic at a spoofed victim.

use std::sync::Arc;

use keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use crate::store::NameStore;

pub(crate) async fn serve<S: NameStore>(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared<S>>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    // One byte more than the largest request, to see oversize datagrams.
    let mut buf = vec![0u8; MAX_SEALED_REQUEST + 1];
    loop {
        let (n, source) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux.
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            },
        };
        let handler = &shared.handler;
        if n > MAX_SEALED_REQUEST {
            handler.metrics.dropped("oversize");
            continue;
        }
        if !shared.allow(source.ip()) {
            handler.metrics.dropped("rate_limited");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            handler.metrics.dropped("overloaded");
            continue;
        };
        handler.metrics.key_agreement();
        let datagram = buf[..n].to_vec();
        let (socket, shared) = (socket.clone(), shared.clone());
        tracker.spawn(async move {
            let _permit = permit;
            let handler = &shared.handler;
            let Some(reply) = handler.handle_sealed(&datagram, source.ip()).await else {
                return;
            };
            if reply.len() > datagram.len() {
                // The client's TCP leg gets it; Keyway clients pad UDP GETs.
                handler.metrics.dropped("reply_larger_than_request");
                return;
            }
            if let Err(e) = socket.send_to(&reply, source).await {
                tracing::debug!(error = %e, %source, "udp send");
            }
        });
    }
}
