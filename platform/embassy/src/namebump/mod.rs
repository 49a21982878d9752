//! The namebump client (spec §4.5) on embassy-net: a shell around
//! [`Exchange`](keyway_core::namebump::client::Exchange), which decides
//! the request's bytes, the UDP/TCP race, retries, reply matching and
//! the reading of error replies. Same
//! semantics, retries and typed errors as the tokio client
//! (`keyway-namebump`), since both drive the same machine.
//!
//! Files: `driver` (the loop feeding one exchange), `tcp_leg` (the TCP
//! leg's connection, step by step), `error` (why a call failed).
//!
//! IPv4 only: the stack is built with `proto-ipv4`, so the machine is told
//! the server has no IPv6 address and never opens those legs.

mod driver;
mod error;
mod tcp_leg;

use embassy_net::{IpAddress, IpEndpoint, Stack};
use keyway_core::namebump::client::{Families, Outcome, Policy, Target};
use keyway_core::namebump::usage::Usage;
use keyway_core::namebump::{EncodeError, MAX_VALUE_LEN};
use keyway_core::rand_core::CryptoRng;
use keyway_core::time::Clock;
use keyway_core::{Keypair, PublicKey};

pub use error::NamebumpError;
pub use keyway_core::namebump::client::{Behavior, ErrorKind, Failure};

use driver::Step;

/// The exchange this client drives: IPv4 only, so it frames one TCP reply
/// stream (a second, for an IPv6 leg never opened, would be a reply's
/// bytes unused).
type Exchange = keyway_core::namebump::client::Exchange<1>;

/// A name's current value, as the server returned it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    value: [u8; MAX_VALUE_LEN],
    len: usize,
    /// The owner's compressed public key.
    pub owner: [u8; 33],
    /// Unix seconds of the last write.
    pub timestamp: f64,
}

impl Record {
    pub fn value(&self) -> &[u8] {
        &self.value[..self.len]
    }
}

/// Resolves `host` (an IPv4 literal, or a name through the stack's DNS).
pub async fn resolve(stack: Stack<'_>, host: &str, port: u16) -> Result<IpEndpoint, NamebumpError> {
    if let Ok(ip) = host.parse::<core::net::Ipv4Addr>() {
        return Ok(IpEndpoint::new(IpAddress::Ipv4(ip), port));
    }
    let found = stack
        .dns_query(host, embassy_net::dns::DnsQueryType::A)
        .await
        .map_err(|_| NamebumpError::Resolve)?;
    let ip = found.first().ok_or(NamebumpError::Resolve)?;
    Ok(IpEndpoint::new(*ip, port))
}

/// A client of one namebump server, reached at an IPv4 address.
pub struct Client<'s, C> {
    stack: Stack<'s>,
    server: IpEndpoint,
    server_pk: PublicKey,
    clock: C,
    policy: Policy,
}

impl<C> core::fmt::Debug for Client<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'s, C: Clock> Client<'s, C> {
    /// A client of the server at `server` (an IPv4 endpoint) whose key is
    /// `server_pk`; `clock` is the wall clock signed requests carry.
    pub fn new(stack: Stack<'s>, server: IpEndpoint, server_pk: PublicKey, clock: C) -> Self {
        Self {
            stack,
            server,
            server_pk,
            clock,
            policy: Policy::default(),
        }
    }

    /// Attempts, their pause and reply timeout, and whether UDP races TCP.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Reads a name. `Ok(None)` when it does not exist (or has expired).
    pub async fn get<R: CryptoRng + ?Sized>(
        &self,
        name: &[u8],
        rng: &mut R,
    ) -> Result<Option<Record>, NamebumpError> {
        let mut built = build(|| Exchange::get(name, self.policy, self.target()));
        let exchange = in_place(&mut built)?;
        match self.finish(exchange, rng).await? {
            Outcome::NotFound => Ok(None),
            Outcome::Found => found(exchange),
            _ => Err(Failure::BadReply.into()),
        }
    }

    /// Claims or updates a name with `key`; ttl in seconds (at most 60).
    pub async fn put<R: CryptoRng + ?Sized>(
        &self,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
        rng: &mut R,
    ) -> Result<(), NamebumpError> {
        let policy = self.policy;
        let mut built =
            build(|| Exchange::put(name, value, key, behavior, ttl, policy, self.target()));
        match self.finish(in_place(&mut built)?, rng).await? {
            Outcome::Stored => Ok(()),
            _ => Err(Failure::BadReply.into()),
        }
    }

    /// Deletes a name owned by `key`. Deleting a missing name succeeds.
    pub async fn delete<R: CryptoRng + ?Sized>(
        &self,
        name: &[u8],
        key: &Keypair,
        ttl: Option<f64>,
        rng: &mut R,
    ) -> Result<(), NamebumpError> {
        let mut built = build(|| Exchange::delete(name, key, ttl, self.policy, self.target()));
        match self.finish(in_place(&mut built)?, rng).await? {
            Outcome::Deleted => Ok(()),
            _ => Err(Failure::BadReply.into()),
        }
    }

    /// This address's quota state (any key may ask).
    pub async fn usage<R: CryptoRng + ?Sized>(
        &self,
        key: &Keypair,
        ttl: Option<f64>,
        rng: &mut R,
    ) -> Result<Usage, NamebumpError> {
        let mut built = build(|| Exchange::usage(key, ttl, self.policy, self.target()));
        match self.finish(in_place(&mut built)?, rng).await? {
            Outcome::Usage(usage) => Ok(usage),
            _ => Err(Failure::BadReply.into()),
        }
    }

    /// Drives `exchange` to its outcome. The owner lookup an error reply
    /// to PUT or DEL asks for runs in the same exchange
    /// ([`Exchange::start_lookup`]): a second one would hold another
    /// exchange's kilobytes while the first waits.
    async fn finish<R: CryptoRng + ?Sized>(
        &self,
        exchange: &mut Exchange,
        rng: &mut R,
    ) -> Result<Outcome, NamebumpError> {
        // The machine asks once at most; the bound only keeps the loop finite.
        for _ in 0..4 {
            match self.drive(exchange, rng).await {
                Step::Done(Outcome::Failed(failure)) => return Err(failure.into()),
                Step::Done(outcome) => return Ok(outcome),
                Step::LookupOwner => {
                    if !exchange.start_lookup() {
                        exchange.handle_lookup(crate::clock::now(), None);
                    }
                }
            }
        }
        Err(Failure::ServerError.into())
    }

    /// The server as the machine needs it: its key, reached over IPv4.
    fn target(&self) -> Target {
        Target {
            key: self.server_pk,
            families: Families {
                v4: true,
                v6: false,
            },
        }
    }
}

/// The record a finished GET found. Never inlined: the record (a
/// kilobyte of value) is built here, not as a temporary in the frame of
/// the task's poll, under every deeper call.
#[inline(never)]
fn found(exchange: &Exchange) -> Result<Option<Record>, NamebumpError> {
    let reply = exchange.reply().ok_or(Failure::BadReply)?;
    let owner = reply.vkc.ok_or(Failure::BadReply)?;
    let mut value = [0u8; MAX_VALUE_LEN];
    let len = reply.value.len().min(MAX_VALUE_LEN);
    value[..len].copy_from_slice(&reply.value[..len]);
    Ok(Some(Record {
        value,
        len,
        owner,
        timestamp: reply.updated,
    }))
}

/// Builds an exchange in a frame of its own (never inlined): the
/// constructor's temporaries (the request, the reply streams) would
/// otherwise stay in the frame of the task's poll, under every deeper
/// call. The exchange itself is returned in place, into the caller's future.
#[inline(never)]
fn build(make: impl FnOnce() -> Result<Exchange, EncodeError>) -> Result<Exchange, EncodeError> {
    make()
}

/// The exchange where its constructor left it. Taken out of its `Result`
/// (`?` on it), it would be moved, and an exchange is kilobytes: the
/// temporary and the copy cost as much stack again in the caller's frame
/// (measured on a Cortex-M image, tests/bench-embassy-budget.sh).
fn in_place(built: &mut Result<Exchange, EncodeError>) -> Result<&mut Exchange, EncodeError> {
    built.as_mut().map_err(|e| *e)
}
