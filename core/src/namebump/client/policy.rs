//! When an exchange retries and which legs it races.

use core::time::Duration;

/// Attempts and timers. The defaults are the reference client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all; 0 counts as 1.
    pub attempts: u32,
    /// Pause between an attempt that got no reply and the next.
    pub retry_pause: Duration,
    /// How long one attempt waits for a reply, from its last transmit.
    pub reply_timeout: Duration,
    /// Race UDP next to TCP; `false` sends over TCP only, for networks
    /// that drop UDP.
    pub udp: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: 3,
            retry_pause: Duration::from_millis(500),
            reply_timeout: Duration::from_secs(2),
            udp: true,
        }
    }
}
