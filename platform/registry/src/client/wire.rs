//! The client's side of the registry protocol (keyway-core's `registry`):
//! signing write requests and reading the server's replies.

use std::sync::atomic::{AtomicU64, Ordering};

use keyway_core::identity::Keypair;
use keyway_core::registry::{
    INFO_REQUEST, MAX_REQUEST_LEN, Op, RegistryInfo, Status, Username, WriteReply, WriteRequest,
};

/// The server's answer to a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `OK`, `IDEMPOTENT` or `ERR:…`, as printed.
    pub line: String,
    /// The position (record `modified`, µs) the replica must reach before
    /// the write returns; `None` for an error.
    pub position: Option<i64>,
}

impl Reply {
    /// `OK` or `IDEMPOTENT`.
    pub fn is_success(&self) -> bool {
        !self.line.starts_with("ERR:")
    }
}

/// Request timestamps, strictly increasing within this process: the
/// server accepts an owner's request only if it is newer than the last
/// one it accepted from that owner (its replay guard), so two writes in
/// one millisecond must not share one.
#[derive(Debug, Default)]
pub(super) struct Clock {
    last: AtomicU64,
}

impl Clock {
    fn next(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut last = self.last.load(Ordering::Relaxed);
        // Bounded: each failed exchange saw another thread move `last`.
        loop {
            let next = now.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(moved) => last = moved,
            }
        }
    }
}

/// A signed `op` of `name` by `owner` at `registry`, encoded; an invalid
/// name is answered here, as the reply line a server would give.
pub(super) fn request(
    op: Op,
    owner: &Keypair,
    registry: [u8; 32],
    clock: &Clock,
    name: &str,
) -> Result<Vec<u8>, Reply> {
    let name = Username::fold(name).map_err(|e| Reply {
        line: format!("ERR:Invalid username: {e}"),
        position: None,
    })?;
    let signed = WriteRequest::sign(op, name, registry, clock.next(), owner);
    let mut out = vec![0u8; MAX_REQUEST_LEN];
    // The buffer holds the longest request.
    let n = signed.encode(&mut out).unwrap_or(0);
    out.truncate(n);
    Ok(out)
}

/// Reads the server's reply.
pub(super) fn parse_reply(answer: &[u8]) -> Result<Reply, String> {
    let reply = WriteReply::decode(answer).map_err(|e| e.to_string())?;
    let position = match reply.status {
        Status::Ok | Status::Idempotent => Some(reply.position),
        Status::Err(_) => None,
    };
    Ok(Reply {
        line: reply.status.to_string(),
        position,
    })
}

/// The request that asks the server which stream it publishes
/// (keyway-core's `registry::info`).
pub(super) fn info_request() -> Vec<u8> {
    INFO_REQUEST.to_vec()
}

/// The request that asks for the stream's position once it is beyond
/// `after`, waiting up to `wait_ms` (keyway-core's `registry::info`).
pub(super) fn wait_request(after: i64, wait_ms: u32) -> Vec<u8> {
    keyway_core::registry::wait_request(after, wait_ms).to_vec()
}

/// The stream key and the stream's current position in the server's
/// answer to [`info_request`].
pub(super) fn parse_info(
    answer: &[u8],
) -> Result<(keyway_core::drayer::VerifyingKey, i64), String> {
    let info = RegistryInfo::decode(answer).map_err(|e| e.to_string())?;
    let key = keyway_core::drayer::VerifyingKey::from_bytes(&info.stream_key)
        .map_err(|e| format!("the stream key: {e}"))?;
    Ok((key, info.position))
}
