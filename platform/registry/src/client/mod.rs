//! The registry's client: writes go to the server over a secure link (the
//! link's proven identity is the owner), reads are answered by a local
//! [`Replica`]. **Read-your-writes**: the server's reply to a write names
//! the position of the record it appended, and a write returns only once
//! the replica holds that position — not merely once the replica grew,
//! which someone else's write could cause.

pub mod connector;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use keyway_core::PublicKey;
use keyway_core::drayer::VerifyingKey;
use keyway_core::identity::Keypair;
use keyway_core::link::{LinkConfig, Service};
use keyway_core::registry::Op;
use keyway_drayer::http::HttpSource;
use keyway_drayer::sync::PullLimits;
use keyway_link::stream_sync::LinkSource;
use keyway_link::{LinkError, PeerAddress};
use tokio::sync::Mutex;

use crate::replica::{Replica, ReplicaError};
pub use connector::Connector;
pub use wire::Reply;

/// Longest one pull may take before it is retried from where it stopped.
const PULL_TIME: Duration = Duration::from_secs(60);
/// First pause between syncs while waiting for a position.
const FIRST_WAIT: Duration = Duration::from_millis(20);
/// Longest pause between syncs while waiting for a position.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Why a client operation failed.
// `LinkError` carries two public keys (WrongPeerIdentity); errors are rare
// and short-lived, so boxing would only make matching clumsy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or refused the request.
    #[error("server {server}: {source}")]
    Link {
        server: String,
        #[source]
        source: LinkError,
    },
    /// The server's answer is not a registry reply.
    #[error("server sent a malformed reply: {0}")]
    Malformed(String),
    /// The replica failed (or did not catch up in time).
    #[error("replica: {0}")]
    Replica(#[from] ReplicaError),
}

/// What the client needs to reach the server and keep its replica.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hold only the newest `keep` records (a newest-N replica).
    pub keep: Option<usize>,
    /// Time allowed for one request, and for the replica to reach a
    /// write's position.
    pub timeout: Duration,
    /// Pull the stream from this Drayer HTTP mirror (`http://HOST:PORT`)
    /// instead of over the link; its records are checked the same way.
    pub mirror: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            keep: None,
            timeout: Duration::from_secs(10),
            mirror: None,
        }
    }
}

/// A registry client: a link to the server and a replica on disk.
#[derive(Debug)]
pub struct Client {
    connector: Connector,
    identity: Keypair,
    replica: Arc<Mutex<Replica>>,
    options: ClientOptions,
    clock: wire::Clock,
}

impl Client {
    /// Opens the replica in `dir` and links to `server` as `config`'s
    /// identity. The registry's stream key comes from the replica if it
    /// holds one, else from the server (the link proves whose answer it
    /// is). A replica keeps the key it started with: should the server
    /// publish another stream later, it answers this client's writes
    /// `ERR:Request is for another registry`.
    pub async fn open(
        config: Arc<LinkConfig>,
        server: PeerAddress,
        dir: &std::path::Path,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let identity = config.identity.clone();
        let connector = Connector::new(config, server);
        let stream_key = match Replica::stream_key_in(dir)? {
            Some(key) => key,
            None => {
                let answer = connector
                    .request(Service::RegistryWrite, wire::info_request, options.timeout)
                    .await
                    .map_err(|source| ClientError::Link {
                        server: connector.server().to_string(),
                        source,
                    })?;
                wire::parse_info(&answer).map_err(ClientError::Malformed)?.0
            }
        };
        let replica = Replica::open(dir, stream_key, options.keep)?;
        Ok(Self {
            connector,
            identity,
            replica: Arc::new(Mutex::new(replica)),
            options,
            clock: wire::Clock::default(),
        })
    }

    /// The registry's stream key.
    pub async fn stream_key(&self) -> VerifyingKey {
        *self.replica.lock().await.stream_key()
    }

    /// This client's identity (the owner of what it registers).
    pub fn identity(&self) -> &PublicKey {
        self.identity.public()
    }

    /// The replica, shared (for a follower task, or reads beside it).
    pub fn replica(&self) -> Arc<Mutex<Replica>> {
        self.replica.clone()
    }

    /// Registers `name` for this client's identity: the server's reply,
    /// once the replica holds the record it appended.
    pub async fn register(&self, name: &str) -> Result<Reply, ClientError> {
        self.write(Op::Register, name).await
    }

    /// Deletes `name` (only its owner may): the server's reply, once the
    /// replica holds the deletion.
    pub async fn delete(&self, name: &str) -> Result<Reply, ClientError> {
        self.write(Op::Delete, name).await
    }

    async fn write(&self, op: Op, name: &str) -> Result<Reply, ClientError> {
        let reply = self.send(op, name).await?;
        if let Some(position) = reply.position {
            self.reach(position, self.options.timeout).await?;
        }
        Ok(reply)
    }

    /// Sends a write and returns the server's reply at once, without
    /// waiting for the replica ([`Self::reach`] the reply's position to
    /// read it back): for callers that batch their waits, and to measure
    /// replication lag from the acknowledgement.
    pub async fn send(&self, op: Op, name: &str) -> Result<Reply, ClientError> {
        let registry = self.stream_key().await.to_bytes();
        // Signed anew for each attempt (a fresh timestamp): a request sent
        // again unchanged would be refused as a replay.
        let first = match wire::request(op, &self.identity, registry, &self.clock, name) {
            Ok(body) => body,
            Err(invalid) => return Ok(invalid),
        };
        let mut first = Some(first);
        let answer = self
            .connector
            .request(
                Service::RegistryWrite,
                || {
                    first.take().unwrap_or_else(|| {
                        wire::request(op, &self.identity, registry, &self.clock, name)
                            .unwrap_or_default()
                    })
                },
                self.options.timeout,
            )
            .await
            .map_err(|source| self.link_error(source))?;
        wire::parse_reply(&answer).map_err(ClientError::Malformed)
    }

    /// Brings the replica up to the server's current position (asked of
    /// the server, then pulled over the link or from the mirror), within
    /// the client's timeout: what a one-shot read does first.
    pub async fn catch_up(&self) -> Result<i64, ClientError> {
        let answer = self
            .connector
            .request(
                Service::RegistryWrite,
                wire::info_request,
                self.options.timeout,
            )
            .await
            .map_err(|source| self.link_error(source))?;
        let (key, position) = wire::parse_info(&answer).map_err(ClientError::Malformed)?;
        if key != self.stream_key().await {
            return Err(ClientError::Malformed(
                "the server now publishes another stream than this replica's".into(),
            ));
        }
        self.reach(position, self.options.timeout).await?;
        Ok(self.replica.lock().await.position()?)
    }

    /// The server's position once it is beyond `after`, or when `wait`
    /// ends (the server caps it at keyway-core's `MAX_WAIT_MS`): a long
    /// poll, so a follower pulls as soon as anyone writes. A server that
    /// predates the waiting request answers at once, unchanged.
    pub async fn wait_beyond(&self, after: i64, wait: Duration) -> Result<i64, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        // Dialed within the usual time: a dial holds the connector, and
        // the writes behind it must not wait as long as the long poll.
        self.connector
            .link(self.options.timeout)
            .await
            .map_err(|source| self.link_error(source))?;
        let answer = self
            .connector
            .request(
                Service::RegistryWrite,
                || wire::wait_request(after, wait_ms),
                // The server holds it for the wait; the usual time on top.
                wait.saturating_add(self.options.timeout),
            )
            .await
            .map_err(|source| self.link_error(source))?;
        Ok(wire::parse_info(&answer).map_err(ClientError::Malformed)?.1)
    }

    /// The position the replica holds.
    pub async fn position(&self) -> Result<i64, ClientError> {
        Ok(self.replica.lock().await.position()?)
    }

    /// Syncs until the replica holds `position`, within `timeout`.
    pub async fn reach(&self, position: i64, timeout: Duration) -> Result<(), ClientError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let mut pause = FIRST_WAIT;
        let mut failed = None;
        // The follower may have pulled it already.
        if self.replica.lock().await.position()? >= position {
            return Ok(());
        }
        // Bounded by the deadline: every round either returns or sleeps.
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let held = match tokio::time::timeout(left, self.sync()).await {
                Ok(Ok(held)) => held,
                Ok(Err(e)) => {
                    failed = Some(e);
                    self.replica.lock().await.position()?
                }
                Err(_) => self.replica.lock().await.position()?,
            };
            if held >= position {
                return Ok(());
            }
            if tokio::time::Instant::now() + pause >= deadline {
                // Why it could not sync says more than that it is behind.
                return Err(failed.unwrap_or_else(|| {
                    ReplicaError::Behind {
                        wanted: position,
                        held,
                        waited: started.elapsed(),
                    }
                    .into()
                }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_WAIT);
        }
    }

    /// Pulls what the server has beyond the replica (over the link, or
    /// from the HTTP mirror if one was given); returns the position
    /// reached.
    pub async fn sync(&self) -> Result<i64, ClientError> {
        let limits = PullLimits {
            max_time: PULL_TIME,
            ..PullLimits::default()
        };
        if let Some(url) = &self.options.mirror {
            let mut replica = self.replica.lock().await;
            let source = HttpSource::new(url, *replica.stream_key())
                .with_timeouts(self.options.timeout, self.options.timeout);
            return Ok(replica.sync(source, &limits).await?);
        }
        let link = self
            .connector
            .link(self.options.timeout)
            .await
            .map_err(|source| self.link_error(source))?;
        let mut replica = self.replica.lock().await;
        let source = LinkSource::new(link, *replica.stream_key());
        match replica.sync(source, &limits).await {
            Ok(position) => Ok(position),
            Err(e) => {
                // The link may be gone: the next sync dials again.
                drop(replica);
                self.connector.reset().await;
                Err(e.into())
            }
        }
    }

    /// The owner of `name`, from the replica.
    pub async fn lookup(&self, name: &str) -> Result<Option<PublicKey>, ClientError> {
        Ok(self.replica.lock().await.lookup(name)?)
    }

    /// Every name in the replica, in byte order.
    pub async fn list(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.replica.lock().await.list()?)
    }

    fn link_error(&self, source: LinkError) -> ClientError {
        ClientError::Link {
            server: self.connector.server().to_string(),
            source,
        }
    }
}
