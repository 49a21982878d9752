//! Finding streams beyond the LAN on BitTorrent's Mainline DHT (issue 17),
//! as the original Drayer did (`startBittorent()`, `announceDHT()`), with
//! the `mainline` crate (the DHT pkarr uses).
//!
//! A server announces each stream it serves under [`info_hash`] of the
//! stream's public key, with its HTTP port; a mirror asks the DHT for peers
//! under the same info-hash and pulls from them over HTTP. The DHT only
//! says where to look: every record still verifies against the public key
//! the mirror already holds, so a hostile node or peer can waste a bounded
//! amount of the mirror's time but cannot inject a record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

use futures_util::StreamExt;
use mainline::Dht;
use mainline::async_dht::AsyncDht;
use sha2::{Digest, Sha256};

/// Domain separation for [`info_hash`], so that a stream's info-hash is
/// no other application's (and no torrent's) by accident.
pub const INFO_HASH_CONTEXT: &[u8] = b"keyway-drayer-dht-v1";

/// How often a server announces each stream again. BEP 5 leaves it to each
/// node how long it keeps an announced peer (common implementations forget
/// one after about 30 minutes, `mainline`'s own store only when its LRU is
/// full), and the nodes closest to an info-hash change as nodes come and
/// go: announcing every 15 minutes, as BitTorrent clients do, keeps a
/// served stream findable across one lost round.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// How soon a failed announcement (no node reachable yet, all timed out)
/// is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// At most this many peers are taken from one lookup: a hostile node can
/// name any addresses, and a mirror tries them one after another.
pub const MAX_PEERS: usize = 16;

/// A lookup or announcement gives up after this long (a DHT query normally
/// ends within seconds, bounded by its 2 s per-request timeout and the
/// nodes it walks).
pub const QUERY_TIME: Duration = Duration::from_secs(30);

/// The DHT info-hash a stream is announced under: the first 20 bytes of
/// SHA-256(`"keyway-drayer-dht-v1"` ‖ the 32-byte Ed25519 public key).
pub fn info_hash(public_key: &[u8; 32]) -> [u8; 20] {
    let digest = Sha256::new()
        .chain_update(INFO_HASH_CONTEXT)
        .chain_update(public_key)
        .finalize();
    let mut hash = [0; 20];
    hash.copy_from_slice(&digest[..20]);
    hash
}

/// What can go wrong with the DHT.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// A `--dht-bootstrap` entry did not resolve to an IPv4 address
    /// (Mainline is IPv4).
    #[error("DHT bootstrap {0:?}: no IPv4 address")]
    Bootstrap(String),
    /// The node's UDP socket could not be opened.
    #[error("starting the DHT node: {0}")]
    Start(std::io::Error),
    /// No node stored the announcement.
    #[error("announcing on the DHT: {0}")]
    Announce(String),
}

/// One Mainline DHT node of this process.
#[derive(Debug, Clone)]
pub struct DhtNode {
    dht: AsyncDht,
}

impl DhtNode {
    /// Starts a node (in `mainline`'s adaptive mode: a client until it has
    /// seen that it is reachable) that joins through `bootstrap`
    /// (`HOST:PORT` each), or through `mainline`'s public bootstrap nodes
    /// when `bootstrap` is empty.
    ///
    /// When every bootstrap address is on loopback (a local test network)
    /// the node binds 127.0.0.1 too, so it answers nothing beyond the host.
    pub fn start(bootstrap: &[String]) -> Result<Self, DhtError> {
        let mut builder = Dht::builder();
        if !bootstrap.is_empty() {
            let mut resolved = Vec::new();
            for entry in bootstrap {
                let v4: Vec<SocketAddr> = entry
                    .to_socket_addrs()
                    .map_err(|_| DhtError::Bootstrap(entry.clone()))?
                    .filter(SocketAddr::is_ipv4)
                    .collect();
                if v4.is_empty() {
                    return Err(DhtError::Bootstrap(entry.clone()));
                }
                resolved.extend(v4);
            }
            if resolved.iter().all(|a| a.ip().is_loopback()) {
                builder.bind_address(Ipv4Addr::LOCALHOST);
            }
            let resolved: Vec<String> = resolved.iter().map(ToString::to_string).collect();
            builder.bootstrap(&resolved);
        }
        let dht = builder.build().map_err(DhtError::Start)?;
        Ok(Self {
            dht: dht.as_async(),
        })
    }

    /// The node's UDP address.
    pub async fn local_addr(&self) -> SocketAddrV4 {
        self.dht.info().await.local_addr()
    }

    /// Announces once that this host serves the stream `public_key` over
    /// HTTP on `http_port` (the nodes record the address they see the
    /// announcement come from, with this port).
    pub async fn announce(&self, public_key: &[u8; 32], http_port: u16) -> Result<(), DhtError> {
        let target = mainline::Id::from(info_hash(public_key));
        match tokio::time::timeout(QUERY_TIME, self.dht.announce_peer(target, Some(http_port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(DhtError::Announce(e.to_string())),
            Err(_) => Err(DhtError::Announce("timed out".into())),
        }
    }

    /// Announces every stream in `public_keys` now and again every
    /// [`REANNOUNCE_INTERVAL`] (after [`RETRY_INTERVAL`] when a round had
    /// a failure), forever; `outcome` hears each attempt.
    pub async fn keep_announced(
        self,
        public_keys: Vec<[u8; 32]>,
        http_port: u16,
        mut outcome: impl FnMut(&[u8; 32], &Result<(), DhtError>),
    ) {
        loop {
            let mut failed = false;
            for key in &public_keys {
                let result = self.announce(key, http_port).await;
                failed |= result.is_err();
                outcome(key, &result);
            }
            let wait = if failed {
                RETRY_INTERVAL
            } else {
                REANNOUNCE_INTERVAL
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Peers announced for the stream `public_key`: at most `max`
    /// distinct, plausible addresses (no port 0, no unspecified, broadcast
    /// or multicast address), gathered until the lookup ends or `time`
    /// passes, in the order they arrived.
    pub async fn find(
        &self,
        public_key: &[u8; 32],
        max: usize,
        time: Duration,
    ) -> Vec<SocketAddrV4> {
        let target = mainline::Id::from(info_hash(public_key));
        let mut found: Vec<SocketAddrV4> = Vec::new();
        let mut responses = self.dht.get_peers(target);
        let deadline = tokio::time::Instant::now() + time;
        while found.len() < max {
            let Ok(Some(peers)) = tokio::time::timeout_at(deadline, responses.next()).await else {
                break;
            };
            for peer in peers {
                if found.len() < max && plausible(&peer) && !found.contains(&peer) {
                    found.push(peer);
                }
            }
        }
        found
    }
}

/// An address a peer could serve HTTP on. Loopback and private addresses
/// stay: a test network and a LAN use them.
fn plausible(peer: &SocketAddrV4) -> bool {
    let ip = IpAddr::V4(*peer.ip());
    peer.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !peer.ip().is_broadcast()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed vector, computed independently:
    /// `python3 -c 'import hashlib; print(hashlib.sha256(b"keyway-drayer-dht-v1" + bytes(range(32))).hexdigest()[:40])'`
    #[test]
    fn info_hash_is_the_documented_derivation() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            base16ct::lower::encode_string(&info_hash(&key)),
            "233653223c32b47365a56a5adc733a389c724027"
        );
        let mut other = key;
        other[31] ^= 1;
        assert_ne!(info_hash(&key), info_hash(&other));
    }

    #[test]
    fn implausible_peers_are_dropped() {
        assert!(plausible(&"127.0.0.1:33125".parse().unwrap()));
        assert!(plausible(&"192.168.1.2:80".parse().unwrap()));
        assert!(!plausible(&"127.0.0.1:0".parse().unwrap()));
        assert!(!plausible(&"0.0.0.0:33125".parse().unwrap()));
        assert!(!plausible(&"224.7.130.8:33125".parse().unwrap()));
        assert!(!plausible(&"255.255.255.255:33125".parse().unwrap()));
    }
}
