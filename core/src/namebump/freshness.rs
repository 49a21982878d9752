//! The freshness window every signed request must fall in (spec §5 step 4).
//!
//! Accepted: `0 < ttl ≤ 60` and `now − ttl ≤ updated ≤ now + 5`. The
//! reference compares floats directly, so NaN passes every check and a
//! signer could mint a never-expiring DEL (bug 25); here anything that is
//! not finite is refused first.

use core::fmt;

/// The largest ttl a server accepts, seconds.
pub const MAX_REQUEST_TTL: f64 = 60.0;
/// How far ahead of the server clock a request may be dated, seconds.
pub const CLOCK_SKEW_SLACK: f64 = 5.0;

/// Why a request is not fresh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FreshnessError {
    /// `updated`, `ttl` or the clock is NaN or infinite.
    NotFinite,
    /// `ttl` is not in (0, 60].
    BadTtl { ttl: f64 },
    /// Dated more than 5 s ahead of the server clock.
    FromTheFuture { ahead: f64 },
    /// Older than its own ttl.
    Expired { age: f64, ttl: f64 },
}

impl fmt::Display for FreshnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFinite => f.write_str("timestamp or ttl is not a finite number"),
            Self::BadTtl { ttl } => write!(f, "ttl {ttl} s is outside (0, {MAX_REQUEST_TTL}]"),
            Self::FromTheFuture { ahead } => {
                write!(
                    f,
                    "request dated {ahead:.3} s ahead of the server clock (check the clock)"
                )
            }
            Self::Expired { age, ttl } => {
                write!(
                    f,
                    "request is {age:.3} s old, older than its ttl of {ttl} s"
                )
            }
        }
    }
}

impl core::error::Error for FreshnessError {}

/// Checks a request's `updated` and `ttl` against the server clock `now`
/// (all in Unix seconds).
pub fn check_freshness(now: f64, updated: f64, ttl: f64) -> Result<(), FreshnessError> {
    if !(now.is_finite() && updated.is_finite() && ttl.is_finite()) {
        return Err(FreshnessError::NotFinite);
    }
    if updated > now + CLOCK_SKEW_SLACK {
        return Err(FreshnessError::FromTheFuture {
            ahead: updated - now,
        });
    }
    if ttl <= 0.0 || ttl > MAX_REQUEST_TTL {
        return Err(FreshnessError::BadTtl { ttl });
    }
    if now - updated > ttl {
        return Err(FreshnessError::Expired {
            age: now - updated,
            ttl,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    #[test]
    fn window_edges_are_inclusive() {
        assert_eq!(check_freshness(NOW, NOW, 10.0), Ok(()));
        assert_eq!(check_freshness(NOW, NOW + 5.0, 10.0), Ok(()));
        assert_eq!(check_freshness(NOW, NOW - 10.0, 10.0), Ok(()));
        assert_eq!(check_freshness(NOW, NOW - 60.0, 60.0), Ok(()));
    }

    #[test]
    fn stale_future_and_bad_ttl_are_refused() {
        assert!(matches!(
            check_freshness(NOW, NOW + 5.5, 10.0),
            Err(FreshnessError::FromTheFuture { .. })
        ));
        assert!(matches!(
            check_freshness(NOW, NOW - 10.5, 10.0),
            Err(FreshnessError::Expired { .. })
        ));
        assert_eq!(
            check_freshness(NOW, NOW, 0.0),
            Err(FreshnessError::BadTtl { ttl: 0.0 })
        );
        assert_eq!(
            check_freshness(NOW, NOW, -1.0),
            Err(FreshnessError::BadTtl { ttl: -1.0 })
        );
        assert_eq!(
            check_freshness(NOW, NOW, 60.5),
            Err(FreshnessError::BadTtl { ttl: 60.5 })
        );
    }

    #[test]
    fn nan_and_infinities_never_pass() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                check_freshness(NOW, bad, 10.0),
                Err(FreshnessError::NotFinite)
            );
            assert_eq!(
                check_freshness(NOW, NOW, bad),
                Err(FreshnessError::NotFinite)
            );
            assert_eq!(
                check_freshness(bad, NOW, 10.0),
                Err(FreshnessError::NotFinite)
            );
        }
    }
}
