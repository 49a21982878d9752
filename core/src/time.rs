//! The monotonic time every state machine takes as an argument.
//!
//! The core reads no clock (it runs where there is none, and tests drive it
//! in fake time): shells pass `now` into each `handle_…`/`poll_…` call.
//! An [`Instant`] counts microseconds from an origin the shell chooses (its
//! start, a boot counter, `embassy_time::Instant`); only differences
//! between instants of one shell mean anything. Wall-clock time, where a
//! protocol puts it on the wire (namebump's `updated`, sidewire's
//! timestamps), is a separate argument in Unix seconds.

use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point in monotonic time, in microseconds from the shell's origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The shell's origin.
    pub const ZERO: Self = Self(0);

    /// Far enough in the future to mean "never" for any timer.
    pub const NEVER: Self = Self(u64::MAX);

    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time since `earlier`; zero if `earlier` is later (a shell whose
    /// clock source stepped back must not make a timer fire early or panic).
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, or [`Instant::NEVER`] on overflow.
    pub fn saturating_add(self, d: Duration) -> Self {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(micros))
    }
}

impl Add<Duration> for Instant {
    type Output = Self;

    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub for Instant {
    type Output = Duration;

    fn sub(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Instant::from_secs(5);
        assert_eq!(t + Duration::from_millis(1500), Instant::from_millis(6500));
        assert_eq!(Instant::from_secs(1) - t, Duration::ZERO);
        assert_eq!(t - Instant::from_secs(1), Duration::from_secs(4));
        assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
        assert_eq!(t + Duration::MAX, Instant::NEVER);
    }
}
