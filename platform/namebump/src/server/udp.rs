//! UDP: one request per datagram, one reply per request, to the datagram's
//! own source (not to a shared "current peer", bug 9), sent once (not 5×,
//! bug 8), and never larger than the datagram that asked for it, so the
//! server cannot be used to amplify traffic at a spoofed victim.
//!
//! Each socket has one receive loop per runtime worker (`serve` is started
//! that many times), so the decryption and signature check of one request
//! run in the loop that received it while the other loops receive.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST;
use socket2::SockRef;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Metrics, Shared};
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
        let (socket, handler) = (socket.clone(), handler.clone());
        // The permit and a tracker token go with the reply: a request counts
        // as in flight, and shutdown waits for it, until its reply is sent or
        // dropped, wherever that happens (on SQLite, the writer thread).
        let token = tracker.token();
        let mut work = Box::pin(async move {
            let metrics = handler.metrics.clone();
            let limit = datagram.len();
            let send = move |reply: Vec<u8>| {
                let _in_flight = (permit, token);
                send_reply(&socket, source, limit, &metrics, &reply);
            };
            handler
                .handle_sealed_then(&datagram, source.ip(), send)
                .await;
        });
        // Worked on here until it first waits (issue 12, CPU per request):
        // a PUT on SQLite never does (the writer thread finishes it), so it
        // costs no task and no wake-up of another worker. One that waits (a
        // database round trip) goes on in a task of its own; it re-registers
        // its wake-ups when first polled there.
        let waiting =
            std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx).is_pending())).await;
        if waiting {
            tracker.spawn(work);
        }
    }
}

/// Sends a reply without waiting: it may run on the store's writer thread
/// (`Handler::handle_sealed_then`), which must never stall on one client.
/// A full socket buffer drops the reply, as the network might; the client
/// asks again.
fn send_reply(
    socket: &UdpSocket,
    to: SocketAddr,
    request_len: usize,
    metrics: &Metrics,
    reply: &[u8],
) {
    if reply.len() > request_len {
        // The client's TCP leg gets it; Keyway clients pad UDP GETs.
        metrics.dropped("reply_larger_than_request");
        return;
    }
    if let Err(e) = SockRef::from(socket).send_to(reply, &to.into()) {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            metrics.dropped("udp_send_buffer_full");
        }
        tracing::debug!(error = %e, %to, "udp send");
    }
}
