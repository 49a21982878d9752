//! Where each destination was last reached: the brokers its ACKs came back
//! through, remembered across restarts (spec §6.7) so the next send tries
//! them first.
//!
//! A JSON file `{ "<dest hex>": [{"host", "port", "seen"}] }`, written
//! atomically (a temporary file created with mode 0600, then renamed) and
//! only when something changed. The rules (how many brokers per
//! destination, expiry, what counts as a change) are the core node's
//! [`DestHints`]; this file adds the file and the bound on destinations.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyway_core::sidewire::node::hints::DestHints;
use serde::{Deserialize, Serialize};

use crate::pool::BrokerEntry;

/// Destinations remembered, at most (the least recently seen go first).
const DESTS: usize = 4096;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Seen {
    host: String,
    port: u16,
    /// Unix seconds.
    seen: u64,
}

#[derive(Debug, Default)]
pub(crate) struct HintCache {
    path: Option<PathBuf>,
    expiry: u64,
    entries: HashMap<String, DestHints<(String, u16)>>,
}

impl HintCache {
    /// Loads `path` if it exists (an unreadable file starts an empty cache
    /// and is replaced on the next save); `None` disables the cache.
    pub(crate) fn open(path: Option<PathBuf>, expiry: Duration) -> Self {
        let file: HashMap<String, Vec<Seen>> = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let entries = file
            .into_iter()
            .map(|(dest, seen)| {
                let mut hints = DestHints::default();
                for s in seen {
                    hints.restore((s.host, s.port), s.seen);
                }
                (dest, hints)
            })
            .collect();
        Self {
            path,
            expiry: expiry.as_secs(),
            entries,
        }
    }

    /// Brokers `dest` was reached through, most recent first. Without a
    /// file nothing is remembered: remembered hints add a publish per
    /// message, worth it only to someone who asked for the cache.
    /// `max_age` (seconds) narrows the cache's own expiry for one pipe.
    pub(crate) fn hints(&self, dest: &str, now: u64, max_age: Option<u64>) -> Vec<BrokerEntry> {
        if self.path.is_none() {
            return Vec::new();
        }
        self.entries
            .get(dest)
            .map(|hints| {
                hints
                    .usable(now, self.expiry, max_age)
                    .map(|(host, port)| BrokerEntry::new(host, *port))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records that `dest` answered through `host:port`. Returns whether
    /// the file should be written.
    pub(crate) fn remember(&mut self, dest: &str, host: &str, port: u16, now: u64) -> bool {
        if self.path.is_none() {
            return false;
        }
        let changed = self.entries.entry(dest.to_owned()).or_default().remember(
            (host.to_owned(), port),
            now,
            self.expiry,
        );
        if self.entries.len() > DESTS
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, v)| v.newest())
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        changed
    }

    /// The file's new contents and where they go, if there is a file.
    pub(crate) fn snapshot(&self) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path.clone()?;
        let file: HashMap<&String, Vec<Seen>> = self
            .entries
            .iter()
            .map(|(dest, hints)| {
                let seen = hints
                    .all()
                    .map(|s| Seen {
                        host: s.broker.0.clone(),
                        port: s.broker.1,
                        seen: s.seen,
                    })
                    .collect();
                (dest, seen)
            })
            .collect();
        serde_json::to_vec(&file).ok().map(|bytes| (path, bytes))
    }
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
pub(crate) fn save(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn hints_survive_a_restart_expire_and_stay_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hints.json");
        let mut cache = HintCache::open(Some(path.clone()), Duration::from_secs(3600));
        assert!(cache.remember("dest", "127.0.0.2", 1883, 1000));
        assert!(
            !cache.remember("dest", "127.0.0.2", 1883, 1010),
            "seen again soon: no write"
        );
        assert!(cache.remember("dest", "127.0.0.3", 1884, 1020));
        let (p, bytes) = cache.snapshot().unwrap();
        save(&p, &bytes).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let reopened = HintCache::open(Some(path), Duration::from_secs(3600));
        let hints = reopened.hints("dest", 1030, None);
        assert_eq!(
            hints.iter().map(|h| h.port).collect::<Vec<_>>(),
            vec![1884, 1883]
        );
        // 127.0.0.2 was last seen at 1010, 127.0.0.3 at 1020.
        assert_eq!(
            reopened.hints("dest", 1010 + 3601, None).len(),
            1,
            "the older one expired"
        );
        assert!(reopened.hints("other", 1030, None).is_empty());
        // A pipe's own expiry narrows the cache's, never widens it.
        assert_eq!(reopened.hints("dest", 1030, Some(15)).len(), 1);
        assert_eq!(reopened.hints("dest", 1010 + 3601, Some(u64::MAX)).len(), 1);
    }

    #[test]
    fn a_broken_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hints.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(
            HintCache::open(Some(path), Duration::from_secs(60))
                .hints("d", 0, None)
                .is_empty()
        );
    }
}
