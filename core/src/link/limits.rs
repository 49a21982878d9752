//! The bounds one link holds its peer to (issue 16, item 4).

use core::time::Duration;

use crate::rate::RateLimit;

/// Per-link limits. Breaking a `max_…` bound closes the link with
/// [`CloseReason::LimitExceeded`](super::CloseReason::LimitExceeded)
/// (a penalised reason); `concurrent_requests` and `request_rate` are
/// answered with a refusal instead, since a well-behaved but busy peer
/// can hit them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// From the start until the peer's identity proof verifies, the whole
    /// exchange must end within this time.
    pub handshake_timeout: Duration,
    /// Bytes the peer may send before its identity proof verifies (WarpNet
    /// buffered 50 MiB before authentication). The handshake and the proof
    /// take under 400.
    pub pre_proof_bytes: usize,
    /// Largest reassembled request or response body.
    pub max_message_len: usize,
    /// Bytes the link may hold for the application: the message being
    /// reassembled plus delivered-but-unpolled events, and the queue of
    /// frames not yet transmitted. Past it the link closes; shells read from
    /// the socket only while [`Link::wants_input`](super::Link::wants_input).
    pub max_buffered_bytes: usize,
    /// Requests from the peer that the application has not answered yet;
    /// more are refused with [`Refusal::Busy`](super::Refusal::Busy).
    pub concurrent_requests: usize,
    /// Requests per second from the peer; faster ones are refused with
    /// [`Refusal::RateLimited`](super::Refusal::RateLimited).
    pub request_rate: RateLimit,
    /// The link closes after this long without a byte from the peer, once
    /// connected (`None`: never; the shell may keep links open).
    pub idle_timeout: Option<Duration>,
}

impl Limits {
    /// Defaults for a node on the open internet.
    pub const DEFAULT: Self = Self {
        handshake_timeout: Duration::from_secs(10),
        pre_proof_bytes: 4096,
        max_message_len: 1 << 20,
        max_buffered_bytes: 4 << 20,
        concurrent_requests: 64,
        request_rate: RateLimit {
            rate: 1000.0,
            burst: 1000.0,
        },
        idle_timeout: Some(Duration::from_secs(300)),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
