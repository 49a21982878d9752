//! Why a client call failed: the machine's [`Failure`], or no address.

use core::fmt;

use keyway_core::namebump::EncodeError;
use keyway_core::namebump::client::{ErrorKind, Failure, LegFault, Transport};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NamebumpError {
    /// The exchange ended without the outcome asked for.
    Failed(Failure),
    /// The server's host name resolved to no IPv4 address.
    Resolve,
}

impl NamebumpError {
    /// The kind every face reports (the CLI's `kind` word, the C status
    /// code, the Python exception): the core's one mapping (issue 13).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Failed(f) => f.kind(),
            Self::Resolve => ErrorKind::Network,
        }
    }
}

impl From<Failure> for NamebumpError {
    fn from(f: Failure) -> Self {
        Self::Failed(f)
    }
}

impl From<EncodeError> for NamebumpError {
    fn from(e: EncodeError) -> Self {
        Self::Failed(Failure::InvalidInput(e))
    }
}

impl fmt::Display for NamebumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(Failure::RejectedAtQuota) => {
                f.write_str("rejected: this address's quota of names is full")
            }
            Self::Failed(Failure::WouldBump) => {
                f.write_str("rejected: storing this would bump another name (THROW_BUMP)")
            }
            Self::Failed(Failure::NotOwner) => {
                f.write_str("not the owner: the name belongs to another key")
            }
            Self::Failed(Failure::ClockSkew { skew }) => write!(
                f,
                "request refused as expired: the server clock is {skew:+.1} s from ours"
            ),
            Self::Failed(Failure::ServerError) => f.write_str("the server refused the request"),
            Self::Failed(Failure::Timeout { attempts }) => {
                write!(f, "no reply after {attempts} attempts")
            }
            Self::Failed(Failure::Network { leg, fault }) => {
                let how = match fault {
                    LegFault::Io => "the connection failed",
                    LegFault::Unframeable => "the reply stream is not sealed to our reply key",
                };
                let transport = match leg.transport {
                    Transport::Udp => "UDP",
                    Transport::Tcp => "TCP",
                };
                write!(f, "{how} ({transport})")
            }
            Self::Failed(Failure::BadReply) => f.write_str("the server's reply is malformed"),
            Self::Failed(Failure::InvalidInput(e)) => write!(f, "invalid input: {e}"),
            Self::Resolve => f.write_str("the server's name resolves to no IPv4 address"),
        }
    }
}

impl core::error::Error for NamebumpError {}
