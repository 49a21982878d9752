//! Reading a registry record out of a stream record, with the checks a
//! replica makes before it stores one (the protocol is keyway-core's
//! `registry`): the record is of the registry's type, its value decodes
//! as an owner's [`SignedRequest`] for this registry, it sits under the
//! name it is about, and the owner's signature verifies.

use keyway_core::registry::request::DecodeError;
use keyway_core::registry::{Op, RECORD_KIND, SignedRequest, Username};

use super::index::Change;

/// Why a stream record is not a registry record its owner asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Stored without its value (a metadata-only copy): nothing to check.
    #[error("the record has no value (a metadata-only copy)")]
    NoValue,
    /// The value is not an owner's request.
    #[error("not a registry request: {0}")]
    Decode(DecodeError),
    /// The request names another registry's stream.
    #[error("the request is for another registry")]
    OtherRegistry,
    /// The record sits under a key other than the name it is about.
    #[error("the record for {name:?} is stored under {key:?}")]
    WrongKey { key: String, name: String },
    /// The owner's signature does not verify: the owner did not ask this.
    #[error("the owner's signature does not verify")]
    OwnerSignature,
}

/// What one stream record is to the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// A registry record, checked: what it does to the index.
    Change(Change),
    /// Another type of record (the registry gives it no meaning).
    Other,
}

/// Reads the record at `key`/`kind` with `value` in the stream
/// `registry`, checking its owner's signature.
pub fn read(registry: &[u8; 32], key: &str, kind: &str, value: &[u8]) -> Result<Read, RecordError> {
    if kind != RECORD_KIND {
        return Ok(Read::Other);
    }
    let signed = SignedRequest::decode(value).map_err(RecordError::Decode)?;
    let request = &signed.request;
    if &request.registry != registry {
        return Err(RecordError::OtherRegistry);
    }
    let name = request.name.as_str();
    if name != key {
        return Err(RecordError::WrongKey {
            key: key.to_owned(),
            name: name.to_owned(),
        });
    }
    signed.verify().map_err(|_| RecordError::OwnerSignature)?;
    let name = name.to_owned();
    Ok(Read::Change(match request.op {
        Op::Register => Change::Registered {
            name,
            owner: request.owner,
        },
        Op::Delete => Change::Deleted { name },
    }))
}

/// `name` folded as the registry stores it, if it is a valid name.
pub fn fold(name: &str) -> Option<String> {
    Username::fold(name).ok().map(|u| u.as_str().to_owned())
}
