//! Why a node answered a request with a refusal instead of data.

use core::fmt;

/// A refusal frame's reason. A refused request gets no data at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The peer proved its identity but holds no capability for this
    /// request, or is not on the allow-list (issue 16, item 3).
    NotAuthorized,
    /// The service byte names no service this node knows.
    UnknownService,
    /// Too many of the peer's requests are waiting for an answer.
    Busy,
    /// The peer sends requests faster than its rate allows.
    RateLimited,
    /// The application could not serve the request.
    Failed,
    /// A reason this version does not know (kept for forward compatibility).
    Other(u8),
}

impl Refusal {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::NotAuthorized => 1,
            Self::UnknownService => 2,
            Self::Busy => 3,
            Self::RateLimited => 4,
            Self::Failed => 5,
            Self::Other(b) => b,
        }
    }

    /// The reason a wire byte names.
    pub const fn from_byte(byte: u8) -> Self {
        match byte {
            1 => Self::NotAuthorized,
            2 => Self::UnknownService,
            3 => Self::Busy,
            4 => Self::RateLimited,
            5 => Self::Failed,
            b => Self::Other(b),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The CLI's contract reason (issue 16, item 8).
            Self::NotAuthorized => f.write_str("not authorized"),
            Self::UnknownService => f.write_str("unknown service"),
            Self::Busy => f.write_str("busy"),
            Self::RateLimited => f.write_str("rate limited"),
            Self::Failed => f.write_str("request failed"),
            Self::Other(b) => write!(f, "refused (reason {b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn bytes_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(Refusal::from_byte(b).to_byte(), b);
        }
        assert_eq!(Refusal::NotAuthorized.to_string(), "not authorized");
    }
}
