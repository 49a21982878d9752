//! A node's link configuration from its files: the unlocked identity, the
//! network key and the allow-list.

use keyway_core::link::{AllowList, CapabilityError, Limits, LinkConfig};

use crate::identity_file::UnlockedIdentity;
use crate::network_key::NetworkKey;

/// Largest request or response on a node's links: a Drayer page of up to
/// [`crate::stream_sync::MAX_PAGE_BYTES`] plus its framing.
pub const MAX_MESSAGE_LEN: usize = 4 << 20;

/// The limits a node's links run with: the core's defaults, with messages
/// large enough for a Drayer page.
pub fn node_limits() -> Limits {
    Limits {
        max_message_len: MAX_MESSAGE_LEN,
        max_buffered_bytes: 4 * MAX_MESSAGE_LEN,
        ..Limits::DEFAULT
    }
}

/// Builds the allow-list from `--allow PUBKEY=CAP[,CAP…]` entries (each
/// split at its first `=`).
pub fn allow_list<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<AllowList, (String, CapabilityError)> {
    let mut allow = AllowList::new();
    for entry in entries {
        allow.add_entry(entry).map_err(|e| (entry.to_owned(), e))?;
    }
    Ok(allow)
}

/// The configuration of a node's links.
pub fn link_config(
    identity: &UnlockedIdentity,
    network_key: &NetworkKey,
    allow: AllowList,
) -> LinkConfig {
    LinkConfig {
        identity: identity.secrets.identity().clone(),
        network_key: keyway_core::link::NetworkKey::from_bytes(*network_key.as_bytes()),
        allow,
        limits: node_limits(),
    }
}
