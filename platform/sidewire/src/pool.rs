//! The brokers every peer shares and how each destination ranks them
//! (spec §5): the pool a Router is given, and that hint brokers join.

use keyway_core::PublicKey;
use keyway_core::sidewire::rendezvous::{self, AF_INET, AF_INET6, Broker, Ranked, Ranking};

/// A broker of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerEntry {
    /// Hostname or IP literal: the broker's identity in the ranking.
    pub host: String,
    pub port: u16,
    /// Only used with [`Ranking::Weighted`].
    pub weight: f64,
    /// The family it is ranked in: 2 (IPv4) or 10 (IPv6).
    pub af: u8,
}

impl BrokerEntry {
    /// A broker of weight 1, in the family of its address (IPv4 for names).
    pub fn new(host: &str, port: u16) -> Self {
        let af = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            AF_INET6
        } else {
            AF_INET
        };
        Self {
            host: host.to_owned(),
            port,
            weight: 1.0,
            af,
        }
    }

    pub fn af(&self) -> u8 {
        self.af
    }

    pub(crate) fn address(&self) -> String {
        if self.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The brokers every peer shares, and how they are ranked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pool {
    pub brokers: Vec<BrokerEntry>,
    pub ranking: Ranking,
}

impl Pool {
    /// Brokers for `dest`, best first, family by family (IPv4 then IPv6),
    /// each family's list as ranked: where `dest` listens and is sent to.
    pub fn ranked(&self, dest: &PublicKey) -> Vec<Vec<&BrokerEntry>> {
        [AF_INET, AF_INET6]
            .into_iter()
            .map(|af| {
                let family: Vec<&BrokerEntry> =
                    self.brokers.iter().filter(|b| b.af() == af).collect();
                let input: Vec<Broker<'_>> = family
                    .iter()
                    .map(|b| Broker {
                        host: &b.host,
                        weight: b.weight,
                    })
                    .collect();
                let mut scratch = vec![Ranked::default(); family.len()];
                rendezvous::rank(af, dest.as_bytes(), &input, self.ranking, &mut scratch)
                    .iter()
                    .map(|r| family[r.index])
                    .collect()
            })
            .collect()
    }
}
