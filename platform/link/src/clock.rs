//! The link machine's clock: microseconds since the node started, on
//! tokio's monotonic clock (so tests with a paused runtime move it too).

use std::time::Duration;

use keyway_core::time::Instant;

/// Converts between tokio's instants and the core's.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: tokio::time::Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
        }
    }

    /// Now, for the core.
    pub fn now(&self) -> Instant {
        let micros = self.base.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A core instant as a tokio deadline (far in the future for
    /// `Instant::NEVER`).
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.base
            .checked_add(Duration::from_micros(at.as_micros()))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
