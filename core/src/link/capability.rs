//! Authorization apart from authentication (issue 16, item 3): what a
//! proven identity may do, as capabilities on a per-peer allow-list.
//!
//! Spellings (the CLI's `--allow PUBKEY=CAP[,CAP…]`): `message`,
//! `sync:<stream public key, base64>`, `sync:*`, `registry-write`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use super::service::Service;
use super::stream_key_b64;
use crate::identity::{KeyError, PUBLIC_KEY_LEN, PublicKey};

/// Length of a Drayer stream public key (Ed25519).
pub const STREAM_KEY_LEN: usize = 32;

/// One right a peer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// Send direct messages.
    Message,
    /// Sync one Drayer stream.
    Sync([u8; STREAM_KEY_LEN]),
    /// Sync every stream this node serves.
    SyncAll,
    /// Write to the registry.
    RegistryWrite,
}

/// What one request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A direct message.
    Message,
    /// A page of this stream.
    Sync([u8; STREAM_KEY_LEN]),
    /// A registry write.
    RegistryWrite,
    /// A registry info request (the stream key and position, issue 17):
    /// for writers and for whoever may sync every stream.
    RegistryInfo,
}

impl Access {
    /// The access a request needs, from its service and the start of its
    /// body (a sync request's body starts with the stream key). `None`
    /// when a sync body is too short to name a stream.
    pub fn of_request(service: Service, body: &[u8]) -> Option<Self> {
        match service {
            Service::Message => Some(Self::Message),
            // Judged by the first byte alone, as the registry dispatches:
            // 0 asks for info, anything else is a write (which starts with
            // its version). Later chunks cannot turn one into the other.
            Service::RegistryWrite if body.first() == Some(&0) => Some(Self::RegistryInfo),
            Service::RegistryWrite => Some(Self::RegistryWrite),
            Service::Sync => body
                .get(..STREAM_KEY_LEN)
                .and_then(|k| k.try_into().ok())
                .map(Self::Sync),
        }
    }
}

impl Capability {
    /// Whether this capability grants `access`.
    pub fn grants(&self, access: &Access) -> bool {
        match (self, access) {
            (Self::Message, Access::Message) => true,
            (Self::Sync(k), Access::Sync(want)) => k == want,
            (Self::SyncAll, Access::Sync(_)) => true,
            (Self::RegistryWrite, Access::RegistryWrite | Access::RegistryInfo) => true,
            (Self::SyncAll, Access::RegistryInfo) => true,
            _ => false,
        }
    }
}

/// Why a capability or allow-list entry did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// Not one of the four spellings.
    Unknown,
    /// `sync:` followed by something that is not a 44-character base64 key.
    BadStreamKey,
    /// An entry without `=`.
    MissingEquals,
    /// An entry with no capability after `=`.
    Empty,
    /// The public key before `=` did not parse.
    Key(KeyError),
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str(
                "unknown capability (expected message, sync:<base64 key>, sync:* or registry-write)",
            ),
            Self::BadStreamKey => f.write_str("sync: needs a stream public key in base64 (44 characters)"),
            Self::MissingEquals => f.write_str("allow entry must be PUBKEY=CAP[,CAP...]"),
            Self::Empty => f.write_str("allow entry lists no capability"),
            Self::Key(e) => write!(f, "allow entry key: {e}"),
        }
    }
}

impl core::error::Error for CapabilityError {}

impl FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(s: &str) -> Result<Self, CapabilityError> {
        match s {
            "message" => Ok(Self::Message),
            "registry-write" => Ok(Self::RegistryWrite),
            "sync:*" => Ok(Self::SyncAll),
            _ => match s.strip_prefix("sync:") {
                Some(key) => stream_key_b64::decode(key)
                    .map(Self::Sync)
                    .ok_or(CapabilityError::BadStreamKey),
                None => Err(CapabilityError::Unknown),
            },
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message => f.write_str("message"),
            Self::RegistryWrite => f.write_str("registry-write"),
            Self::SyncAll => f.write_str("sync:*"),
            Self::Sync(key) => {
                f.write_str("sync:")?;
                stream_key_b64::display(key, f)
            }
        }
    }
}

/// The peers a node accepts requests from, and what each may do. A peer
/// that is not listed holds no capability (default deny), unless the node
/// grants some to every proven peer ([`AllowList::allow_anyone`]: the
/// registry's `sync:*` and `registry-write`, issue 17).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    peers: BTreeMap<[u8; PUBLIC_KEY_LEN], Vec<Capability>>,
    anyone: Vec<Capability>,
}

impl AllowList {
    /// An empty list: every request is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants `caps` to `peer` (added to what it already holds).
    pub fn allow(&mut self, peer: &PublicKey, caps: impl IntoIterator<Item = Capability>) {
        let held = self.peers.entry(*peer.as_bytes()).or_default();
        for cap in caps {
            if !held.contains(&cap) {
                held.push(cap);
            }
        }
    }

    /// Grants `caps` to every peer that proves an identity on this network
    /// (listed or not). Authentication still holds: only holders of the
    /// network key who prove a key get this far.
    pub fn allow_anyone(&mut self, caps: impl IntoIterator<Item = Capability>) {
        for cap in caps {
            if !self.anyone.contains(&cap) {
                self.anyone.push(cap);
            }
        }
    }

    /// Parses and adds one `PUBKEY=CAP[,CAP…]` entry; the value splits at
    /// the first `=` (issue 16, item 8).
    pub fn add_entry(&mut self, entry: &str) -> Result<(), CapabilityError> {
        let (key, caps) = entry
            .split_once('=')
            .ok_or(CapabilityError::MissingEquals)?;
        let key = PublicKey::from_hex(key).map_err(CapabilityError::Key)?;
        let mut parsed = Vec::new();
        for cap in caps.split(',') {
            let cap = cap.trim();
            if !cap.is_empty() {
                parsed.push(cap.parse()?);
            }
        }
        if parsed.is_empty() {
            return Err(CapabilityError::Empty);
        }
        self.allow(&key, parsed);
        Ok(())
    }

    /// The capabilities `peer` holds (empty if it is not listed).
    pub fn capabilities(&self, peer: &PublicKey) -> &[Capability] {
        self.peers
            .get(peer.as_bytes())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether `peer` may make a request that needs `access`.
    pub fn allows(&self, peer: &PublicKey, access: &Access) -> bool {
        self.capabilities(peer)
            .iter()
            .chain(&self.anyone)
            .any(|c| c.grants(access))
    }

    /// Whether `peer` is listed at all.
    pub fn contains(&self, peer: &PublicKey) -> bool {
        self.peers.contains_key(peer.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn capabilities_parse_and_print() {
        for text in ["message", "registry-write", "sync:*"] {
            assert_eq!(text.parse::<Capability>().unwrap().to_string(), text);
        }
        let sync: Capability = alloc::format!("sync:{KEY_B64}").parse().unwrap();
        assert_eq!(sync, Capability::Sync(core::array::from_fn(|i| i as u8)));
        assert_eq!(sync.to_string(), alloc::format!("sync:{KEY_B64}"));
        assert_eq!(
            "sync:".parse::<Capability>(),
            Err(CapabilityError::BadStreamKey)
        );
        assert_eq!(
            "Message".parse::<Capability>(),
            Err(CapabilityError::Unknown)
        );
        assert_eq!("sync".parse::<Capability>(), Err(CapabilityError::Unknown));
    }

    #[test]
    fn grants_are_exact() {
        let stream = [5u8; 32];
        let other = [6u8; 32];
        assert!(Capability::Sync(stream).grants(&Access::Sync(stream)));
        assert!(!Capability::Sync(stream).grants(&Access::Sync(other)));
        assert!(Capability::SyncAll.grants(&Access::Sync(other)));
        assert!(!Capability::SyncAll.grants(&Access::Message));
        assert!(!Capability::Message.grants(&Access::RegistryWrite));
        assert!(!Capability::RegistryWrite.grants(&Access::Sync(stream)));
        assert_eq!(Access::of_request(Service::Sync, &[5u8; 31]), None);
        assert_eq!(
            Access::of_request(Service::Sync, &[5u8; 40]),
            Some(Access::Sync(stream))
        );
    }

    #[test]
    fn allow_entries_split_at_the_first_equals() {
        let kp = crate::Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let stranger = crate::Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let mut list = AllowList::new();
        list.add_entry(&alloc::format!("{}=message,sync:{KEY_B64}", kp.public()))
            .unwrap();
        assert!(list.allows(kp.public(), &Access::Message));
        assert!(list.allows(
            kp.public(),
            &Access::Sync(core::array::from_fn(|i| i as u8))
        ));
        assert!(!list.allows(kp.public(), &Access::RegistryWrite));
        assert!(!list.allows(stranger.public(), &Access::Message));
        assert!(!list.contains(stranger.public()));
        assert_eq!(list.add_entry("nokey"), Err(CapabilityError::MissingEquals));
        assert_eq!(
            list.add_entry(&alloc::format!("{}=", kp.public())),
            Err(CapabilityError::Empty)
        );
        assert!(matches!(
            list.add_entry("00=message"),
            Err(CapabilityError::Key(_))
        ));
    }

    #[test]
    fn anyone_grants_only_what_it_names() {
        let listed = crate::Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let stranger = crate::Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let mut list = AllowList::new();
        list.allow(listed.public(), [Capability::Message]);
        list.allow_anyone([Capability::SyncAll, Capability::RegistryWrite]);
        for peer in [listed.public(), stranger.public()] {
            assert!(list.allows(peer, &Access::RegistryWrite));
            assert!(list.allows(peer, &Access::Sync([5; STREAM_KEY_LEN])));
        }
        assert!(list.allows(listed.public(), &Access::Message));
        assert!(!list.allows(stranger.public(), &Access::Message));
        assert!(list.allows(stranger.public(), &Access::RegistryInfo));
        assert!(!list.contains(stranger.public()));
    }

    #[test]
    fn registry_info_is_for_writers_and_readers_of_every_stream() {
        assert_eq!(
            Access::of_request(Service::RegistryWrite, &[0]),
            Some(Access::RegistryInfo)
        );
        assert_eq!(
            Access::of_request(Service::RegistryWrite, &[0, 1, 2]),
            Some(Access::RegistryInfo)
        );
        assert_eq!(
            Access::of_request(Service::RegistryWrite, &[1, 0]),
            Some(Access::RegistryWrite)
        );
        assert_eq!(
            Access::of_request(Service::RegistryWrite, &[]),
            Some(Access::RegistryWrite)
        );
        assert!(Capability::SyncAll.grants(&Access::RegistryInfo));
        assert!(Capability::RegistryWrite.grants(&Access::RegistryInfo));
        assert!(!Capability::SyncAll.grants(&Access::RegistryWrite));
        assert!(!Capability::Sync([0; STREAM_KEY_LEN]).grants(&Access::RegistryInfo));
        assert!(!Capability::Message.grants(&Access::RegistryInfo));
    }
}
