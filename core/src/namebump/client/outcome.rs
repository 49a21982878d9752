//! How an exchange ends.

use crate::namebump::EncodeError;
use crate::namebump::client::error_kind::ErrorKind;
use crate::namebump::client::leg::{Leg, LegFault};
use crate::namebump::usage::Usage;

/// The result of an exchange. The reply's bytes (the value, the owner, the
/// echoed request) are read with `Exchange::reply` after this.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// GET: the name exists; the reply carries value, owner and timestamp.
    Found,
    /// GET: no such name (or it has expired).
    NotFound,
    /// PUT: stored; the reply is the server's echo.
    Stored,
    /// DEL: done (deleting a missing name succeeds).
    Deleted,
    /// USAGE: the address's quota state.
    Usage(Usage),
    Failed(Failure),
}

/// Why an exchange failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Failure {
    RejectedAtQuota,
    WouldBump,
    NotOwner,
    /// The server refused the request, and the time in its error reply is
    /// `skew` seconds from ours.
    ClockSkew {
        skew: f64,
    },
    ServerError,
    /// No reply in `attempts` attempts.
    Timeout {
        attempts: u32,
    },
    /// The last attempt's legs all failed; `leg` is the one whose error the
    /// shell should report (a network error's reason beats a bare timeout).
    Network {
        leg: Leg,
        fault: LegFault,
    },
    BadReply,
    InvalidInput(EncodeError),
}

impl Failure {
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Self::RejectedAtQuota => ErrorKind::RejectedAtQuota,
            Self::WouldBump => ErrorKind::WouldBump,
            Self::NotOwner => ErrorKind::NotOwner,
            Self::ClockSkew { .. } => ErrorKind::ClockSkew,
            Self::ServerError => ErrorKind::ServerError,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Network { .. } => ErrorKind::Network,
            Self::BadReply => ErrorKind::BadReply,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
        }
    }
}
