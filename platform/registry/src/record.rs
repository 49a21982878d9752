//! A registry record as a Drayer reader sees it: key = the canonical name,
//! type = [`RECORD_KIND`], value = the owner's [`SignedRequest`] exactly as
//! sent. Drayer checks the stream key's signature over the record; this
//! checks what only the registry knows: that the owner asked for this
//! name, at this registry.

use keyway_core::registry::{RECORD_KIND, SignedRequest};

/// Why a record is not a valid registry record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Another record type (not the registry's; readers skip it).
    #[error("record type {0:?} is not a registry record")]
    OtherKind(String),
    /// No value (a metadata-only mirror, or a Drayer deletion).
    #[error("registry record without a value")]
    NoValue,
    /// The value is not a request.
    #[error("malformed registry record: {0}")]
    Malformed(keyway_core::registry::request::DecodeError),
    /// The owner's signature does not verify.
    #[error("registry record for {0:?}: the owner's signature does not verify")]
    BadSignature(String),
    /// The Drayer key is not the name the owner signed.
    #[error("registry record under key {key:?} holds a request for {name:?}")]
    WrongKey { key: String, name: String },
    /// The owner signed it for another registry.
    #[error("registry record for {0:?} was signed for another registry")]
    OtherRegistry(String),
}

/// Checks one record of the registry whose stream key is `registry`:
/// returns the owner's request it carries.
pub fn check_record(
    registry: &[u8; 32],
    key: &str,
    kind: &str,
    value: Option<&[u8]>,
) -> Result<SignedRequest, RecordError> {
    if kind != RECORD_KIND {
        return Err(RecordError::OtherKind(kind.to_owned()));
    }
    let value = value.ok_or(RecordError::NoValue)?;
    let signed = SignedRequest::decode(value).map_err(RecordError::Malformed)?;
    let name = signed.request.name.as_str();
    if name != key {
        return Err(RecordError::WrongKey {
            key: key.to_owned(),
            name: name.to_owned(),
        });
    }
    if &signed.request.registry != registry {
        return Err(RecordError::OtherRegistry(name.to_owned()));
    }
    signed
        .verify()
        .map_err(|_| RecordError::BadSignature(name.to_owned()))?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyway_core::Keypair;
    use keyway_core::rand_core::UnwrapErr;
    use keyway_core::registry::{MAX_REQUEST_LEN, Op, Username, WriteRequest};

    fn encoded(registry: [u8; 32], name: &str, owner: &Keypair) -> Vec<u8> {
        let signed = WriteRequest::sign(
            Op::Register,
            Username::fold(name).unwrap(),
            registry,
            1,
            owner,
        );
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn a_record_must_match_its_key_registry_and_signature() {
        let owner = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
        let value = encoded([1; 32], "alice", &owner);
        let ok = check_record(&[1; 32], "alice", RECORD_KIND, Some(&value)).unwrap();
        assert_eq!(ok.request.owner, *owner.public());
        assert!(matches!(
            check_record(&[1; 32], "bob", RECORD_KIND, Some(&value)),
            Err(RecordError::WrongKey { .. })
        ));
        assert!(matches!(
            check_record(&[2; 32], "alice", RECORD_KIND, Some(&value)),
            Err(RecordError::OtherRegistry(_))
        ));
        assert!(matches!(
            check_record(&[1; 32], "alice", "other", Some(&value)),
            Err(RecordError::OtherKind(_))
        ));
        let mut forged = value.clone();
        let last = forged.len() - 40;
        forged[last] ^= 1;
        assert!(check_record(&[1; 32], "alice", RECORD_KIND, Some(&forged)).is_err());
    }
}
