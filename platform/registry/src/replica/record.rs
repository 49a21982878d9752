//! What a stream record does to a replica's index, once
//! [`check_record`] (the checks the server and replicas share) accepted
//! it: the owner asked for it, at this registry, under this name.

use keyway_core::registry::{Op, Username};

use super::index::Change;
pub use crate::record::RecordError;
use crate::record::check_record;

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
pub fn read(
    registry: &[u8; 32],
    key: &str,
    kind: &str,
    value: Option<&[u8]>,
) -> Result<Read, RecordError> {
    let signed = match check_record(registry, key, kind, value) {
        Ok(signed) => signed,
        Err(RecordError::OtherKind(_)) => return Ok(Read::Other),
        Err(e) => return Err(e),
    };
    let request = signed.request;
    let name = request.name.as_str().to_owned();
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
