//! The one exception hierarchy of the mobile faces: Kotlin's
//! `KeywayException` (with a subclass per kind) and Swift's `KeywayError`.
//! The namebump kinds come from keyway-core's `ErrorKind` (the one
//! classification the CLI, C and Python faces use, issue 13); sidewire's
//! and Drayer's errors are mapped onto the same kinds here.

use keyway_core::drayer::{ApplyError, WriteError};
use keyway_drayer::StreamError;
use keyway_drayer::http::ClientError as HttpError;
use keyway_drayer::sqlite::ChainError;
use keyway_drayer::sync::SyncError;
use keyway_namebump::{ClientError, ErrorKind};
use keyway_sidewire::RouterError;

/// Why a call failed; the text says what happened.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum KeywayError {
    /// The address's quota of names is full.
    #[error("{0}")]
    RejectedAtQuota(String),
    /// Storing would bump another name.
    #[error("{0}")]
    WouldBump(String),
    /// The name (or stream) belongs to another key.
    #[error("{0}")]
    NotOwner(String),
    /// The server refused the request as expired: the clocks differ.
    #[error("{0}")]
    ClockSkew(String),
    /// No reply or acknowledgement in time.
    #[error("{0}")]
    Timeout(String),
    /// The caller's input cannot be used (a bad key, name, path or URL).
    #[error("{0}")]
    InvalidInput(String),
    /// The peer cannot be reached.
    #[error("{0}")]
    Network(String),
    /// The server failed or answered what was not asked for.
    #[error("{0}")]
    ServerError(String),
    /// A signature, hash or chain link does not check out.
    #[error("{0}")]
    VerificationFailed(String),
}

impl From<ClientError> for KeywayError {
    fn from(e: ClientError) -> Self {
        let text = e.to_string();
        match e.kind() {
            ErrorKind::RejectedAtQuota => Self::RejectedAtQuota(text),
            ErrorKind::WouldBump => Self::WouldBump(text),
            ErrorKind::NotOwner => Self::NotOwner(text),
            ErrorKind::ClockSkew => Self::ClockSkew(text),
            ErrorKind::Timeout => Self::Timeout(text),
            ErrorKind::InvalidInput => Self::InvalidInput(text),
            ErrorKind::Network => Self::Network(text),
            ErrorKind::ServerError | ErrorKind::BadReply => Self::ServerError(text),
        }
    }
}

impl From<RouterError> for KeywayError {
    fn from(e: RouterError) -> Self {
        let text = e.to_string();
        match e {
            RouterError::NoBroker => Self::Network(text),
            RouterError::Timeout(_) => Self::Timeout(text),
            // A message too long, or a node already closed: the caller's.
            RouterError::TooLarge { .. } | RouterError::Closed => Self::InvalidInput(text),
        }
    }
}

impl From<StreamError> for KeywayError {
    fn from(e: StreamError) -> Self {
        let text = e.to_string();
        match e {
            StreamError::NotOwner(_) => Self::NotOwner(text),
            // What the file or a peer holds fails its signature, hash or
            // chain rules, or is malformed.
            StreamError::Chain(ChainError::Malformed { .. }) | StreamError::Record(_) => {
                Self::VerificationFailed(text)
            }
            StreamError::Apply(e) | StreamError::Write(WriteError::Apply(e)) => apply(e, text),
            // The file cannot be used (SQLite's own errors included: the
            // kinds have no storage failure, and the path is the caller's).
            _ => Self::InvalidInput(text),
        }
    }
}

/// A record refused by the receiver's rules is a verification failure;
/// the store failing under it is not.
fn apply(e: ApplyError<ChainError>, text: String) -> KeywayError {
    match e {
        ApplyError::Store(ChainError::Sql(_)) => KeywayError::InvalidInput(text),
        _ => KeywayError::VerificationFailed(text),
    }
}

impl From<SyncError<HttpError>> for KeywayError {
    fn from(e: SyncError<HttpError>) -> Self {
        let text = e.to_string();
        match e {
            SyncError::Source(HttpError::Http { .. } | HttpError::Interrupted { .. }) => {
                Self::Network(text)
            }
            SyncError::Source(HttpError::NoClient { .. }) => Self::InvalidInput(text),
            SyncError::Source(_) | SyncError::Unsupported | SyncError::NoProgress { .. } => {
                Self::ServerError(text)
            }
            // A record the peer sent fails its signature or its chain.
            SyncError::Refused { .. } => Self::VerificationFailed(text),
            SyncError::Local(e) => e.into(),
            // Retryable: the next pull goes on from what this one applied.
            SyncError::TimeLimit(_) | SyncError::ByteLimit(_) | SyncError::Unsettled { .. } => {
                Self::Timeout(text)
            }
            SyncError::Interrupted => Self::Network(text),
        }
    }
}
