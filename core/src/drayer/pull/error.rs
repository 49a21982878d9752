//! Why a pull stopped early.

use core::fmt;
use core::time::Duration;

use crate::drayer::RecordError;

/// Why a pull stopped before the source had nothing more to give. What it
/// applied before is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullError {
    /// The source cannot list its newest records (a partial mirror needs
    /// a Keyway server).
    Unsupported,
    /// Record `id` was refused: its signature (`signature` says why), or
    /// the store's rules (the shell holds the store's error), or it still
    /// needed a repair after [`super::MAX_REPAIRS`] answers.
    Refused {
        id: u64,
        signature: Option<RecordError>,
    },
    /// The source sent a record that is not after the one before it (or
    /// after the time asked for): a source that does not move forward
    /// would be asked for ever.
    NoProgress { cursor: i64, modified: i64 },
    /// The source kept serving records the store could not follow (it was
    /// written while it was read, or it is hostile): the pull asked again
    /// after the store's tip `restarts` times. What it applied is kept;
    /// pulling again goes on from there.
    Unsettled { restarts: u32 },
    /// The pull reached its time limit.
    TimeLimit(Duration),
    /// The pull reached its byte limit.
    ByteLimit(u64),
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str("the source cannot list its newest records"),
            Self::Refused {
                id,
                signature: Some(e),
            } => write!(f, "record {id} refused: {e}"),
            Self::Refused {
                id,
                signature: None,
            } => write!(f, "record {id} refused"),
            Self::NoProgress { cursor, modified } => write!(
                f,
                "the source sent a record modified at {modified} where only records after {cursor} belong"
            ),
            Self::Unsettled { restarts } => write!(
                f,
                "the source kept changing while it was read (asked again {restarts} times); \
                 what the pull applied is kept: pull again"
            ),
            Self::TimeLimit(d) => write!(f, "the pull stopped at its time limit ({d:?})"),
            Self::ByteLimit(n) => write!(f, "the pull stopped at its limit of {n} bytes"),
        }
    }
}

impl core::error::Error for PullError {}

/// A `handle_…` call the pull was not waiting for (a shell bug): nothing
/// changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfTurn;

impl fmt::Display for OutOfTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pull was not waiting for this input")
    }
}

impl core::error::Error for OutOfTurn {}
