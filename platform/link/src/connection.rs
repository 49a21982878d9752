//! One link over one TCP connection: the loop that feeds the core's
//! [`Link`] machine with socket bytes and time, writes what it transmits,
//! hands the peer's requests to a [`Handler`] and this side's requests and
//! their answers to a [`LinkHandle`].
//!
//! Deadlines: every read waits at most until the machine's next timeout
//! (the handshake deadline before the proofs, the idle timeout after), and
//! every write at most [`WRITE_TIMEOUT`]; a peer that stops reading is
//! closed as [`CloseReason::Timeout`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use keyway_core::PublicKey;
use keyway_core::link::{
    CloseReason, Event, Link, MAX_WIRE_FRAME, Refusal, RequestId, SendError, Service,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;

/// The longest one socket write may take before the peer counts as
/// stalled.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames gathered into one socket write (small messages: one syscall for
/// many frames).
const WRITE_BATCH: usize = 256 * 1024;
/// Bytes read from the socket at once: several of the largest frames, so
/// bulk transfers take few syscalls and few frames straddle two reads
/// (each straddling frame is copied once more by the machine).
const READ_CHUNK: usize = 256 * 1024;
/// This side's requests waiting to be queued into the machine.
const COMMAND_QUEUE: usize = 64;

/// Serves the peer's (authorized) requests on a link.
pub trait Handler: Send + Sync + 'static {
    /// Answers `service` request `body` from `peer` (whose identity is
    /// proven and whose capability the machine already checked): the
    /// response body, or a refusal.
    fn handle(
        &self,
        peer: PublicKey,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>>;
}

/// A handler that serves nothing (a dialer that only asks).
#[derive(Debug, Clone, Copy)]
pub struct NoService;

impl Handler for NoService {
    fn handle(
        &self,
        _peer: PublicKey,
        _service: Service,
        _body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        Box::pin(async { Err(Refusal::UnknownService) })
    }
}

/// Why a request on a link got no answer.
// `CloseReason` carries two public keys (WrongPeerIdentity); errors are
// rare and short-lived, so boxing would only make matching clumsy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The peer refused it (`not authorized`, busy, …); no data came.
    #[error("{0}")]
    Refused(Refusal),
    /// The link closed first.
    #[error("{0}")]
    Closed(CloseReason),
    /// The machine would not queue it.
    #[error("{0}")]
    Send(SendError),
}

struct Command {
    service: Service,
    body: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
}

/// This side's end of a running link: send requests, learn how it ended.
/// Dropping every handle closes the link once its requests are answered.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
    peer: PublicKey,
}

impl LinkHandle {
    /// The peer's proven identity.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, service: Service, body: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        let (reply, answer) = oneshot::channel();
        let closed = || RequestError::Closed(CloseReason::Local);
        self.commands
            .send(Command {
                service,
                body,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// The application's answer to one of the peer's requests, on its way.
type Answer = BoxFuture<'static, (RequestId, Result<Vec<u8>, Refusal>)>;

/// Bytes a link moved on its socket, for a status page.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Read from the peer.
    pub bytes_in: AtomicU64,
    /// Written to the peer.
    pub bytes_out: AtomicU64,
}

/// How a link's setup went, reported once.
pub(crate) type Ready = oneshot::Sender<Result<LinkHandle, CloseReason>>;

/// Hooks a node gives its links.
pub(crate) trait Observer: Send + Sync {
    /// The peer proved `peer`; `false` closes the link (a blocklisted
    /// identity).
    fn connected(&self, peer: &PublicKey) -> bool;
}

/// Runs `link` over `socket` until it closes; returns why, with the
/// identity the peer proved (if it got that far). `ready` hears once, when
/// the proofs are done (a handle) or the link closed before.
pub(crate) async fn run<S>(
    mut link: Link,
    socket: S,
    clock: Clock,
    handler: Arc<dyn Handler>,
    observer: Option<Arc<dyn Observer>>,
    mut ready: Option<Ready>,
    traffic: Arc<Traffic>,
) -> (CloseReason, Option<PublicKey>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(socket);
    let (commands_tx, mut commands) = mpsc::channel::<Command>(COMMAND_QUEUE);
    let mut commands_tx = Some(commands_tx);
    let mut commands_open = true;
    // A dialer's link lives while someone holds its handle; an acceptor's
    // while the peer keeps it (up to the idle timeout).
    let handed_out = ready.is_some();
    let mut pending: HashMap<RequestId, oneshot::Sender<Result<Vec<u8>, RequestError>>> =
        HashMap::new();
    let mut answering: FuturesUnordered<Answer> = FuturesUnordered::new();
    // The machine writes each frame straight into the batch (no copy):
    // `out[..filled]` is pending, and a frame always has a whole
    // MAX_WIRE_FRAME of room behind it.
    let mut out = vec![0u8; WRITE_BATCH + MAX_WIRE_FRAME];
    let mut filled = 0;
    let mut inbuf = vec![0u8; READ_CHUNK];

    loop {
        // Everything the machine wants to send, in batches.
        let now = clock.now();
        while let Some(n) = link.poll_transmit(now, &mut out[filled..]) {
            filled += n;
            if filled >= WRITE_BATCH {
                if !flush(&mut writer, &out[..filled], &traffic).await {
                    link.close(CloseReason::Timeout);
                }
                filled = 0;
            }
        }
        if filled > 0 && !flush(&mut writer, &out[..filled], &traffic).await {
            link.close(CloseReason::Timeout);
        }
        filled = 0;

        while let Some(event) = link.poll_event() {
            match event {
                Event::Connected { peer } => {
                    if let Some(observer) = &observer
                        && !observer.connected(&peer)
                    {
                        link.close(CloseReason::Local);
                        continue;
                    }
                    if let (Some(ready), Some(tx)) = (ready.take(), commands_tx.take()) {
                        let _ = ready.send(Ok(LinkHandle { commands: tx, peer }));
                    } else {
                        // No one asks through this link: its command queue
                        // closes with the sender dropped here.
                        commands_tx = None;
                    }
                }
                Event::Request { id, service, body } => {
                    let peer = link.peer_identity().copied();
                    let Some(peer) = peer else {
                        let _ = link.refuse(id, Refusal::Failed);
                        continue;
                    };
                    let answer = handler.handle(peer, service, body);
                    answering.push(Box::pin(async move { (id, answer.await) }));
                }
                Event::Response { id, body } => {
                    if let Some(reply) = pending.remove(&id) {
                        let _ = reply.send(Ok(body));
                    }
                }
                Event::Refused { id, reason } => {
                    if let Some(reply) = pending.remove(&id) {
                        let _ = reply.send(Err(RequestError::Refused(reason)));
                    }
                }
                Event::Closed(_) => {}
            }
        }

        if let Some(reason) = link.close_reason() {
            for (_, reply) in pending.drain() {
                let _ = reply.send(Err(RequestError::Closed(reason)));
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(reason));
            }
            let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.shutdown()).await;
            return (reason, link.peer_identity().copied());
        }
        // Nobody holds the handle any more and nothing is in flight: done.
        if handed_out
            && ready.is_none()
            && !commands_open
            && pending.is_empty()
            && answering.is_empty()
        {
            link.close(CloseReason::Local);
            continue;
        }

        let deadline = link.poll_timeout().map(|at| clock.deadline(at));
        let reading = link.wants_input();
        tokio::select! {
            read = reader.read(&mut inbuf), if reading => match read {
                Ok(0) => link.handle_eof(clock.now()),
                Ok(n) => {
                    traffic.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    link.handle_input(clock.now(), &inbuf[..n]);
                }
                Err(_) => link.handle_eof(clock.now()),
            },
            () = sleep_until(deadline) => link.handle_timeout(clock.now()),
            command = commands.recv(), if commands_open => match command {
                Some(command) => {
                    queue(&mut link, &mut pending, command);
                    // Whatever else is waiting goes out in the same write.
                    for _ in 1..COMMAND_QUEUE {
                        let Ok(command) = commands.try_recv() else { break };
                        queue(&mut link, &mut pending, command);
                    }
                }
                None => commands_open = false,
            },
            Some((id, answer)) = answering.next(), if !answering.is_empty() => {
                answer_peer(&mut link, id, answer);
                // Answers already done go out in the same write.
                while let Some(Some((id, answer))) = answering.next().now_or_never() {
                    answer_peer(&mut link, id, answer);
                }
            }
        }
    }
}

/// Queues one of this side's requests into the machine.
fn queue(
    link: &mut Link,
    pending: &mut HashMap<RequestId, oneshot::Sender<Result<Vec<u8>, RequestError>>>,
    Command {
        service,
        body,
        reply,
    }: Command,
) {
    match link.send_request(service, body) {
        Ok(id) => {
            pending.insert(id, reply);
        }
        Err(e) => {
            let _ = reply.send(Err(RequestError::Send(e)));
        }
    }
}

/// Queues the application's answer to the peer's request `id`.
fn answer_peer(link: &mut Link, id: RequestId, answer: Result<Vec<u8>, Refusal>) {
    // The link may have closed meanwhile; a refused send is moot.
    let _ = match answer {
        Ok(body) => link.send_response(id, body),
        Err(reason) => link.refuse(id, reason),
    };
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes `out` within [`WRITE_TIMEOUT`]; false if the peer did not take it.
async fn flush<W: AsyncWrite + Unpin>(writer: &mut W, out: &[u8], traffic: &Traffic) -> bool {
    let written = tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(out)).await;
    let done = matches!(written, Ok(Ok(())));
    if done {
        traffic
            .bytes_out
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    done
}
