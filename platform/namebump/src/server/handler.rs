//! One request in, at most one reply out (spec §5–§6, with the fixes of §10).
//!
//! Order of checks: decrypt (undecryptable input gets no reply at all: no
//! reflection, bug 7), decode, require a reply key (never answer in
//! plaintext, bug 6), freshness for everything but GET (finite values only,
//! bug 25), signature, replay cache, then the store. The replay cache only
//! saves work and repeats answers: whether a PUT or DEL has effect is the
//! store's rule (only a request newer than the name's last write,
//! tombstones included), which survives restarts and cache evictions.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use keyway_core::Keypair;
use keyway_core::PublicKey;
use keyway_core::ecies;
use keyway_core::identity::SECRET_KEY_LEN;
use keyway_core::namebump::freshness::check_freshness;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST;
use keyway_core::namebump::usage::{MAX_USAGE_LEN, Usage};
use keyway_core::namebump::{Op, Packet, reply};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::signature::DIGEST_LEN;

use super::metrics::Metrics;
use super::replay::ReplayCache;
use crate::clock::Clock;
use crate::store::{
    DelOutcome, DelRequest, IpKey, Limits, NameStore, PutOutcome, PutRequest, StoreError,
};

/// Everything a request needs; shared by every listener.
pub(crate) struct Handler<S> {
    pub(crate) key: Keypair,
    pub(crate) store: S,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) replay: ReplayCache,
    pub(crate) metrics: Metrics,
}

/// A reply plaintext and how the request ended, for metrics.
struct Outcome {
    plaintext: Arc<[u8]>,
    result: &'static str,
}

fn encode(packet: &Packet<'_>) -> Arc<[u8]> {
    let mut buf = [0u8; MAX_PACKET_LEN];
    // Replies are built from decoded requests and stored rows, all within
    // the wire limits, so encoding cannot fail; an empty reply is dropped.
    match packet.encode(&mut buf) {
        Ok(n) => Arc::from(&buf[..n]),
        Err(_) => Arc::from(&[][..]),
    }
}

/// A reply's seal but for the encryption itself: a fresh ephemeral key,
/// its ECDH with the requester's key (the expensive part) and an IV.
struct SealKey {
    sealing: ecies::Sealing,
    iv: [u8; ecies::BLOCK_LEN],
}

/// The ephemeral key and IV come from one read of the system's random
/// source: one system call per reply where `ecies::seal` makes two (issue
/// 12, CPU per request). `None` if the random source fails: no reply
/// rather than a panic.
fn seal_key(to: &PublicKey) -> Option<SealKey> {
    let mut random = [0u8; SECRET_KEY_LEN + ecies::BLOCK_LEN];
    getrandom::fill(&mut random).ok()?;
    let (secret, iv) = random.split_at(SECRET_KEY_LEN);
    // Uniform over the valid scalars, as `Keypair::generate`'s rejection
    // sampling; 32 random bytes are out of range with chance ~2^-128.
    let ephemeral = match Keypair::from_secret_bytes(secret) {
        Ok(key) => key,
        Err(_) => Keypair::generate(&mut UnwrapErr(getrandom::SysRng)),
    };
    let iv: [u8; ecies::BLOCK_LEN] = iv.try_into().ok()?;
    let sealing = ecies::Sealing::new(to, &ephemeral);
    // Best effort, as the core's `Sealing`: the secret opens this reply.
    random = [0u8; SECRET_KEY_LEN + ecies::BLOCK_LEN];
    std::hint::black_box(&random);
    Some(SealKey { sealing, iv })
}

/// Encrypts a reply under a key made for it (used once).
fn seal_with(key: SealKey, plaintext: &[u8]) -> Option<Vec<u8>> {
    let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
    let n = key.sealing.seal(plaintext, &key.iv, &mut sealed).ok()?;
    sealed.truncate(n);
    Some(sealed)
}

/// The packet as the owner signed it, re-encoded (decoding is strict, so
/// these are the bytes received).
fn signed_bytes(packet: &Packet<'_>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; packet.encoded_len()];
    let n = packet.encode(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn seal_reply(to: &PublicKey, plaintext: &[u8]) -> Option<Vec<u8>> {
    seal_with(seal_key(to)?, plaintext)
}

/// What a signed request to execute brings: its signer and its digest
/// (the replay cache's key).
struct Checked {
    owner: [u8; 33],
    digest: [u8; DIGEST_LEN],
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Get => "get",
        Op::Put => "put",
        Op::Del => "del",
        Op::Usage => "usage",
        Op::Error | Op::Unknown(_) => "other",
    }
}

impl<S: NameStore> Handler<S> {
    fn error(&self, request: &Packet<'_>, now: f64, result: &'static str) -> Outcome {
        Outcome {
            plaintext: encode(&reply::error(request.pkid, now, self.key.public())),
            result,
        }
    }

    /// Handles one decrypted request; returns the sealed reply, if any.
    pub(crate) async fn handle(&self, plaintext: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        let started = Instant::now();
        let (request, reply_to) = self.decode(plaintext)?;
        let outcome = self.dispatch(&request, source).await;
        self.seal(request.op, &reply_to, &outcome, started)
    }

    /// Handles one sealed request (a UDP datagram) and gives its sealed
    /// reply, if any, to `send`. A PUT is finished where the store
    /// completes the write (`NameStore::put_then`): on SQLite the writer
    /// thread encrypts the reply and sends it right after the commit, so
    /// no task is woken to do it (issue 12: a wake-up per PUT). The
    /// expensive half of the seal (the ECDH) is done first, here, on a
    /// runtime worker, beside other requests.
    pub(crate) async fn handle_sealed_then(
        self: &Arc<Self>,
        sealed: &[u8],
        source: IpAddr,
        send: impl FnOnce(Vec<u8>) + Send + Sync + 'static,
    ) {
        let mut buf = [0u8; MAX_SEALED_REQUEST];
        let Ok(plaintext) = ecies::open(&self.key, sealed, &mut buf) else {
            self.metrics.dropped("undecryptable");
            return;
        };
        let started = Instant::now();
        let Some((request, reply_to)) = self.decode(plaintext) else {
            return;
        };
        let now = self.clock.now();
        // Kept until the write is queued (or the request refused).
        let _coming = (request.op == Op::Put).then(|| self.store.coming_write());
        let checked = match request.op {
            Op::Put => self.check(&request, now),
            _ => Err(self.dispatch(&request, source).await),
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(outcome) => {
                if let Some(reply) = self.seal(request.op, &reply_to, &outcome, started) {
                    send(reply);
                }
                return;
            }
        };
        let Some(key) = seal_key(&reply_to) else {
            return;
        };
        let put = put_request(&request, checked.owner, source);
        let (this, request_bytes) = (self.clone(), plaintext.to_vec());
        let then = move |result| {
            // It decoded above; the bytes are the same.
            let Ok(request) = Packet::decode(&request_bytes) else {
                return;
            };
            let outcome = this.put_outcome(&request, now, result);
            this.remember(&request, checked.digest, &outcome, now);
            if let Some(reply) = seal_with(key, &outcome.plaintext) {
                this.metrics
                    .request("put", outcome.result, started.elapsed());
                send(reply);
            }
        };
        self.store.put_then(put, now, Box::new(then)).await;
    }

    /// The request in a plaintext and the key to seal its reply to; `None`
    /// (counted) if it has no reply key or is malformed.
    fn decode<'p>(&self, plaintext: &'p [u8]) -> Option<(Packet<'p>, PublicKey)> {
        let Ok(request) = Packet::decode(plaintext) else {
            self.metrics.dropped("malformed");
            return None;
        };
        let Some(reply_to) = request
            .reply_pk
            .and_then(|pk| PublicKey::from_bytes(&pk).ok())
        else {
            self.metrics.dropped("no_reply_key");
            return None;
        };
        Some((request, reply_to))
    }

    /// Seals a reply and counts the request.
    fn seal(
        &self,
        op: Op,
        reply_to: &PublicKey,
        outcome: &Outcome,
        started: Instant,
    ) -> Option<Vec<u8>> {
        let sealed = seal_reply(reply_to, &outcome.plaintext)?;
        self.metrics
            .request(op_name(op), outcome.result, started.elapsed());
        Some(sealed)
    }

    async fn dispatch(&self, request: &Packet<'_>, source: IpAddr) -> Outcome {
        let now = self.clock.now();
        if request.op == Op::Get {
            // Reads are unsigned and unchecked, as in the reference.
            return self.get(request, now).await;
        }
        let checked = match self.check(request, now) {
            Ok(checked) => checked,
            Err(outcome) => return outcome,
        };
        let outcome = match request.op {
            Op::Put => {
                let put = put_request(request, checked.owner, source);
                let result = self.store.put(put, now).await;
                self.put_outcome(request, now, result)
            }
            Op::Del => self.delete(request, checked.owner, now).await,
            _ => self.usage(request, source, now).await,
        };
        self.remember(request, checked.digest, &outcome, now);
        outcome
    }

    /// Freshness, operation, signature and replay cache, in that order:
    /// what a signed request to execute brings, or the reply that ends it.
    fn check(&self, request: &Packet<'_>, now: f64) -> Result<Checked, Outcome> {
        if check_freshness(now, request.updated, request.ttl).is_err() {
            return Err(self.error(request, now, "not_fresh"));
        }
        if !matches!(request.op, Op::Put | Op::Del | Op::Usage) {
            return Err(self.error(request, now, "unknown_op"));
        }
        let Ok(signer) = request.verify_self_signed() else {
            return Err(self.error(request, now, "bad_signature"));
        };
        let Ok(digest) = request.digest() else {
            return Err(self.error(request, now, "malformed"));
        };
        if let Some(plaintext) = self.replay.get(&digest, now) {
            return Err(Outcome {
                plaintext,
                result: "replayed",
            });
        }
        Ok(Checked {
            owner: *signer.as_bytes(),
            digest,
        })
    }

    /// Keeps an executed request's reply for its retransmits. Store
    /// failures may succeed on a retry; everything else is final. USAGE
    /// changes nothing and is not kept: signed USAGE floods would only
    /// crowd out the replies worth keeping.
    fn remember(
        &self,
        request: &Packet<'_>,
        digest: [u8; DIGEST_LEN],
        outcome: &Outcome,
        now: f64,
    ) {
        if outcome.result != "store_error" && request.op != Op::Usage {
            let expires = request.updated + request.ttl;
            self.replay
                .insert(digest, expires, outcome.plaintext.clone(), now);
        }
    }

    async fn get(&self, request: &Packet<'_>, now: f64) -> Outcome {
        match self.store.get(request.name, now).await {
            Ok(Some(record)) => Outcome {
                plaintext: encode(&reply::found(
                    request,
                    self.key.public(),
                    &record.value,
                    record.timestamp as f64,
                    &record.owner,
                )),
                result: "found",
            },
            Ok(None) => Outcome {
                plaintext: encode(&reply::not_found(request, self.key.public())),
                result: "not_found",
            },
            Err(e) => {
                tracing::warn!(error = %e, "GET failed");
                self.error(request, now, "store_error")
            }
        }
    }

    fn put_outcome(
        &self,
        request: &Packet<'_>,
        now: f64,
        result: Result<PutOutcome, StoreError>,
    ) -> Outcome {
        let server = self.key.public();
        let (plaintext, result) = match result {
            Ok(PutOutcome::Stored) => (encode(&reply::echo(request, server)), "stored"),
            Ok(PutOutcome::StoredAfterBump) => (encode(&reply::echo(request, server)), "bumped"),
            Ok(PutOutcome::Unchanged) => (encode(&reply::echo(request, server)), "unchanged"),
            Ok(PutOutcome::AtQuota) => (encode(&reply::rejected(request, server)), "at_quota"),
            Ok(PutOutcome::NotOwner) => return self.error(request, now, "not_owner"),
            Ok(PutOutcome::Stale) => return self.error(request, now, "stale"),
            Err(e) => {
                tracing::warn!(error = %e, "PUT failed");
                return self.error(request, now, "store_error");
            }
        };
        Outcome { plaintext, result }
    }

    async fn delete(&self, request: &Packet<'_>, owner: [u8; 33], now: f64) -> Outcome {
        let del = DelRequest {
            name: request.name.to_vec(),
            owner,
            updated: request.updated,
        };
        let result = match self.store.delete(del, now).await {
            Ok(DelOutcome::Deleted) => "deleted",
            Ok(DelOutcome::Absent) => "absent",
            Ok(DelOutcome::NotOwner) => return self.error(request, now, "not_owner"),
            Ok(DelOutcome::Stale) => return self.error(request, now, "stale"),
            Err(e) => {
                tracing::warn!(error = %e, "DEL failed");
                return self.error(request, now, "store_error");
            }
        };
        Outcome {
            plaintext: encode(&reply::echo(request, self.key.public())),
            result,
        }
    }

    async fn usage(&self, request: &Packet<'_>, source: IpAddr, now: f64) -> Outcome {
        let ip = IpKey::from_ip(source);
        let names_used = match self.store.usage(ip, now).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "USAGE failed");
                return self.error(request, now, "store_error");
            }
        };
        let usage = Usage {
            af: ip.af(),
            names_used,
            name_limit: self.limits.names_for(&ip),
        };
        let mut value = [0u8; MAX_USAGE_LEN];
        let Ok(len) = usage.encode(&mut value) else {
            return self.error(request, now, "store_error");
        };
        let reply = Packet {
            value: &value[..len],
            updated: now,
            ..reply::echo(request, self.key.public())
        };
        Outcome {
            plaintext: encode(&reply),
            result: "ok",
        }
    }
}

fn put_request(request: &Packet<'_>, owner: [u8; 33], source: IpAddr) -> PutRequest {
    PutRequest {
        name: request.name.to_vec(),
        value: request.value.to_vec(),
        owner,
        ip: IpKey::from_ip(source),
        updated: request.updated,
        bump: request.bumps(),
        // For a store that publishes its names: the owner's proof.
        signed: signed_bytes(request),
    }
}
