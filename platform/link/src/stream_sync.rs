//! Drayer sync over a link (issue 16, item 5): a node serves stream files
//! to peers holding `sync:<that stream>` (or `sync:*`; the link machine
//! checks the capability against the stream key each request starts with,
//! and answers `not authorized` with no data), and a mirror pulls through
//! [`LinkSource`], a [`Source`] for `keyway_drayer::sync`: the same pull
//! (the core's `Pull` machine, signature checks, SQLite store) as over
//! HTTP, so every record is verified exactly as it is there.
//!
//! # Request body (service `sync`)
//!
//! ```text
//! stream public key (32) ‖ op (1) ‖ argument (i64, big-endian) ‖ max bytes (u32, big-endian)
//! ```
//!
//! `op` 1: the page of records modified after `argument` (at most
//! [`PAGE`], oldest first, cut short at `max bytes` but never empty when a
//! record follows); answer: the HTTP API's msgpack array of record maps.
//! `op` 2: `crdr` of `argument`; answer: one record map, or nothing.
//! `op` 3: the `argument` most recently modified records (at most
//! [`MAX_NEWEST`]), oldest first, as an array like op 1's, the oldest cut
//! first to stay under `max bytes` (a partial mirror's start, spec D8).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use keyway_core::drayer::pull::MAX_NEWEST;
use keyway_core::drayer::{Meta, VerifyingKey};
use keyway_core::link::{Refusal, Service};
use keyway_drayer::Stream;
use keyway_drayer::sqlite::Body;
use keyway_drayer::sync::{PAGE, Source};
use keyway_drayer::wire::{self, WireError};

use crate::connection::LinkHandle;
use crate::error::LinkError;

const OP_PAGE: u8 = 1;
const OP_CRDR: u8 = 2;
const OP_NEWEST: u8 = 3;
const REQUEST_LEN: usize = 32 + 1 + 8 + 4;

/// The largest page a mirror asks for. A node's links carry messages of
/// up to [`crate::config::MAX_MESSAGE_LEN`]; a page is cut below it.
pub const MAX_PAGE_BYTES: u32 = 3 << 20;

/// Streams a node serves, by public key.
#[derive(Debug, Default)]
pub struct StreamServer {
    streams: HashMap<[u8; 32], PathBuf>,
}

impl StreamServer {
    /// Serves the stream files at `paths` (each opened once here to learn
    /// its key).
    pub fn open(paths: &[PathBuf]) -> Result<Self, keyway_drayer::StreamError> {
        let mut streams = HashMap::new();
        for path in paths {
            let stream = Stream::open_read_only(path)?;
            streams.insert(stream.public_key().to_bytes(), path.clone());
        }
        Ok(Self { streams })
    }

    /// The keys served, base64 as `keyway drayer new` prints them.
    pub fn keys(&self) -> Vec<String> {
        self.streams
            .values()
            .filter_map(|p| Stream::open_read_only(p).ok())
            .map(|s| s.public_key_base64())
            .collect()
    }

    /// Answers one sync request (already authorized for its stream key).
    pub fn handle(self: &Arc<Self>, body: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        let server = self.clone();
        Box::pin(async move {
            if body.len() != REQUEST_LEN {
                return Err(Refusal::Failed);
            }
            let mut key = [0u8; 32];
            key.copy_from_slice(&body[..32]);
            let op = body[32];
            let mut arg = [0u8; 8];
            arg.copy_from_slice(&body[33..41]);
            let arg = i64::from_be_bytes(arg);
            let mut max = [0u8; 4];
            max.copy_from_slice(&body[41..45]);
            let max = u32::from_be_bytes(max).min(MAX_PAGE_BYTES) as usize;
            let Some(path) = server.streams.get(&key).cloned() else {
                // Authorized for any stream (`sync:*`) but this one is not here.
                return Err(Refusal::Failed);
            };
            // SQLite blocks: on the blocking pool, never on a runtime thread.
            tokio::task::spawn_blocking(move || answer(&path, op, arg, max))
                .await
                .map_err(|_| Refusal::Failed)?
        })
    }
}

fn answer(path: &std::path::Path, op: u8, arg: i64, max: usize) -> Result<Vec<u8>, Refusal> {
    let stream = Stream::open_read_only(path).map_err(|_| Refusal::Failed)?;
    let public = *stream.public_key();
    match op {
        OP_PAGE => {
            let records = stream
                .modified_after(arg, PAGE)
                .map_err(|_| Refusal::Failed)?;
            // Cut at `max` bytes (at least one record): the pull asks again
            // from the last record until a page comes back empty.
            Ok(encode_cut(records.iter(), &public, max, false))
        }
        OP_NEWEST => {
            let n = usize::try_from(arg).map_err(|_| Refusal::Failed)?;
            let records = stream
                .newest_records(n.min(MAX_NEWEST))
                .map_err(|_| Refusal::Failed)?;
            // Cut from the oldest end: what is kept is still the newest.
            Ok(encode_cut(records.iter().rev(), &public, max, true))
        }
        OP_CRDR => match stream.crdr(arg).map_err(|_| Refusal::Failed)? {
            Some((meta, body)) => {
                let mut out = Vec::new();
                wire::encode_record(&mut out, &meta, &body, &public);
                Ok(out)
            }
            None => Ok(Vec::new()),
        },
        _ => Err(Refusal::Failed),
    }
}

/// Encodes `records` as a msgpack array, stopping before the record that
/// would take it over `max` bytes (one record always goes). `reversed`:
/// `records` come newest first and the array is written oldest first.
fn encode_cut<'r>(
    records: impl Iterator<Item = &'r (Meta, Body)>,
    public: &VerifyingKey,
    max: usize,
    reversed: bool,
) -> Vec<u8> {
    let mut encoded: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    for (meta, body) in records {
        let mut one = Vec::new();
        wire::encode_record(&mut one, meta, body, public);
        if !encoded.is_empty() && total + one.len() > max {
            break;
        }
        total += one.len();
        encoded.push(one);
    }
    if reversed {
        encoded.reverse();
    }
    let mut out = Vec::with_capacity(total + 5);
    let count = u32::try_from(encoded.len()).unwrap_or(0);
    let _ = rmp::encode::write_array_len(&mut out, count);
    for one in encoded {
        out.extend_from_slice(&one);
    }
    out
}

/// Why a pull over a link failed.
// `CloseReason` carries two public keys (WrongPeerIdentity); errors are
// rare and short-lived, so boxing would only make matching clumsy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, thiserror::Error)]
pub enum LinkSourceError {
    /// The link (or the request) failed: `not authorized`, closed, ….
    #[error("{0}")]
    Link(#[from] LinkError),
    /// The answer is not valid record maps.
    #[error("the peer sent malformed records: {0}")]
    Wire(#[from] WireError),
}

/// A stream's records from a peer over a link.
#[derive(Debug)]
pub struct LinkSource {
    link: LinkHandle,
    stream: VerifyingKey,
}

impl LinkSource {
    /// Pulls stream `stream` from the peer at the other end of `link`.
    pub fn new(link: LinkHandle, stream: VerifyingKey) -> Self {
        Self { link, stream }
    }

    async fn ask(&self, op: u8, arg: i64) -> Result<Vec<u8>, LinkSourceError> {
        let mut body = Vec::with_capacity(REQUEST_LEN);
        body.extend_from_slice(self.stream.as_bytes());
        body.push(op);
        body.extend_from_slice(&arg.to_be_bytes());
        body.extend_from_slice(&MAX_PAGE_BYTES.to_be_bytes());
        Ok(self
            .link
            .request(Service::Sync, body)
            .await
            .map_err(LinkError::from)?)
    }

    async fn decode<T: Send + 'static>(
        &self,
        bytes: Vec<u8>,
        f: impl FnOnce(&[u8], &VerifyingKey) -> Result<T, WireError> + Send + 'static,
    ) -> Result<T, LinkSourceError> {
        let stream = self.stream;
        // A page holds up to a few MiB of msgpack: off the runtime threads.
        tokio::task::spawn_blocking(move || f(&bytes, &stream))
            .await
            .map_err(|_| LinkError::Closed(keyway_core::link::CloseReason::Internal))?
            .map_err(LinkSourceError::from)
    }
}

impl Source for LinkSource {
    type Error = LinkSourceError;

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, LinkSourceError> {
        let bytes = self.ask(OP_PAGE, t).await?;
        self.decode(bytes, wire::decode_records).await
    }

    async fn newest(&mut self, n: usize) -> Result<Option<Vec<(Meta, Body)>>, LinkSourceError> {
        let n = i64::try_from(n.min(MAX_NEWEST)).unwrap_or(0);
        let bytes = self.ask(OP_NEWEST, n).await?;
        self.decode(bytes, wire::decode_records).await.map(Some)
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, LinkSourceError> {
        let bytes = self.ask(OP_CRDR, pdest).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let (meta, _) = self.decode(bytes, wire::decode_record).await?;
        Ok(Some(meta))
    }
}
