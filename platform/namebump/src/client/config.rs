//! Timeouts and retries: the machine's policy, and the source address.

use std::net::IpAddr;
use std::time::Duration;

use keyway_core::namebump::client::Policy;

/// Timeouts and retries. The defaults are the reference client's.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub attempts: u32,
    pub retry_pause: Duration,
    /// How long one attempt waits for a reply.
    pub reply_timeout: Duration,
    /// Bind outgoing sockets to this address (quota tests, multi-homed hosts).
    pub source: Option<IpAddr>,
    /// Race UDP next to TCP (the default); `false` sends over TCP only, for
    /// networks that drop UDP.
    pub udp: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let policy = Policy::default();
        Self {
            attempts: policy.attempts,
            retry_pause: policy.retry_pause,
            reply_timeout: policy.reply_timeout,
            source: None,
            udp: policy.udp,
        }
    }
}

impl ClientConfig {
    pub(super) fn policy(&self) -> Policy {
        Policy {
            attempts: self.attempts,
            retry_pause: self.retry_pause,
            reply_timeout: self.reply_timeout,
            udp: self.udp,
        }
    }
}
