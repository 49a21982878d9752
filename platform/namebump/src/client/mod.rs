//! The namebump client (spec §4.5 and the seed's API), for tokio: a thin
//! shell around [`keyway_core::namebump::client::Exchange`], which decides
//! everything (the request's bytes, the UDP/TCP × IPv4/IPv6 race, retries,
//! reply matching, the reading of error replies; see its documentation).
//!
//! This module keeps only I/O: resolving the server's name, one socket or
//! connection per leg the machine transmits on (a task each, dropped when
//! the machine closes the leg), the clocks, and the GET the machine asks
//! for when it needs a name's owner.
//!
//! Files: `error` (why a call failed), `config` (timeouts and
//! retries), `driver` (the loop feeding the machine), `leg_socket` (one
//! socket or connection per leg).

mod config;
mod driver;
mod error;
mod leg_socket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use keyway_core::namebump::Op;
use keyway_core::namebump::client::{Exchange, Families, Family, Outcome, Target};
use keyway_core::namebump::usage::Usage;
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::{Keypair, PublicKey};
use tokio::net::lookup_host;

pub use config::ClientConfig;
pub use error::ClientError;
pub use keyway_core::namebump::client::{Behavior, ErrorKind};

use crate::clock::{Clock, SystemClock};

/// A name's current value, as the server returned it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub value: Vec<u8>,
    /// The owner's compressed public key.
    pub owner: [u8; 33],
    /// Unix seconds of the last write (whole seconds).
    pub timestamp: f64,
}

/// A client of one namebump server.
#[derive(Clone)]
pub struct Client {
    /// Resolved addresses, IPv4 first.
    servers: Arc<[SocketAddr]>,
    label: Arc<str>,
    server_pk: PublicKey,
    clock: Arc<dyn Clock>,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.label)
            .finish_non_exhaustive()
    }
}

/// A server's reply, decrypted and matched to its request.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub op: Op,
    pub pkid: u32,
    /// For PUT and DEL the request's own time, echoed.
    pub updated: f64,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    pub vkc: Option<[u8; 33]>,
}

impl Client {
    /// Resolves `server` ("host:port") and builds a client with a fresh reply key.
    pub async fn new(server: &str, server_pk: PublicKey) -> Result<Self, ClientError> {
        let mut servers: Vec<SocketAddr> = lookup_host(server)
            .await
            .map_err(|source| ClientError::Network {
                server: server.to_owned(),
                source,
            })?
            .collect();
        if servers.is_empty() {
            return Err(ClientError::InvalidInput(format!(
                "{server} resolves to no address"
            )));
        }
        servers.sort_by_key(SocketAddr::is_ipv6);
        servers.dedup();
        Ok(Self {
            servers: servers.into(),
            label: server.into(),
            server_pk,
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
        })
    }

    pub fn with_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The server's resolved addresses, IPv4 first.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.servers
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads a name. `Ok(None)` when it does not exist (or has expired).
    pub async fn get(&self, name: &[u8]) -> Result<Option<Record>, ClientError> {
        let exchange = Exchange::get(name, self.config.policy(), self.target())?;
        let (exchange, outcome) = self.run(exchange).await?;
        match (outcome, exchange.reply()) {
            (Outcome::NotFound, _) => Ok(None),
            (Outcome::Found, Some(reply)) => Ok(Some(Record {
                value: reply.value.to_vec(),
                owner: reply.vkc.ok_or(ClientError::BadReply)?,
                timestamp: reply.updated,
            })),
            _ => Err(ClientError::BadReply),
        }
    }

    /// Claims or updates a name with `key`; ttl in seconds (at most 60).
    pub async fn put(
        &self,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
    ) -> Result<(), ClientError> {
        self.put_reply(name, value, key, behavior, ttl)
            .await
            .map(drop)
    }

    /// [`Self::put`], returning the server's reply (what the reference's
    /// Python client hands its callers).
    pub async fn put_reply(
        &self,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
    ) -> Result<Reply, ClientError> {
        let exchange = Exchange::put(
            name,
            value,
            key,
            behavior,
            ttl,
            self.config.policy(),
            self.target(),
        )?;
        let (exchange, outcome) = self.run(exchange).await?;
        match (outcome, exchange.reply()) {
            (Outcome::Stored, Some(p)) => Ok(Reply {
                op: p.op,
                pkid: p.pkid,
                updated: p.updated,
                name: p.name.to_vec(),
                value: p.value.to_vec(),
                vkc: p.vkc,
            }),
            _ => Err(ClientError::BadReply),
        }
    }

    /// Deletes a name owned by `key`. Deleting a missing name succeeds.
    pub async fn delete(
        &self,
        name: &[u8],
        key: &Keypair,
        ttl: Option<f64>,
    ) -> Result<(), ClientError> {
        let exchange = Exchange::delete(name, key, ttl, self.config.policy(), self.target())?;
        match self.run(exchange).await?.1 {
            Outcome::Deleted => Ok(()),
            _ => Err(ClientError::BadReply),
        }
    }

    /// This address's quota state (any key may ask).
    pub async fn usage(&self, key: &Keypair, ttl: Option<f64>) -> Result<Usage, ClientError> {
        let exchange = Exchange::usage(key, ttl, self.config.policy(), self.target())?;
        match self.run(exchange).await?.1 {
            Outcome::Usage(usage) => Ok(usage),
            _ => Err(ClientError::BadReply),
        }
    }

    fn target(&self) -> Target {
        Target {
            key: self.server_pk,
            families: Families {
                v4: self.servers.iter().any(SocketAddr::is_ipv4),
                v6: self.servers.iter().any(SocketAddr::is_ipv6),
            },
        }
    }

    /// The address a leg of `family` goes to: the first resolved one.
    fn address(&self, family: Family) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|a| a.is_ipv6() == (family == Family::V6))
            .copied()
    }

    /// Drives `exchange` to its end: its transmits become leg tasks, their
    /// bytes and failures and the timers go back in. A successful outcome
    fn local_addr(&self, server: SocketAddr) -> SocketAddr {
        let ip = match (self.config.source, server) {
            (Some(ip), _) => ip,
            (None, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (None, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, 0)
    }
}

/// A fresh request id. Never 0: the reference replaces 0 and then fails
/// the signature (bug 27).
pub fn random_pkid() -> u32 {
    UnwrapErr(getrandom::SysRng).next_u32().max(1)
}
