//! The Router's settings.

use std::time::Duration;

use keyway_core::rate::RateLimit;
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::backoff::BackoffLimits;
use keyway_core::sidewire::node::widening::REFERENCE_RACE_WIDTH;
use keyway_core::sidewire::node::{NodeConfig, NodeTables};
use keyway_core::sidewire::screen::ScreenLimits;
use keyway_core::sidewire::{Peer, Slot};

use crate::link::LinkConfig;

#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub link: LinkConfig,
    /// Largest AppPacket accepted or sent, checked before any signature work.
    pub max_message: usize,
    /// A pending send publishes its packet again this often.
    pub resend_every: Duration,
    /// Signature checks per second for each recently verified peer (its
    /// packets are checked before anyone else's). Junk claiming a peer's
    /// key cannot spend this: once a check fails under the key, its
    /// packets are charged to `claimed` until one verifies again.
    pub per_source: RateLimit,
    /// Node-wide signature checks per second for packets claiming a peer
    /// that failed a check since (or exceeds `per_source`).
    pub claimed: RateLimit,
    /// Node-wide signature checks per second for packets from every other
    /// key: bounds the work a flood from fresh keys costs, and how many
    /// new keys per second can reach the replay table (see DESIGN.md).
    pub unverified: RateLimit,
    /// Keys remembered as recently verified peers (about 100 bytes each).
    pub verified_peers: usize,
    /// MSGs remembered against replays (48 bytes each). The ±120 s window
    /// is covered in full up to `replay_slots / 120` messages per second;
    /// beyond that older copies are refused rather than risk delivering
    /// one twice.
    pub replay_slots: usize,
    /// Cells of the per-source watermark sketch (8 bytes each): a source
    /// whose remembered MSGs were evicted has its older copies refused,
    /// and another source is refused only if flooding keys raised all 8
    /// of its cells. See DESIGN.md for how many keys that takes.
    pub replay_watermarks: usize,
    /// How often the node checks its own subscriptions, replacing brokers
    /// that dropped and returning to them when they come back.
    pub resubscribe_every: Duration,
    /// Brokers per family subscribed beyond the set size, down the node's
    /// own ranking (at most the top 10 in all). `start` connects them
    /// all at once and returns when they have ended, at most one connect
    /// timeout after the first is up.
    /// The default reaches the top 10, every broker a sidewire 0.1.9
    /// sender may publish on: it picks whichever of its top 10 connect
    /// first (spec §10 item 10), so with fewer subscriptions about one
    /// message in 15 from it was lost even in a 3-broker pool on loopback.
    /// A pool of Keyway peers only needs 1 (redundancy when a broker
    /// fails): fewer connections, e.g. on phones.
    pub spare_subscriptions: usize,
    /// After a failed connect a broker is not tried again for this long,
    /// doubling with each further failure up to `backoff_max` (the
    /// reference locked a broker out for 20 minutes after one failure:
    /// spec §10 item 15). A success resets it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A link outside the node's own set (opened to send) is closed after
    /// this long unused, and reopened when a send needs it again.
    pub idle_timeout: Duration,
    /// Remember across restarts where each destination was reached (a JSON
    /// file, mode 0600, e.g. in the application's data directory); every
    /// send tries those brokers first (at the cost of publishing there
    /// too). `None`: no cache.
    pub hint_cache: Option<std::path::PathBuf>,
    /// How long a remembered broker stays a hint.
    pub hint_expiry: Duration,
    /// ACKs waiting for connects to their sender's set at once, at most;
    /// beyond that an inbound MSG's ACK goes only back the way it came
    /// (its sender retransmits, and every copy is acknowledged), so a
    /// flood cannot pile up work. The Router's node holds 64 at most: the
    /// lower of the two applies.
    pub max_ack_tasks: usize,
    /// Sources whose signed ACKs are kept (their 4 newest each, about
    /// 1.3 KiB per source, allocated up front), to re-send for a copy of
    /// a delivered MSG even after a flood evicted it from the replay
    /// table. The least recently acknowledged source of a bucket of 16 is
    /// forgotten first, so this should exceed `verified_peers` (see
    /// DESIGN.md).
    pub ack_cache_sources: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            link: LinkConfig::default(),
            max_message: 64 * 1024,
            resend_every: Duration::from_millis(1000),
            per_source: ScreenLimits::default().peer,
            claimed: ScreenLimits::default().claimed,
            unverified: ScreenLimits::default().unverified,
            verified_peers: 4096,
            replay_slots: 1 << 16,
            replay_watermarks: 1 << 18,
            resubscribe_every: Duration::from_secs(1),
            spare_subscriptions: REFERENCE_RACE_WIDTH,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            hint_cache: None,
            hint_expiry: Duration::from_secs(3600),
            max_ack_tasks: 256,
            ack_cache_sources: 8192,
        }
    }
}

/// The node's tables, allocated up front.
pub(super) type Tables = NodeTables<Box<[Slot]>, Box<[u64]>, Box<[Peer]>, Box<[SourceAcks]>>;

impl RouterConfig {
    /// The core node's settings; its connect timeout is the link's plus
    /// `margin` (the link's own handshake deadline ends a connect first).
    /// Hints come from the Router's hint cache with each send (the node
    /// keeps none of its own).
    pub(super) fn node_config(&self, margin: Duration) -> NodeConfig {
        NodeConfig {
            max_message: self.max_message,
            resend_every: self.resend_every,
            screen: ScreenLimits {
                peer: self.per_source,
                claimed: self.claimed,
                unverified: self.unverified,
                ..ScreenLimits::default()
            },
            resubscribe_every: self.resubscribe_every,
            spare_subscriptions: self.spare_subscriptions,
            backoff: BackoffLimits {
                base: self.backoff_base,
                max: self.backoff_max,
            },
            idle_timeout: self.idle_timeout,
            connect_timeout: self.link.connect_timeout.saturating_add(margin),
            hint_expiry: self.hint_expiry.as_secs(),
            use_hints: false,
            max_ack_walks: self.max_ack_tasks,
        }
    }

    pub(super) fn node_tables(&self) -> Tables {
        NodeTables {
            slots: vec![Slot::EMPTY; self.replay_slots].into_boxed_slice(),
            watermarks: vec![0u64; self.replay_watermarks].into_boxed_slice(),
            peers: vec![Peer::EMPTY; self.verified_peers].into_boxed_slice(),
            acks: vec![SourceAcks::EMPTY; self.ack_cache_sources].into_boxed_slice(),
        }
    }
}
