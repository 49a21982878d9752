//! Where each destination was last reached: the brokers its ACKs came back
//! through, remembered across restarts (spec §6.7) so the next send tries
//! them first.
//!
//! A JSON file `{ "<dest hex>": [{"host", "port", "seen"}] }`, written
//! atomically (a temporary file created with mode 0600, then renamed) and
//! only when something changed: a new broker, or one last seen more than a
//! minute ago. Entries older than the expiry are neither used nor kept.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pool::BrokerEntry;

/// Brokers remembered per destination, at most.
const PER_DEST: usize = 4;
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
    entries: HashMap<String, Vec<Seen>>,
}

impl HintCache {
    /// Loads `path` if it exists (an unreadable file starts an empty cache
    /// and is replaced on the next save); `None` disables the cache.
    pub(crate) fn open(path: Option<PathBuf>, expiry: Duration) -> Self {
        let entries = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
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
        let max_age = max_age.map_or(self.expiry, |a| a.min(self.expiry));
        self.entries
            .get(dest)
            .map(|seen| {
                seen.iter()
                    .filter(|s| now.saturating_sub(s.seen) <= max_age)
                    .map(|s| BrokerEntry::new(&s.host, s.port))
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
        let expiry = self.expiry;
        let seen = self.entries.entry(dest.to_owned()).or_default();
        seen.retain(|s| now.saturating_sub(s.seen) <= expiry);
        let changed = match seen.iter_mut().find(|s| s.host == host && s.port == port) {
            Some(s) => {
                let stale = now.saturating_sub(s.seen) > 60;
                s.seen = now;
                stale
            }
            None => {
                seen.push(Seen {
                    host: host.to_owned(),
                    port,
                    seen: now,
                });
                true
            }
        };
        seen.sort_by_key(|s| core::cmp::Reverse(s.seen));
        seen.truncate(PER_DEST);
        if self.entries.len() > DESTS {
            let newest = |v: &Vec<Seen>| v.first().map_or(0, |s| s.seen);
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, v)| newest(v))
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        changed
    }

    /// The file's new contents and where they go, if there is a file.
    pub(crate) fn snapshot(&self) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path.clone()?;
        serde_json::to_vec(&self.entries)
            .ok()
            .map(|bytes| (path, bytes))
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
