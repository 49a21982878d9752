//! A replica of a namebump server's published stream (issue 17): a Drayer
//! mirror of the stream `serve --publish-stream` writes, answering GETs
//! locally. Each answer is checked twice: the stream's signature (the
//! server published it; Drayer checks it on every read) and the owner's
//! signature on the PUT inside (`keyway_core::namebump::published`), so a
//! value the owner never signed is refused even when the server signs it.

use std::path::Path;

use keyway_core::namebump::published::{
    MAX_KEY_LEN, PublishedError, RECORD_TYPE, stream_key, verify_record,
};
use keyway_drayer::{Stream, StreamError};

/// A name as the replica holds it, in the form a server's GET gives.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRecord {
    pub value: Vec<u8>,
    /// The owner's compressed public key.
    pub owner: [u8; 33],
    /// Unix seconds of the last write (whole seconds), as a GET reply.
    pub timestamp: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{path}: {source}")]
    Stream {
        path: String,
        #[source]
        source: StreamError,
    },
    #[error("{path} does not exist: mirror the stream first (keyway namebump mirror)")]
    Missing { path: String },
    #[error("a name is at most 50 bytes")]
    NameTooLong,
    /// The server published a record its owner did not sign as it is.
    #[error(
        "the replica's record for {name:?} is not what its owner signed: {reason}; refusing it"
    )]
    Forged {
        name: String,
        reason: PublishedError,
    },
}

/// Looks `name` up in the replica at `path`: `None` if it holds no live
/// record for it.
pub fn get(path: &Path, name: &[u8]) -> Result<Option<ReplicaRecord>, ReplicaError> {
    let at = || path.display().to_string();
    if !path.exists() {
        return Err(ReplicaError::Missing { path: at() });
    }
    let stream = Stream::open_read_only(path)
        .map_err(|source| ReplicaError::Stream { path: at(), source })?;
    let mut buf = [0u8; MAX_KEY_LEN];
    let key = stream_key(name, &mut buf).ok_or(ReplicaError::NameTooLong)?;
    let Some(value) = stream
        .get(key, RECORD_TYPE)
        .map_err(|source| ReplicaError::Stream { path: at(), source })?
    else {
        return Ok(None);
    };
    let published = verify_record(key, &value).map_err(|reason| ReplicaError::Forged {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    })?;
    Ok(Some(ReplicaRecord {
        value: published.value.to_vec(),
        owner: published.owner,
        timestamp: published.timestamp() as f64,
    }))
}

/// A record of the replica that its owner did not sign as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// The record's key (the name in hex, if the server kept to that).
    pub key: String,
    pub reason: PublishedError,
}

/// Records checked per page by [`check_since`].
const CHECK_PAGE: usize = 1000;

/// Checks the owner's signature of every name record of `stream`
/// modified after `after` (µs, a tip read before a pull): what the pull
/// brought. Returns those that fail; `get` refuses them too.
pub fn check_since(stream: &Stream, after: i64) -> Result<Vec<Refused>, StreamError> {
    let mut refused = Vec::new();
    let mut cursor = after;
    loop {
        let page = stream.modified_after(cursor, CHECK_PAGE)?;
        let Some(last) = page.last().map(|(meta, _)| meta.modified) else {
            return Ok(refused);
        };
        // `modified` rises strictly along the chain: each page moves on.
        if last <= cursor {
            return Ok(refused);
        }
        cursor = last;
        for (_, body) in page {
            if body.kind != RECORD_TYPE {
                continue;
            }
            // A metadata-only copy holds no values: nothing to check.
            let Some(value) = body.value else { continue };
            if let Err(reason) = verify_record(&body.key, &value) {
                refused.push(Refused {
                    key: body.key,
                    reason,
                });
            }
        }
    }
}
