//! Broker pool files: TOML, one `[[broker]]` table per broker.
//!
//! ```toml
//! # ranking = "weighted"     # optional, pool-wide: every peer must agree
//! [[broker]]
//! host = "127.0.0.2"
//! port = 1883
//! # weight = 1.0            # used by the weighted ranking only
//! # af = 10                 # family for a hostname (IP literals say it themselves)
//! ```

use keyway_core::sidewire::rendezvous::{AF_INET, AF_INET6, Ranking};
use serde::Deserialize;

use crate::pool::{BrokerEntry, Pool};

#[derive(Debug, thiserror::Error)]
pub enum PoolFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid pool file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("broker {host}: {what}")]
    Invalid { host: String, what: &'static str },
    #[error("the pool has no broker")]
    Empty,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    ranking: Option<String>,
    #[serde(default)]
    broker: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    host: String,
    port: u16,
    weight: Option<f64>,
    af: Option<u8>,
}

impl Pool {
    /// Parses a pool file's text.
    pub fn from_toml(text: &str) -> Result<Self, PoolFileError> {
        let file: File = toml::from_str(text)?;
        let ranking = match file.ranking.as_deref() {
            None | Some("compatible") => Ranking::Compatible,
            Some("weighted") => Ranking::Weighted,
            Some(_) => {
                return Err(PoolFileError::Invalid {
                    host: String::new(),
                    what: "ranking must be \"compatible\" or \"weighted\"",
                });
            }
        };
        let mut brokers = Vec::with_capacity(file.broker.len());
        for e in file.broker {
            let mut entry = BrokerEntry::new(&e.host, e.port);
            let invalid = |what| PoolFileError::Invalid {
                host: e.host.clone(),
                what,
            };
            if let Some(w) = e.weight {
                if !(w.is_finite() && w > 0.0) {
                    return Err(invalid("weight must be a positive number"));
                }
                entry.weight = w;
            }
            if let Some(af) = e.af {
                if af != AF_INET && af != AF_INET6 {
                    return Err(invalid("af must be 2 (IPv4) or 10 (IPv6)"));
                }
                entry.af = af;
            }
            if e.host.is_empty() || e.port == 0 {
                return Err(invalid("host and port are required"));
            }
            brokers.push(entry);
        }
        if brokers.is_empty() {
            return Err(PoolFileError::Empty);
        }
        Ok(Self { brokers, ranking })
    }

    /// Reads a pool file.
    pub fn load(path: &std::path::Path) -> Result<Self, PoolFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PoolFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The public broker pool bundled with sidewire 0.1.9 (aionetiface
    /// 0.0.24), for real deployments. Tests never contact it.
    pub fn public() -> Self {
        Self::from_toml(include_str!("../pools/public.toml")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_files_parse_with_defaults_and_refuse_nonsense() {
        let pool = Pool::from_toml(
            "[[broker]]\nhost = \"127.0.0.2\"\nport = 1883\n\n[[broker]]\nhost = \"::1\"\nport = 1884\nweight = 2.5\n",
        )
        .unwrap();
        assert_eq!(pool.ranking, Ranking::Compatible);
        assert_eq!((pool.brokers[0].af, pool.brokers[0].weight), (2, 1.0));
        assert_eq!((pool.brokers[1].af, pool.brokers[1].weight), (10, 2.5));
        let weighted =
            Pool::from_toml("ranking = \"weighted\"\n[[broker]]\nhost = \"a\"\nport = 1\n")
                .unwrap();
        assert_eq!(weighted.ranking, Ranking::Weighted);
        assert!(matches!(Pool::from_toml(""), Err(PoolFileError::Empty)));
        assert!(Pool::from_toml("[[broker]]\nhost = \"a\"\nport = 1\nweight = 0\n").is_err());
        assert!(Pool::from_toml("[[broker]]\nhost = \"a\"\nport = 1\naf = 7\n").is_err());
        assert!(Pool::from_toml("[[broker]]\nhost = \"a\"\nport = 1\nprot = 2\n").is_err());
        assert!(Pool::from_toml("[[broker]]\nhost = \"a\"\n").is_err());
    }

    #[test]
    fn the_bundled_public_pool_has_the_reference_hosts() {
        let pool = Pool::public();
        let v4 = pool.brokers.iter().filter(|b| b.af == AF_INET).count();
        let v6 = pool.brokers.iter().filter(|b| b.af == AF_INET6).count();
        assert_eq!((v4, v6), (11, 3));
    }
}
