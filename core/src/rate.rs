//! A token bucket: the per-source rate limit of servers and routers.
//!
//! Sans-I/O: the caller passes the time (seconds, any monotonic origin).
//! `rate` tokens per second refill a bucket holding at most `burst`.

/// Limits of a bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket size: how many requests may arrive at once.
    pub burst: f64,
}

/// One source's bucket. Starts full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last: f64,
}

impl TokenBucket {
    /// A bucket with no tokens, as a placeholder in fixed tables.
    pub const EMPTY: Self = Self {
        tokens: 0.0,
        last: 0.0,
    };

    pub fn new(limit: &RateLimit, now: f64) -> Self {
        Self {
            tokens: limit.burst,
            last: now,
        }
    }

    /// Takes one token if there is one. A clock that steps backwards adds
    /// nothing (and is not an error).
    pub fn try_take(&mut self, limit: &RateLimit, now: f64) -> bool {
        let elapsed = now - self.last;
        if elapsed > 0.0 {
            self.tokens = (self.tokens + elapsed * limit.rate).min(limit.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now`, so forgetting it
    /// changes nothing: the rule for evicting idle sources.
    pub fn is_full(&self, limit: &RateLimit, now: f64) -> bool {
        self.tokens + (now - self.last).max(0.0) * limit.rate >= limit.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        rate: 2.0,
        burst: 3.0,
    };

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(&LIMIT, 100.0);
        assert!((0..3).all(|_| b.try_take(&LIMIT, 100.0)));
        assert!(!b.try_take(&LIMIT, 100.0));
        assert!(!b.try_take(&LIMIT, 100.25));
        assert!(b.try_take(&LIMIT, 100.5));
        assert!(!b.is_full(&LIMIT, 100.5));
        assert!(b.is_full(&LIMIT, 102.0));
        // Refill never exceeds the burst.
        assert!((0..3).all(|_| b.try_take(&LIMIT, 1000.0)));
        assert!(!b.try_take(&LIMIT, 1000.0));
    }

    #[test]
    fn a_clock_stepping_back_grants_nothing() {
        let mut b = TokenBucket::new(&LIMIT, 100.0);
        assert!((0..3).all(|_| b.try_take(&LIMIT, 100.0)));
        assert!(!b.try_take(&LIMIT, 50.0));
        assert!(!b.try_take(&LIMIT, 100.0));
    }
}
