//! What bounds one pull, and what it counts.

use core::time::Duration;

use crate::drayer::Meta;

/// What one record counts against [`PullLimits::max_bytes`] beyond its
/// value, key and type: its signed fields and field names on the wire.
pub const RECORD_OVERHEAD: u64 = 256;

/// Bounds on one pull, whatever the peer does. A pull that reaches one
/// keeps what it applied (each page is committed), so the next pull goes
/// on from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullLimits {
    /// The whole pull: requests, checks and store work (default
    /// [`Self::DEFAULT_MAX_TIME`]).
    pub max_time: Duration,
    /// Records received: their values, keys and types, and
    /// [`RECORD_OVERHEAD`] each (default [`Self::DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
}

impl PullLimits {
    /// 15 minutes: a LAN or a decent link moves gigabytes in that time.
    pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(15 * 60);
    /// 4 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
    /// No bound: for a source in the same process (a chain in memory).
    pub const NONE: Self = Self {
        max_time: Duration::MAX,
        max_bytes: u64::MAX,
    };
}

impl Default for PullLimits {
    fn default() -> Self {
        Self {
            max_time: Self::DEFAULT_MAX_TIME,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// What a pull did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    pub inserted: usize,
    pub repairs: usize,
}

/// One record of a page as the pull judges it: where it sits in the
/// modification chain and what it weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRecord {
    pub modified: i64,
    /// [`record_size`] of its key, type and value.
    pub size: u64,
}

impl PageRecord {
    /// A record received with its key, type and value (`None` in a
    /// metadata-only copy).
    pub fn new(meta: &Meta, key: &str, kind: &str, value: Option<&[u8]>) -> Self {
        Self {
            modified: meta.modified,
            size: record_size(key.len(), kind.len(), value.map_or(0, <[u8]>::len)),
        }
    }
}

/// What a record counts against the byte budget: [`RECORD_OVERHEAD`]
/// plus its key, type and value lengths (a metadata-only copy has no value).
pub fn record_size(key: usize, kind: usize, value: usize) -> u64 {
    [key, kind, value]
        .into_iter()
        .fold(RECORD_OVERHEAD, |sum, n| {
            sum.saturating_add(u64::try_from(n).unwrap_or(u64::MAX))
        })
}
