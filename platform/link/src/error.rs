//! What a link operation reports to its user: the CLI's one-line reasons
//! (issue 16, item 8: `handshake failed`, `wrong peer identity`,
//! `not authorized`, `timeout`).

use keyway_core::link::{CloseReason, Refusal, SendError};

use crate::connection::RequestError;

/// Why dialing, or a request over a link, failed.
// `CloseReason` carries two public keys (WrongPeerIdentity); errors are
// rare and short-lived, so boxing would only make matching clumsy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// Where.
        addr: String,
        /// What the OS said.
        why: String,
    },
    /// The link closed (`handshake failed`, `wrong peer identity: …`, …).
    #[error("{0}")]
    Closed(CloseReason),
    /// The peer refused the request (`not authorized`, …).
    #[error("{0}")]
    Refused(Refusal),
    /// The request could not be queued.
    #[error("{0}")]
    Send(SendError),
    /// The time allowed ran out.
    #[error("timeout")]
    Timeout,
}

impl LinkError {
    /// Whether trying again could help: not for a peer proving another key
    /// or refusing the capability, which a retry would only repeat.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Closed(CloseReason::WrongPeerIdentity { .. })
                | Self::Refused(Refusal::NotAuthorized | Refusal::UnknownService)
                | Self::Send(SendError::TooLarge)
        )
    }
}

impl From<RequestError> for LinkError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Refused(r) => Self::Refused(r),
            RequestError::Closed(CloseReason::Timeout) => Self::Timeout,
            RequestError::Closed(r) => Self::Closed(r),
            RequestError::Send(e) => Self::Send(e),
        }
    }
}
