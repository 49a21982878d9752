//! The monotonic time every state machine takes as an argument.
//!
//! The core reads no clock (it runs where there is none, and tests drive it
//! in fake time): shells pass `now` into each `handle_…`/`poll_…` call.
//! An [`Instant`] counts microseconds from an origin the shell chooses (its
//! start, a boot counter, `embassy_time::Instant`); only differences
//! between instants of one shell mean anything. Wall-clock time, where a
//! protocol puts it on the wire (namebump's `updated`, sidewire's
//! timestamps), is a separate argument in Unix seconds, read by shells from
//! a [`Clock`].

use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// Wall-clock time in Unix seconds: the one clock type of every shell
/// (issue 13). Shells read it and pass the value in; the machines never
/// call it. Tests substitute [`ManualClock`]; the Python wheel its own.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in fractional seconds.
    fn now(&self) -> f64;

    /// Whole Unix seconds (sidewire's timestamps); 0 before 1970.
    fn unix_secs(&self) -> u64 {
        let now = self.now();
        if now.is_finite() && now > 0.0 {
            now as u64
        } else {
            0
        }
    }

    /// Unix microseconds (Drayer's record times); 0 before 1970.
    fn unix_micros(&self) -> i64 {
        let now = self.now();
        if now.is_finite() && now > 0.0 {
            (now * 1e6) as i64
        } else {
            0
        }
    }
}

/// The host's wall clock.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[cfg(feature = "std")]
impl Clock for SystemClock {
    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A clock that only moves when told to.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct ManualClock(core::sync::atomic::AtomicU64);

#[cfg(feature = "std")]
impl ManualClock {
    pub fn new(now: f64) -> Self {
        Self(core::sync::atomic::AtomicU64::new(now.to_bits()))
    }

    pub fn set(&self, now: f64) {
        self.0
            .store(now.to_bits(), core::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: f64) {
        self.set(self.now() + seconds);
    }
}

#[cfg(feature = "std")]
impl Clock for ManualClock {
    fn now(&self) -> f64 {
        f64::from_bits(self.0.load(core::sync::atomic::Ordering::SeqCst))
    }
}

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

    // ManualClock is std-only; the no_std test build skips only this case.
    #[cfg(feature = "std")]
    #[test]
    fn wall_clock_conversions_refuse_nonsense() {
        let clock = ManualClock::new(1_800_000_000.25);
        assert_eq!(clock.unix_secs(), 1_800_000_000);
        assert_eq!(clock.unix_micros(), 1_800_000_000_250_000);
        clock.set(f64::NAN);
        assert_eq!((clock.unix_secs(), clock.unix_micros()), (0, 0));
        clock.set(-5.0);
        assert_eq!((clock.unix_secs(), clock.unix_micros()), (0, 0));
    }

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
