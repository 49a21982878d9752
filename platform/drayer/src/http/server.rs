//! The HTTP sync API's server (feature `server`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use blake2::{Blake2b, Digest, digest::consts::U32};
use http_body::{Frame, SizeHint};
use keyway_core::drayer::VerifyingKey;
use rusqlite::{Connection, params};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::file_record;
use crate::sqlite::{ChainError, Listing, Located, MAIN_CHAIN, locate, nth_newest_modified};
use crate::stream::{Stream, StreamError, parse_public_key};
use crate::sync::PAGE;
use crate::wire;

/// Most value bytes in one `newRecords` page.
pub const PAGE_BYTES: usize = 32 * 1024 * 1024;

/// Records per JSON listing (the original's limit).
const LIST_LIMIT: usize = 250;

/// Bytes of JSON a listing stops after (at least one row): only keys of
/// many KiB reach it; the client pages on with `after`/`before`.
const LIST_BYTES: usize = 1024 * 1024;

/// The pieces a streamed response is sent in.
pub const CHUNK: usize = 64 * 1024;

/// Idle read-only connections kept per stream.
const IDLE_READERS: usize = 8;

/// Page cache of each reader connection, KiB (SQLite's default is 2,000).
const READER_CACHE_KIB: i64 = 1024;

/// Longest `file` header read (the original's holds `time` and `enc`).
const MAX_FILE_HEADER: usize = 64 * 1024;

/// How much the server takes on at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests served at once (each holds one read-only connection and a
    /// blocking thread while it streams).
    pub max_requests: usize,
    /// Requests waiting for a turn; any more are answered 503 at once.
    pub max_queued: usize,
    /// Longest wait for a turn before 503. Keep it below `send_timeout`:
    /// a waiting request's connection is idle meanwhile.
    pub queue_wait: Duration,
    /// Longest a client may take to accept the next [`CHUNK`] of a
    /// response before the connection is dropped.
    pub send_timeout: Duration,
    /// Longest a request head may take to arrive, counted from when the
    /// connection is ready for it (accepted, or the previous response
    /// sent): a keep-alive connection idle for longer is closed too.
    pub head_timeout: Duration,
    /// Connections open at once; any more are closed as accepted.
    pub max_connections: usize,
    /// Connections open at once from one source address (IPv6: one /64).
    pub max_per_source: usize,
    /// Slowest average a response may be taken at, bytes per second: a
    /// response must end within `max(min_response_time, len / min_rate)`
    /// of its first byte, or the connection is dropped.
    pub min_rate: u64,
    /// See `min_rate`.
    pub min_response_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: 32,
            max_queued: 64,
            queue_wait: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_per_source: 16,
            min_rate: 64 * 1024,
            min_response_time: Duration::from_secs(60),
        }
    }
}

/// One served stream: its file, and read-only connections to it.
struct Served {
    path: PathBuf,
    public: VerifyingKey,
    idle: Mutex<Vec<Stream>>,
    /// The caller's connection, kept open so the file stays in WAL mode
    /// with its `-wal` and `-shm` in place; never used to read.
    _held: Mutex<Stream>,
}

impl Served {
    /// Runs `f` in one read transaction on a reader of its own.
    fn read<T>(&self, f: impl FnOnce(&Stream) -> Result<T, Stop>) -> Result<T, Stop> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reader = match taken {
            Some(reader) => reader,
            None => {
                let reader = Stream::open_read_only(&self.path)?;
                reader
                    .connection()
                    .pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                reader
            }
        };
        let result = {
            // Deferred: the snapshot is taken by the first read and kept
            // to the end, however slowly the client takes the response.
            let tx = reader.connection().unchecked_transaction()?;
            let result = f(&reader);
            drop(tx);
            result
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
        result
    }
}

struct Server {
    streams: HashMap<[u8; 32], Arc<Served>>,
    send_timeout: Duration,
}

type Shared = Arc<Server>;

/// The API over `streams`, keyed by their public keys, with the default
/// [`Limits`].
pub fn router(streams: Vec<Stream>) -> Router {
    router_with(streams, Limits::default())
}

/// The API over `streams` within `limits`.
pub fn router_with(streams: Vec<Stream>, limits: Limits) -> Router {
    let map: HashMap<[u8; 32], Arc<Served>> = streams
        .into_iter()
        .map(|s| {
            let served = Served {
                path: s.path().to_owned(),
                public: *s.public_key(),
                idle: Mutex::new(Vec::new()),
                _held: Mutex::new(s),
            };
            (*served.public.as_bytes(), Arc::new(served))
        })
        .collect();
    let gate = Arc::new(Gate {
        permits: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        queued: AtomicUsize::new(0),
        max_queued: limits.max_queued,
        wait: limits.queue_wait,
        min_rate: limits.min_rate,
        min_time: limits.min_response_time,
    });
    Router::new()
        .route("/", get(|| async { "Hello World!" }))
        .route("/{pk}/newRecords/{t}", get(new_records))
        .route("/{pk}/crdr/{t}", get(crdr))
        .route("/{pk}/newest/{n}", get(newest))
        .route("/{pk}/newestRecordsJSON/{kind}", get(newest_json))
        .route("/{pk}/listRecordsJSON/{kind}", get(list_json))
        .route("/{pk}/webAccess/{*path}", get(web_access))
        .with_state(Arc::new(Server {
            streams: map,
            send_timeout: limits.send_timeout,
        }))
        .layer(middleware::from_fn_with_state(gate, admit))
}

/// A listener that caps connections, in all and per source address (an
/// IPv6 source counts by its /64, which one host usually holds whole),
/// closing any more as they are accepted; its connections are closed
/// when neither direction makes progress for `idle` ([`Limits::send_timeout`])
/// while the server is not working on a request, or when a response is
/// overdue at [`Limits::min_rate`]. Serve it with [`serve`], which also
/// puts a deadline on every request head; `axum::serve` gets the caps
/// and the idle timeout only.
#[derive(Debug)]
pub struct DeadlineListener {
    inner: tokio::net::TcpListener,
    idle: Duration,
    head_timeout: Duration,
    max_connections: usize,
    max_per_source: usize,
    open: Arc<Mutex<Open>>,
}

/// Connections open now, in all and per source.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Only sources with connections open: at most `max_connections`.
    per_source: HashMap<std::net::IpAddr, usize>,
}

/// The address connections are counted under: an IPv6 source by its /64.
fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

/// A connection's place in [`Open`], given back when it closes.
#[derive(Debug)]
struct Place {
    open: Arc<Mutex<Open>>,
    key: std::net::IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_source.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_source.remove(&self.key);
            }
        }
    }
}

/// What the server tells a connection: whether it is working on a
/// request (the client is not silent then, the server is), and by when
/// the response being sent must be done.
#[derive(Debug, Default)]
struct ConnState {
    working: AtomicUsize,
    due: Mutex<Option<tokio::time::Instant>>,
}

/// The request extension through which [`admit`] finds its connection.
#[derive(Clone, Debug)]
struct Conn(Arc<ConnState>);

impl DeadlineListener {
    /// [`Limits::default`] with `idle` as the send timeout.
    pub fn new(inner: tokio::net::TcpListener, idle: Duration) -> Self {
        let limits = Limits {
            send_timeout: idle,
            ..Limits::default()
        };
        Self::with_limits(inner, &limits)
    }

    pub fn with_limits(inner: tokio::net::TcpListener, limits: &Limits) -> Self {
        Self {
            inner,
            idle: limits.send_timeout,
            head_timeout: limits.head_timeout,
            max_connections: limits.max_connections.max(1),
            max_per_source: limits.max_per_source.max(1),
            open: Arc::new(Mutex::new(Open::default())),
        }
    }

    fn place(&self, ip: std::net::IpAddr) -> Option<Place> {
        let key = source_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_source = open.per_source.get(&key).copied().unwrap_or(0);
        if open.total >= self.max_connections || from_source >= self.max_per_source {
            return None;
        }
        open.total += 1;
        *open.per_source.entry(key).or_insert(0) += 1;
        Some(Place {
            open: self.open.clone(),
            key,
        })
    }
}

/// Serves `router` on `listener`: HTTP/1.1, each request head within
/// [`Limits::head_timeout`] of the connection being ready for it.
pub async fn serve(mut listener: DeadlineListener, router: Router) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let head_timeout = listener.head_timeout;
    loop {
        let (io, _) = axum::serve::Listener::accept(&mut listener).await;
        let state = io.state.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: Request<_>| {
            /// Ends the server's turn however the handler ends.
            struct Working(Arc<ConnState>);
            impl Drop for Working {
                fn drop(&mut self) {
                    self.0.working.fetch_sub(1, Ordering::Relaxed);
                }
            }
            state.working.fetch_add(1, Ordering::Relaxed);
            *state.due.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let working = Working(state.clone());
            request.extensions_mut().insert(Conn(state.clone()));
            let response = hyper::service::Service::call(&service, request);
            async move {
                let response = response.await;
                drop(working);
                response
            }
        });
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout);
            if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
                tracing::debug!(error = %e, "drayer connection ended");
            }
        });
    }
}

impl axum::serve::Listener for DeadlineListener {
    type Io = Deadlined;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Deadlined, std::net::SocketAddr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let Some(place) = self.place(addr.ip()) else {
                // Closed at once: a refusal the client sees, and no
                // socket kept for it.
                tracing::debug!(%addr, "drayer connection refused: too many open");
                drop(io);
                continue;
            };
            let timer = Box::pin(tokio::time::sleep(self.idle));
            let io = Deadlined {
                inner: io,
                idle: self.idle,
                timer,
                armed: false,
                due_timer: Box::pin(tokio::time::sleep(self.idle)),
                state: Arc::new(ConnState::default()),
                _place: place,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails with `TimedOut` once reads and writes have
/// both waited `idle` without moving a byte while the server was not
/// working on a request, or once its response is overdue.
#[derive(Debug)]
pub struct Deadlined {
    inner: tokio::net::TcpStream,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer runs from the first wait since the last progress.
    armed: bool,
    /// Wakes a waiting write when the response falls due.
    due_timer: Pin<Box<tokio::time::Sleep>>,
    state: Arc<ConnState>,
    _place: Place,
}

impl Deadlined {
    /// Only bytes moved count: an empty flush (which hyper does on every
    /// turn) must not restart the timer.
    fn moved<T>(&mut self, bytes: usize, ready: std::io::Result<T>) -> Poll<std::io::Result<T>> {
        if bytes > 0 {
            self.armed = false;
        }
        Poll::Ready(ready)
    }

    /// A write that moved bytes, unless the response is overdue.
    fn wrote<T>(&mut self, bytes: usize, ready: std::io::Result<T>) -> Poll<std::io::Result<T>> {
        if self.overdue() {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        self.moved(bytes, ready)
    }

    fn overdue(&self) -> bool {
        let due = *self.state.due.lock().unwrap_or_else(|e| e.into_inner());
        due.is_some_and(|due| tokio::time::Instant::now() >= due)
    }

    /// A write that waits, unless the response is overdue; it wakes when
    /// it falls due.
    fn write_waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        if self.overdue() {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        let due = *self.state.due.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(due) = due {
            if self.due_timer.deadline() != due {
                self.due_timer.as_mut().reset(due);
            }
            if self.due_timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        self.waiting(cx)
    }

    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        // Bounded: a turn either ends, or re-arms the timer for `idle`
        // from now, which then pends.
        for _ in 0..4 {
            if !self.armed {
                self.armed = true;
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.idle);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // The server is working on a request: its silence, not
                // the client's. Wait on.
                Poll::Ready(()) if self.state.working.load(Ordering::Relaxed) > 0 => {
                    self.armed = false;
                }
                Poll::Ready(()) => return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
            }
        }
        Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
    }
}

impl tokio::io::AsyncRead for Deadlined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => this.moved(buf.filled().len() - before, r),
            Poll::Pending => this.waiting(cx),
        }
    }
}

impl tokio::io::AsyncWrite for Deadlined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.wrote(*r.as_ref().unwrap_or(&0), r),
            Poll::Pending => this.write_waiting(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.wrote(*r.as_ref().unwrap_or(&0), r),
            Poll::Pending => this.write_waiting(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.wrote(0, r),
            Poll::Pending => this.write_waiting(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(r) => this.wrote(0, r),
            Poll::Pending => this.write_waiting(cx),
        }
    }
}

/// The bound on requests in progress and waiting.
struct Gate {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    wait: Duration,
    min_rate: u64,
    min_time: Duration,
}

impl Gate {
    async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        /// Leaves the queue however the wait ends (a client that goes
        /// away drops the future).
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let ahead = self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.queued);
        if ahead >= self.max_queued {
            return None;
        }
        tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// Admits a request when there is room: its turn lasts until its
/// response has been sent or dropped.
async fn admit(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let Some(permit) = gate.turn().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy\n",
        )
            .into_response();
    };
    let conn = request.extensions().get::<Conn>().cloned();
    let response = next.run(request).await;
    if let Some(Conn(state)) = conn {
        // Sent at `min_rate` or within `min_time`, whichever is longer:
        // a client taking it slower holds no turn, thread or snapshot
        // for hours.
        let len = http_body::Body::size_hint(response.body());
        let len = len.exact().unwrap_or(len.lower());
        let millis = len.saturating_mul(1000) / gate.min_rate.max(1);
        let allowed = gate.min_time.max(Duration::from_millis(millis));
        *state.due.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::time::Instant::now() + allowed);
    }
    response.map(|body| {
        HttpBody::new(Permitted {
            body,
            _permit: permit,
        })
    })
}

/// A response body that holds its request's turn.
struct Permitted {
    body: HttpBody,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body fed chunk by chunk from a blocking reader, of a length known
/// before the first byte: a reader that stops early is an error (the
/// connection is dropped), not a short response.
struct Streamed {
    chunks: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    left: u64,
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.left = self.left.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.left == 0 => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                "the response was cut short",
            )))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Why a streamed response stopped.
#[derive(Debug)]
enum Stop {
    /// The client left or did not take a chunk in time.
    Gone,
    NotFound(&'static str),
    Failed(String),
}

impl From<StreamError> for Stop {
    fn from(e: StreamError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<ChainError> for Stop {
    fn from(e: ChainError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<rusqlite::Error> for Stop {
    fn from(e: rusqlite::Error) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Self::Failed(e.to_string())
    }
}

/// How a streamed response starts.
enum Start {
    Body {
        len: u64,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    Stopped(Stop),
}

/// The reading side of a streamed response, on a blocking thread.
struct Sink {
    start: Option<oneshot::Sender<Start>>,
    chunks: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    /// Bytes promised and not yet written.
    left: u64,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl Sink {
    /// Promises `len` bytes: the status line and headers go out.
    fn begin(&mut self, len: u64, headers: Vec<(HeaderName, HeaderValue)>) -> Result<(), Stop> {
        let start = self
            .start
            .take()
            .ok_or(Stop::Failed("begun twice".into()))?;
        self.left = len;
        start
            .send(Start::Body { len, headers })
            .map_err(|_| Stop::Gone)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let len = bytes.len() as u64;
        if self.start.is_some() || len > self.left {
            return Err(Stop::Failed("a response outgrew its length".into()));
        }
        self.left -= len;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the buffered bytes to the connection, waiting at most the
    /// send timeout for the client to take the previous chunk.
    fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let sent = self.runtime.block_on(tokio::time::timeout(
            self.timeout,
            self.chunks.send(Ok(chunk)),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            _ => Err(Stop::Gone),
        }
    }

    /// Copies exactly `len` bytes of `from`.
    fn copy(&mut self, from: &mut impl Read, len: u64) -> Result<(), Stop> {
        let mut piece = vec![0; CHUNK];
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let n = from.read(&mut piece[..want])?;
            if n == 0 {
                return Err(Stop::Failed("a value ended early".into()));
            }
            self.write(&piece[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Ends the response: whatever is buffered, or the reason it stopped
    /// (before the first byte: the status; after: a dropped connection).
    fn end(mut self, result: Result<(), Stop>) {
        let result = result.and_then(|()| self.flush());
        let stop = match result {
            Ok(()) if self.start.is_none() && self.left == 0 => return,
            Ok(()) => Stop::Failed("a response fell short of its length".into()),
            Err(stop) => stop,
        };
        match &stop {
            Stop::Gone => tracing::debug!("drayer client left or was too slow"),
            Stop::NotFound(_) => {}
            Stop::Failed(e) => tracing::warn!(error = %e, "drayer request failed"),
        }
        if let Some(start) = self.start.take() {
            let _ = start.send(Start::Stopped(stop));
        } else {
            let _ = self
                .chunks
                .try_send(Err(std::io::Error::other("the response failed")));
        }
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "drayer request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

/// The stream named by `pk`, if served.
fn served(server: &Shared, pk: &str) -> Option<Arc<Served>> {
    let key = parse_public_key(pk).ok()?;
    server.streams.get(key.as_bytes()).cloned()
}

/// Runs `produce` on the stream named by `pk`, on a blocking thread in
/// one read transaction, and streams what it writes.
async fn streamed(
    server: &Shared,
    pk: &str,
    produce: impl FnOnce(&Connection, &VerifyingKey, &mut Sink) -> Result<(), Stop> + Send + 'static,
) -> Response {
    let Some(served) = served(server, pk) else {
        return not_found("no such stream");
    };
    let (start, started) = oneshot::channel();
    // One chunk waits while the connection writes the one before.
    let (chunks, receiver) = mpsc::channel(1);
    let mut sink = Sink {
        start: Some(start),
        chunks,
        buf: Vec::with_capacity(CHUNK),
        left: 0,
        timeout: server.send_timeout,
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || {
        let public = served.public;
        let result = served.read(|reader| produce(reader.connection(), &public, &mut sink));
        sink.end(result);
    });
    match started.await {
        Ok(Start::Body { len, headers }) => {
            let mut response = Response::new(HttpBody::new(Streamed {
                chunks: receiver,
                left: len,
            }));
            response.headers_mut().extend(headers);
            response
        }
        Ok(Start::Stopped(Stop::NotFound(what))) => not_found(what),
        Ok(Start::Stopped(Stop::Failed(e))) => server_error(e),
        Ok(Start::Stopped(Stop::Gone)) | Err(_) => server_error("the reader stopped"),
    }
}

/// Runs `f` on a reader of the stream named by `pk`, off the async threads.
async fn with_stream<T: Send + 'static>(
    server: &Shared,
    pk: &str,
    f: impl FnOnce(&Stream) -> Result<T, StreamError> + Send + 'static,
) -> Result<T, Response> {
    let served = served(server, pk).ok_or_else(|| not_found("no such stream"))?;
    let read = tokio::task::spawn_blocking(move || served.read(|s| Ok(f(s)?)));
    match read.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Stop::NotFound(what))) => Err(not_found(what)),
        Ok(Err(e)) => Err(server_error(format!("{e:?}"))),
        Err(e) => Err(server_error(e)),
    }
}

fn octet_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    )]
}

/// A record's encoded length with `value_len` bytes of value (`None`:
/// without `val`).
fn encoded_len(
    scratch: &mut Vec<u8>,
    row: &Located,
    value_len: Option<u64>,
    stream: &VerifyingKey,
) -> u64 {
    scratch.clear();
    let len = value_len.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    wire::encode_head(scratch, &row.meta, &row.kind, &row.key, len);
    wire::encode_tail(scratch, &row.meta, stream);
    scratch.len() as u64 + value_len.unwrap_or(0)
}

/// Writes one record, its value read from the file in pieces.
fn write_record(
    conn: &Connection,
    sink: &mut Sink,
    row: &Located,
    with_values: bool,
    stream: &VerifyingKey,
) -> Result<(), Stop> {
    let value_len = row.value_len.filter(|_| with_values);
    let mut part = Vec::new();
    let len = value_len.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    wire::encode_head(&mut part, &row.meta, &row.kind, &row.key, len);
    sink.write(&part)?;
    if let Some(len) = value_len {
        let mut blob = conn.blob_open("main", "record", "value", row.rowid, true)?;
        sink.copy(&mut blob, len)?;
    }
    part.clear();
    wire::encode_tail(&mut part, &row.meta, stream);
    sink.write(&part)
}

/// An array of the records matching `condition` (over `?1` the main
/// chain and `?2` `arg`), `count` of them (as a first pass found).
fn write_records(
    conn: &Connection,
    sink: &mut Sink,
    (condition, arg, count): (&str, i64, usize),
    with_values: bool,
    stream: &VerifyingKey,
) -> Result<(), Stop> {
    let mut header = Vec::new();
    let _ = rmp::encode::write_array_len(&mut header, u32::try_from(count).unwrap_or(0));
    sink.write(&header)?;
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    locate(
        conn,
        condition,
        params![MAIN_CHAIN, arg, limit],
        |row: Located| write_record(conn, sink, &row, with_values, stream),
    )
}

/// The msgpack array header's length for `count` records.
fn array_header_len(count: usize) -> u64 {
    match count {
        0..16 => 1,
        16..65_536 => 3,
        _ => 5,
    }
}

#[derive(serde::Deserialize)]
struct Values {
    /// `values=0`: leave values out (metadata-only mirrors, spec §9).
    values: Option<u8>,
}

/// Records kept in a page whose values are `lens` long: at most
/// [`PAGE_BYTES`] of values, always one record. A page of large files
/// must not be gigabytes; Keyway clients ask again until a page is
/// empty, an original client stops at a short page and gets the rest at
/// its next sync.
fn page_keep(lens: &[u64]) -> usize {
    let mut bytes = 0u64;
    let keep = lens
        .iter()
        .take_while(|len| {
            let before = bytes;
            bytes = bytes.saturating_add(**len);
            before == 0 || bytes <= PAGE_BYTES as u64
        })
        .count();
    keep.max(1).min(lens.len())
}

async fn new_records(
    State(server): State<Shared>,
    Path((pk, t)): Path<(String, i64)>,
    Query(q): Query<Values>,
) -> Response {
    let with_values = q.values != Some(0);
    streamed(&server, &pk, move |conn, public, sink| {
        const AFTER: &str = "modified > ?2 ORDER BY modified LIMIT ?3";
        // First pass, metadata only: which records, and the length.
        let mut sizes = Vec::with_capacity(PAGE);
        let mut lens = Vec::with_capacity(PAGE);
        let mut scratch = Vec::new();
        let page = i64::try_from(PAGE).unwrap_or(i64::MAX);
        locate(conn, AFTER, params![MAIN_CHAIN, t, page], |row: Located| {
            let value_len = row.value_len.filter(|_| with_values);
            sizes.push(encoded_len(&mut scratch, &row, value_len, public));
            lens.push(value_len.unwrap_or(0));
            Ok::<_, Stop>(())
        })?;
        let keep = page_keep(&lens);
        let len = array_header_len(keep) + sizes[..keep].iter().sum::<u64>();
        sink.begin(len, octet_headers())?;
        write_records(conn, sink, (AFTER, t, keep), with_values, public)
    })
    .await
}

async fn crdr(State(server): State<Shared>, Path((pk, t)): Path<(String, i64)>) -> Response {
    streamed(&server, &pk, move |conn, public, sink| {
        let mut found = None;
        locate(
            conn,
            "prevchange <= ?2 ORDER BY prevchange DESC LIMIT 1",
            params![MAIN_CHAIN, t],
            |row: Located| {
                found = Some(row);
                Ok::<_, Stop>(())
            },
        )?;
        let row = found.ok_or(Stop::NotFound("nothing to repair"))?;
        let len = encoded_len(&mut Vec::new(), &row, row.value_len, public);
        sink.begin(len, octet_headers())?;
        write_record(conn, sink, &row, true, public)
    })
    .await
}

/// Most records `newest` returns at once (the pull machine asks for no
/// more).
pub use keyway_core::drayer::pull::MAX_NEWEST;

/// Keyway's addition: the `n` most recently modified records, oldest
/// first, for partial mirrors (spec D8). The original has no equivalent.
async fn newest(
    State(server): State<Shared>,
    Path((pk, n)): Path<(String, usize)>,
    Query(q): Query<Values>,
) -> Response {
    let n = n.min(MAX_NEWEST);
    let with_values = q.values != Some(0);
    streamed(&server, &pk, move |conn, public, sink| {
        // `modified` is unique in a chain: the n newest are those from
        // the n-th newest on.
        const FROM: &str = "modified >= ?2 ORDER BY modified LIMIT ?3";
        let from = match n {
            0 => i64::MAX,
            n => nth_newest_modified(conn, n)?.unwrap_or(i64::MIN),
        };
        let (mut count, mut len) = (0, 0);
        let mut scratch = Vec::new();
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        locate(
            conn,
            FROM,
            params![MAIN_CHAIN, from, limit],
            |row: Located| {
                count += 1;
                let value_len = row.value_len.filter(|_| with_values);
                len += encoded_len(&mut scratch, &row, value_len, public);
                Ok::<_, Stop>(())
            },
        )?;
        sink.begin(array_header_len(count) + len, octet_headers())?;
        write_records(conn, sink, (FROM, from, count), with_values, public)
    })
    .await
}

#[derive(serde::Deserialize)]
struct Bounds {
    after: Option<i64>,
    before: Option<i64>,
}

/// A JSON string as Python's `json.dumps` writes it (ASCII only).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// `[[key, n], …]` with Python's default separators, stopping after
/// [`LIST_BYTES`].
fn json_pairs(pairs: &[(String, i64)]) -> String {
    let mut out = String::from("[");
    for (k, n) in pairs {
        if out.len() > LIST_BYTES {
            break;
        }
        if out.len() > 1 {
            out.push_str(", ");
        }
        out.push_str(&format!("[{}, {n}]", json_string(k)));
    }
    out.push(']');
    out
}

/// Up to 250 `[key, modified]`, by id descending, ids strictly between
/// `after` and `before` (the README says `[key, id]`; the code sent the
/// modified time, and so do we).
async fn newest_json(
    State(server): State<Shared>,
    Path((pk, kind)): Path<(String, String)>,
    Query(b): Query<Bounds>,
) -> Response {
    let bounds = (b.after.unwrap_or(0), b.before.unwrap_or(1 << 62));
    listing(&server, &pk, kind, bounds, Listing::NewestId).await
}

/// Up to 250 `[key, id]`, by modified descending, ids strictly between
/// `after` and `before`.
async fn list_json(
    State(server): State<Shared>,
    Path((pk, kind)): Path<(String, String)>,
    Query(b): Query<Bounds>,
) -> Response {
    let bounds = (b.after.unwrap_or(0), b.before.unwrap_or(1 << 60));
    listing(&server, &pk, kind, bounds, Listing::NewestModified).await
}

/// Either JSON listing: the second column is the modified time when
/// ordered by id, and the id when ordered by modified time.
async fn listing(
    server: &Shared,
    pk: &str,
    kind: String,
    bounds: (i64, i64),
    order: Listing,
) -> Response {
    let listed = with_stream(server, pk, move |s| {
        let rows = s.listing(&kind, bounds, order, LIST_LIMIT)?;
        let pairs: Vec<(String, i64)> = rows
            .into_iter()
            .map(|(key, id, modified)| match order {
                Listing::NewestId => (key, modified),
                Listing::NewestModified => (key, id),
            })
            .collect();
        Ok(json_pairs(&pairs))
    })
    .await;
    match listed {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(response) => response,
    }
}

/// A value's bytes from `start` for `len`, read from the file.
fn value_range<'c>(
    conn: &'c Connection,
    rowid: i64,
    start: u64,
    len: u64,
) -> Result<std::io::Take<rusqlite::blob::Blob<'c>>, Stop> {
    let mut blob = conn.blob_open("main", "record", "value", rowid, true)?;
    blob.seek(SeekFrom::Start(start))?;
    Ok(blob.take(len))
}

/// A `file` record: gzip passed through to clients that accept it,
/// inflated for the others; the Content-Type guessed from the name (the
/// original always said gzip and text/html: O16). The value is checked
/// against its signed hash, then streamed; an inflated file is inflated
/// twice, once to learn its length (and that it is whole and within
/// [`file_record::MAX_FILE`]), once to send it.
async fn web_access(
    State(server): State<Shared>,
    Path((pk, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let gzip_ok = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().split(';').next() == Some("gzip"));
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let content_type = HeaderValue::from_str(mime.as_ref())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    streamed(&server, &pk, move |conn, public, sink| {
        let mut found = None;
        locate(
            conn,
            "type = ?2 AND key = ?3 ORDER BY +modified DESC LIMIT 1",
            params![MAIN_CHAIN, "file", path],
            |row: Located| {
                found = Some(row);
                Ok::<_, Stop>(())
            },
        )?;
        let (row, value_len) = match found {
            Some(row) => match row.value_len {
                Some(len) => (row, len),
                None => return Err(Stop::NotFound("no such file")),
            },
            None => return Err(Stop::NotFound("no such file")),
        };
        row.meta
            .verify(public)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        check_hash(conn, &row, value_len)?;
        let gzip_at = file_header(conn, &row, value_len)?;
        let gzip_len = value_len - gzip_at;
        let mut headers = vec![
            (header::CONTENT_TYPE, content_type),
            (header::VARY, HeaderValue::from_static("Accept-Encoding")),
        ];
        if gzip_ok {
            headers.push((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
            sink.begin(gzip_len, headers)?;
            return sink.copy(
                &mut value_range(conn, row.rowid, gzip_at, gzip_len)?,
                gzip_len,
            );
        }
        let inflate = || -> Result<_, Stop> {
            let gzip = value_range(conn, row.rowid, gzip_at, gzip_len)?;
            Ok(flate2::read::GzDecoder::new(gzip).take(file_record::MAX_FILE + 1))
        };
        let len = std::io::copy(&mut inflate()?, &mut std::io::sink())?;
        if len > file_record::MAX_FILE {
            return Err(Stop::Failed(
                file_record::FileRecordError::TooLarge.to_string(),
            ));
        }
        sink.begin(len, headers)?;
        sink.copy(&mut inflate()?, len)
    })
    .await
}

/// Checks a value against its signed hash, reading it in pieces.
fn check_hash(conn: &Connection, row: &Located, len: u64) -> Result<(), Stop> {
    let mut value = value_range(conn, row.rowid, 0, len)?;
    let mut hasher = Blake2b::<U32>::new();
    let mut piece = vec![0; CHUNK];
    loop {
        let n = value.read(&mut piece)?;
        if n == 0 {
            break;
        }
        hasher.update(&piece[..n]);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if digest != row.meta.value_hash {
        return Err(Stop::Failed(format!(
            "record {}: the value does not match its hash",
            row.meta.id
        )));
    }
    Ok(())
}

/// Where a `file` value's gzip starts, its header checked.
fn file_header(conn: &Connection, row: &Located, len: u64) -> Result<u64, Stop> {
    let malformed = || Stop::Failed("malformed file record".into());
    let mut size = [0; 4];
    value_range(conn, row.rowid, 0, len)?
        .read_exact(&mut size)
        .map_err(|_| malformed())?;
    let header_len = u32::from_le_bytes(size) as usize;
    let gzip_at = 4 + header_len as u64;
    if header_len > MAX_FILE_HEADER || gzip_at > len {
        return Err(malformed());
    }
    let mut prefix = vec![0; 4 + header_len];
    value_range(conn, row.rowid, 0, gzip_at)?
        .read_exact(&mut prefix)
        .map_err(|_| malformed())?;
    file_record::decode(&prefix).map_err(|e| Stop::Failed(e.to_string()))?;
    Ok(gzip_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pythons() {
        assert_eq!(json_string("a\"b"), "\"a\\\"b\"");
        assert_eq!(json_string("Grüß😀"), "\"Gr\\u00fc\\u00df\\ud83d\\ude00\"");
    }

    #[test]
    fn sources_count_by_address_and_ipv6_by_64() {
        let ip = |s: &str| {
            s.parse::<std::net::IpAddr>()
                .unwrap_or_else(|_| panic!("{s}"))
        };
        assert_eq!(source_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            source_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(source_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }
}
