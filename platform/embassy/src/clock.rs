//! The machines' monotonic time from embassy-time's, and back.
//!
//! Both count microseconds; the machines' origin is embassy-time's own
//! (the driver's boot), so one conversion serves every machine.

use keyway_core::time::Instant;

/// Now, on the machines' clock.
pub fn now() -> Instant {
    from_embassy(embassy_time::Instant::now())
}

pub fn from_embassy(at: embassy_time::Instant) -> Instant {
    Instant::from_micros(at.as_micros())
}

/// A machine's deadline as an embassy-time instant (for a `Timer::at`).
pub fn to_embassy(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.as_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_trip_through_embassy_time() {
        for micros in [0, 1, 999_999, 1_234_567_890, u64::MAX] {
            let at = Instant::from_micros(micros);
            assert_eq!(from_embassy(to_embassy(at)), at);
        }
    }
}
