//! What the page shows: the node's status, supplied by the node.
//!
//! The UI crate knows nothing of links or streams; the node implements
//! [`StatusSource`] (a closure will do) over its own state, and the page
//! renders whatever it gets. Every string is shown as text, never as
//! markup, since peer-chosen values (addresses, capability names) end up here.

use serde::{Deserialize, Serialize};

/// A snapshot of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The node's identity: its secp256k1 public key, 66 hex digits (`node_pk=`).
    pub identity: String,
    /// Addresses the node's link listener is bound to.
    pub listening: Vec<String>,
    /// Open links.
    pub links: Vec<LinkInfo>,
    /// Peers on the allow-list, with what they may do.
    pub peers: Vec<PeerInfo>,
    /// Drayer streams the node holds or serves.
    pub streams: Vec<StreamInfo>,
}

/// Who opened a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The peer dialled this node.
    Inbound,
    /// This node dialled the peer.
    Outbound,
}

/// One open link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The peer's proven identity (66 hex digits), or `None` before its proof.
    pub peer: Option<String>,
    /// The peer's address.
    pub address: String,
    /// Who dialled.
    pub direction: Direction,
    /// Seconds since the link was established.
    pub age_secs: u64,
    /// Application bytes received.
    pub bytes_in: u64,
    /// Application bytes sent.
    pub bytes_out: u64,
}

/// One peer on the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's identity (66 hex digits).
    pub identity: String,
    /// Its capabilities as configured (`message`, `sync:<key>`, `sync:*`, …).
    pub capabilities: Vec<String>,
    /// Seconds left on a blocklist entry, if it is blocked.
    pub blocked_for_secs: Option<u64>,
}

/// One Drayer stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream's public key in base64, as `keyway drayer new` prints it.
    pub public_key: String,
    /// Where the stream's file is.
    pub path: String,
    /// Records it holds.
    pub records: u64,
    /// Whether the node serves it over links.
    pub served: bool,
}

/// Where the page's status comes from. Called on the UI's tasks for each
/// request the paired page makes (every few seconds): it must not block.
pub trait StatusSource: Send + Sync + 'static {
    /// The node's status now.
    fn status(&self) -> Status;
}

impl<F> StatusSource for F
where
    F: Fn() -> Status + Send + Sync + 'static,
{
    fn status(&self) -> Status {
        self()
    }
}
