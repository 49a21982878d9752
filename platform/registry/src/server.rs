//! The registry server: its directory, the write path and the link
//! service.
//!
//! `DIR` holds [`STREAM_FILE`] (the Drayer stream, with its
//! `.privatekey` beside it as `keyway drayer new` writes it) and
//! [`INDEX_FILE`] (the index). A write is judged and applied by one
//! writer under one lock: check freshness and ownership against the
//! index, append the record to the stream (committed and synced), then
//! apply it to the index. Two registrations of one name are therefore
//! serialised: exactly one sees the name free. A crash between the
//! stream's commit and the index's leaves the index behind, and
//! [`Registry::open`] replays the stream past the index's position.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use keyway_core::PublicKey;
use keyway_core::drayer::VerifyingKey;
use keyway_core::link::{Refusal, Service};
use keyway_core::registry::decide::{
    ERR_BAD_SIGNATURE, ERR_BUSY, ERR_INTERNAL, ERR_MALFORMED, ERR_NOT_CALLER, ERR_OTHER_REGISTRY,
};
use keyway_core::registry::{
    INFO_REQUEST, MAX_REPLY_LEN, MAX_REQUEST_LEN, MAX_WAIT_MS, Outcome, RECORD_KIND, RegistryInfo,
    SignedRequest, Status, Username, WriteReply, check_fresh, decide, parse_info_request,
};
use keyway_core::time::{Clock as _, SystemClock};
use keyway_drayer::sync::PAGE;
use keyway_drayer::{Stream, StreamError};
use keyway_link::connection::Handler;
use keyway_link::stream_sync::StreamServer;
use tokio::sync::{Semaphore, watch};

use crate::index::Index;
use crate::record::check_record;

/// The stream file in `DIR`.
pub const STREAM_FILE: &str = "registry.drayer";
/// The index file in `DIR`.
pub const INDEX_FILE: &str = "index.sqlite";
/// Writes accepted at once (waiting for the writer or being verified);
/// more are answered `ERR:Busy` at once rather than queued without bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Why the registry could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Creating `DIR`.
    #[error("{path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The stream file.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The index file.
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    /// The stream file has no private key: this copy cannot write.
    #[error("{0} has no private key beside it: not this registry's own stream")]
    NotOwner(PathBuf),
}

/// A write's verdict before it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Appended at this position.
    Ok(i64),
    /// Already so; the record holding it is at this position.
    Idempotent(i64),
    /// Refused; nothing stored.
    Err(&'static str),
}

impl Verdict {
    /// The reply body.
    pub fn encode(self) -> Vec<u8> {
        let (status, position) = match self {
            Self::Ok(p) => (Status::Ok, p),
            Self::Idempotent(p) => (Status::Idempotent, p),
            Self::Err(text) => (Status::Err(text), 0),
        };
        let mut out = vec![0u8; MAX_REPLY_LEN];
        // Every text this server sends is a short constant.
        let n = WriteReply { status, position }
            .encode(&mut out)
            .unwrap_or(0);
        out.truncate(n);
        out
    }
}

struct State {
    stream: Stream,
    index: Index,
}

/// An open registry.
pub struct Registry {
    state: Mutex<State>,
    stream_key: VerifyingKey,
    stream_key_base64: String,
    stream_path: PathBuf,
    in_flight: Arc<Semaphore>,
    /// The index's position, published after each applied write: what a
    /// waiting info request watches (one value, however many wait).
    position: watch::Sender<i64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("stream", &self.stream_path)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    u64::try_from(SystemClock.unix_micros() / 1000).unwrap_or(0)
}

impl Registry {
    /// Opens the registry in `dir`, creating the directory, the stream
    /// (with a fresh key) and the index as needed, and brings the index up
    /// to the stream. Blocking (SQLite): call before serving, or on the
    /// blocking pool.
    pub fn open(dir: &Path) -> Result<Arc<Self>, RegistryError> {
        Self::open_with(dir, DEFAULT_MAX_IN_FLIGHT)
    }

    /// [`Self::open`] with a bound on writes in flight.
    pub fn open_with(dir: &Path, max_in_flight: usize) -> Result<Arc<Self>, RegistryError> {
        std::fs::create_dir_all(dir).map_err(|source| RegistryError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let stream_path = dir.join(STREAM_FILE);
        let stream = if stream_path.exists() {
            Stream::open(&stream_path)?
        } else {
            Stream::create(&stream_path)?
        };
        if !stream.is_owner() {
            return Err(RegistryError::NotOwner(stream_path));
        }
        let stream_key = *stream.public_key();
        let mut index = Index::open(&dir.join(INDEX_FILE), stream_key.as_bytes())?;
        catch_up(&stream, &mut index)?;
        let (position, _) = watch::channel(index.position()?);
        let stream_key_base64 = stream.public_key_base64();
        Ok(Arc::new(Self {
            state: Mutex::new(State { stream, index }),
            stream_key,
            stream_key_base64,
            stream_path,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            position,
        }))
    }

    /// The stream's public key.
    pub fn stream_key(&self) -> &VerifyingKey {
        &self.stream_key
    }

    /// The stream's public key in standard base64 (`stream_pk=`).
    pub fn stream_key_base64(&self) -> &str {
        &self.stream_key_base64
    }

    /// The stream file (for serving it over links or HTTP).
    pub fn stream_path(&self) -> &Path {
        &self.stream_path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every step under the lock leaves the state consistent (each
        // commit is whole), so a panicked holder leaves nothing half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles one write from the link identity `caller` (blocking: runs
    /// the signature check and SQLite), judged at `now_ms`.
    pub fn write_blocking(&self, caller: &PublicKey, body: &[u8], now_ms: u64) -> Verdict {
        if body.len() > MAX_REQUEST_LEN {
            return Verdict::Err(ERR_MALFORMED);
        }
        let Ok(signed) = SignedRequest::decode(body) else {
            return Verdict::Err(ERR_MALFORMED);
        };
        let request = &signed.request;
        // The transport proved who is calling; the payload only claims it.
        if &request.owner != caller {
            return Verdict::Err(ERR_NOT_CALLER);
        }
        if &request.registry != self.stream_key.as_bytes() {
            return Verdict::Err(ERR_OTHER_REGISTRY);
        }
        // Verified before taking the lock: the writer's turn stays short.
        if signed.verify().is_err() {
            return Verdict::Err(ERR_BAD_SIGNATURE);
        }
        let mut state = self.lock();
        match judge_and_apply(&mut state, &signed, body, now_ms) {
            Ok(verdict) => {
                if let Verdict::Ok(position) = verdict {
                    // Under the lock, so the published positions only grow;
                    // before the reply, so an acknowledged write is visible
                    // to every info request that follows.
                    self.position.send_replace(position);
                }
                verdict
            }
            Err(e) => {
                tracing::error!("registry write for {}: {e}", request.name);
                Verdict::Err(ERR_INTERNAL)
            }
        }
    }

    /// Handles one write from `caller`: the reply body. At most
    /// [`DEFAULT_MAX_IN_FLIGHT`] (or the configured bound) at once. The
    /// body [`INFO_REQUEST`] is answered with the [`RegistryInfo`]; a
    /// waiting info request once the position moves beyond the one it
    /// names, or when its (capped) wait ends.
    pub fn write(
        self: &Arc<Self>,
        caller: PublicKey,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Vec<u8>> {
        let registry = self.clone();
        Box::pin(async move {
            // By the first byte, as the link machine authorized it: a body
            // starting with 0 is never a write, whatever follows.
            if body.first() == INFO_REQUEST.first() {
                return registry.info(parse_info_request(&body)).await;
            }
            let Ok(permit) = registry.in_flight.clone().try_acquire_owned() else {
                return Verdict::Err(ERR_BUSY).encode();
            };
            let verdict = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                registry.write_blocking(&caller, &body, now_ms())
            })
            .await
            .unwrap_or(Verdict::Err(ERR_INTERNAL));
            verdict.encode()
        })
    }

    /// The info answer: the stream key and the index's position (which
    /// every acknowledged write has reached), at once or, for `wait`
    /// (after, ms), once the position is beyond `after` or the wait ends.
    /// A held request is one watch receiver and a timer, inside the link's
    /// request future: it counts against the link's concurrent requests,
    /// and ends with the link.
    async fn info(self: Arc<Self>, wait: Option<(i64, u32)>) -> Vec<u8> {
        let stream_key = *self.stream_key.as_bytes();
        let mut watching = self.position.subscribe();
        if let Some((after, wait_ms)) = wait {
            let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS)));
            // Ends at its timeout whatever `after` says (one in the future
            // just waits the whole time); the sender lives as long as
            // `self`, so the wait cannot fail early.
            let _ = tokio::time::timeout(wait, watching.wait_for(|p| *p > after)).await;
        }
        let position = *watching.borrow_and_update();
        RegistryInfo {
            stream_key,
            position,
        }
        .encode()
        .to_vec()
    }

    /// The owner of `name`, if registered (the server's own view).
    pub fn lookup(&self, name: &Username) -> Result<Option<PublicKey>, RegistryError> {
        Ok(self.lock().index.lookup(name.as_str())?)
    }

    /// Every registered name in byte order (the server's own view).
    pub fn list(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self.lock().index.list()?)
    }

    /// The stream position the index has reached.
    pub fn position(&self) -> Result<i64, RegistryError> {
        Ok(self.lock().index.position()?)
    }
}

/// Freshness, ownership, append, index: the check and the set under one
/// lock.
fn judge_and_apply(
    state: &mut State,
    signed: &SignedRequest,
    body: &[u8],
    now_ms: u64,
) -> Result<Verdict, RegistryError> {
    let request = &signed.request;
    let last = state.index.last_ms(&request.owner)?;
    if let Err(text) = check_fresh(now_ms, request.timestamp_ms, last) {
        return Ok(Verdict::Err(text));
    }
    let current = state.index.name(request.name.as_str())?;
    let owner = current.filter(|c| c.registered).map(|c| c.owner);
    match decide(request.op, &request.owner, owner.as_ref()) {
        Outcome::Refuse(text) => Ok(Verdict::Err(text)),
        Outcome::Idempotent => Ok(Verdict::Idempotent(current.map_or(0, |c| c.position))),
        Outcome::Append => {
            let meta = state.stream.set(request.name.as_str(), RECORD_KIND, body)?;
            state.index.apply(signed, meta.modified)?;
            Ok(Verdict::Ok(meta.modified))
        }
    }
}

/// Replays the stream's records after the index's position into the
/// index. Each page moves the position forward, so this ends.
fn catch_up(stream: &Stream, index: &mut Index) -> Result<(), RegistryError> {
    if index.position()? > stream.tip()? {
        // An index ahead of its stream belongs to another copy of it.
        index.reset(stream.public_key().as_bytes())?;
    }
    let registry = *stream.public_key().as_bytes();
    loop {
        let page = stream.modified_after(index.position()?, PAGE)?;
        if page.is_empty() {
            return Ok(());
        }
        for (meta, body) in page {
            match check_record(&registry, &body.key, &body.kind, body.value.as_deref()) {
                Ok(signed) => index.apply(&signed, meta.modified)?,
                Err(e) => {
                    if body.kind == RECORD_KIND {
                        tracing::warn!("registry stream: skipping a record: {e}");
                    }
                    index.skip(meta.modified)?;
                }
            }
        }
    }
}

/// What the registry serves on its links: writes, and its stream to
/// replicas.
#[derive(Debug, Clone)]
pub struct RegistryService {
    registry: Arc<Registry>,
    streams: Arc<StreamServer>,
}

impl RegistryService {
    /// Serves `registry`'s writes and its stream.
    pub fn new(registry: Arc<Registry>) -> Result<Self, RegistryError> {
        let streams = StreamServer::open(&[registry.stream_path().to_owned()])?;
        Ok(Self {
            registry,
            streams: Arc::new(streams),
        })
    }
}

impl Handler for RegistryService {
    fn handle(
        &self,
        peer: PublicKey,
        service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        match service {
            Service::RegistryWrite => {
                let reply = self.registry.write(peer, body);
                Box::pin(async move { Ok(reply.await) })
            }
            Service::Sync => self.streams.handle(body),
            Service::Message => Box::pin(async { Err(Refusal::UnknownService) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyway_core::Keypair;
    use keyway_core::rand_core::UnwrapErr;
    use keyway_core::registry::{Op, WriteRequest};

    fn keypair() -> Keypair {
        Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
    }

    fn body(registry: &Registry, owner: &Keypair, name: &str, ms: u64) -> Vec<u8> {
        let signed = WriteRequest::sign(
            Op::Register,
            Username::fold(name).unwrap(),
            *registry.stream_key().as_bytes(),
            ms,
            owner,
        );
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn writes_over_the_in_flight_bound_are_busy_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open_with(dir.path(), 1).unwrap();
        let owner = keypair();
        let held = registry.in_flight.clone().try_acquire_owned().unwrap();
        let request = body(&registry, &owner, "alice", now_ms());
        let reply = registry.write(*owner.public(), request.clone()).await;
        assert_eq!(Verdict::Err(ERR_BUSY).encode(), reply);
        drop(held);
        let reply = registry.write(*owner.public(), request).await;
        let reply = WriteReply::decode(&reply).unwrap();
        assert_eq!(reply.status, Status::Ok);
    }

    fn info_position(reply: &[u8]) -> i64 {
        RegistryInfo::decode(reply).unwrap().position
    }

    // The clock is tokio's paused one: the waits below take no real time.
    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_timeout_with_the_position_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let owner = keypair();
        let now = now_ms();
        let request = body(&registry, &owner, "alice", now);
        let Verdict::Ok(at) = registry.write_blocking(owner.public(), &request, now) else {
            panic!("the write is accepted");
        };
        let started = tokio::time::Instant::now();
        let reply = registry.clone().info(Some((at, 300))).await;
        assert_eq!(info_position(&reply), at);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        // Behind the position: answered at once.
        let started = tokio::time::Instant::now();
        let reply = registry.clone().info(Some((at - 1, 300))).await;
        assert_eq!(info_position(&reply), at);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn hostile_waits_are_capped_and_a_future_position_only_waits() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let owner = keypair();
        let started = tokio::time::Instant::now();
        let hostile = keyway_core::registry::wait_request(i64::MAX, u32::MAX);
        let reply = registry.write(*owner.public(), hostile.to_vec()).await;
        assert_eq!(info_position(&reply), 0);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(u64::from(MAX_WAIT_MS))
        );
        // Any other body starting with 0 is the plain info request.
        let started = tokio::time::Instant::now();
        let reply = registry.write(*owner.public(), vec![0; 40]).await;
        assert_eq!(info_position(&reply), 0);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_wakes_a_waiting_info_request_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let owner = keypair();
        let waiting = tokio::spawn(registry.clone().info(Some((0, MAX_WAIT_MS))));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing written yet");
        let started = tokio::time::Instant::now();
        let now = now_ms();
        let request = body(&registry, &owner, "alice", now);
        let Verdict::Ok(at) = registry.write_blocking(owner.public(), &request, now) else {
            panic!("the write is accepted");
        };
        assert_eq!(info_position(&waiting.await.unwrap()), at);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_rebuild_skips_records_whose_owner_signature_fails() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let (alice, bob) = (keypair(), keypair());
        let now = now_ms();
        let good = body(&registry, &alice, "alice", now);
        let verdict = registry.write_blocking(alice.public(), &good, now);
        assert_eq!(verdict, Verdict::Ok(registry.position().unwrap()));
        // The stream's own key (the server, or whoever stole its key)
        // publishes a record bob never signed.
        let mut forged = body(&registry, &bob, "bob", now);
        let at = forged.len() - 1;
        forged[at] ^= 1;
        drop(registry);
        let mut stream = Stream::open(&dir.path().join(STREAM_FILE)).unwrap();
        stream.set("bob", RECORD_KIND, &forged).unwrap();
        drop(stream);
        std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        assert_eq!(registry.list().unwrap(), ["alice"]);
        // The skipped record still moved the index to the stream's tip.
        let tip = Stream::open_read_only(registry.stream_path())
            .unwrap()
            .tip()
            .unwrap();
        assert_eq!(registry.position().unwrap(), tip);
    }
}
