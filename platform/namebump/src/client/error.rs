//! Why a client call failed, and its kind.

use keyway_core::namebump::EncodeError;
use keyway_core::namebump::client::ErrorKind;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("rejected: this address's quota of names is full")]
    RejectedAtQuota,
    #[error("rejected: storing this would bump another name (THROW_BUMP)")]
    WouldBump,
    #[error("not the owner: the name belongs to another key")]
    NotOwner,
    #[error("request refused as expired: the server clock is {skew:+.1} s from ours")]
    ClockSkew { skew: f64 },
    #[error("the server refused the request")]
    ServerError,
    #[error("no reply from {server} after {attempts} attempts")]
    Timeout { server: String, attempts: u32 },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("cannot reach {server}: {source}")]
    Network {
        server: String,
        source: std::io::Error,
    },
    #[error("the server's reply is malformed")]
    BadReply,
}

impl ClientError {
    /// The kind every face reports (the CLI's `kind` word, the C status
    /// code, the Python exception): the one mapping (issue 13).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::RejectedAtQuota => ErrorKind::RejectedAtQuota,
            Self::WouldBump => ErrorKind::WouldBump,
            Self::NotOwner => ErrorKind::NotOwner,
            Self::ClockSkew { .. } => ErrorKind::ClockSkew,
            Self::ServerError => ErrorKind::ServerError,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Network { .. } => ErrorKind::Network,
            Self::BadReply => ErrorKind::BadReply,
        }
    }
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}
