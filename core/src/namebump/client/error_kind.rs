//! The one classification of client failures every face reports (issue 13):
//! the CLI's `kind` word, the C library's status code and the Python
//! wheel's exception all derive from it.

use core::fmt;

/// What kind of failure a client call ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The address's quota of names is full (DONT_BUMP).
    RejectedAtQuota,
    /// Storing would bump another name (THROW_BUMP).
    WouldBump,
    /// The name belongs to another key.
    NotOwner,
    /// The server refused the request as expired: the clocks differ.
    ClockSkew,
    /// No reply within the attempts.
    Timeout,
    /// The caller's input cannot be sent (too long a name or value).
    InvalidInput,
    /// The server cannot be reached (refused, reset, unresolvable).
    Network,
    /// The server refused the request for no reason the client can tell.
    ServerError,
    /// The reply is authentic but not what was asked for.
    BadReply,
}

impl ErrorKind {
    /// A stable lowercase word per kind: the CLI's `--json` `kind` and the
    /// Python `Refused` exception's first argument.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RejectedAtQuota => "rejected_at_quota",
            Self::WouldBump => "would_bump",
            Self::NotOwner => "not_owner",
            Self::ClockSkew => "clock_skew",
            Self::Timeout => "timeout",
            Self::InvalidInput => "invalid_input",
            Self::Network => "network",
            Self::ServerError => "server_error",
            Self::BadReply => "bad_reply",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
