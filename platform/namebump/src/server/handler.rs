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

use super::metrics::Metrics;
use super::replay::ReplayCache;
use crate::clock::Clock;
use crate::store::{DelOutcome, DelRequest, IpKey, Limits, NameStore, PutOutcome, PutRequest};

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

/// Seals a reply under a fresh ephemeral key and IV, both from one read
/// of the system's random source: one system call per reply where
/// `ecies::seal` makes two (issue 12, CPU per request). `None` if the
/// random source fails: no reply rather than a panic.
fn seal_reply(to: &PublicKey, plaintext: &[u8]) -> Option<Vec<u8>> {
    let mut random = [0u8; SECRET_KEY_LEN + ecies::BLOCK_LEN];
    getrandom::fill(&mut random).ok()?;
    let (secret, iv) = random.split_at(SECRET_KEY_LEN);
    // Uniform over the valid scalars, as `Keypair::generate`'s rejection
    // sampling; 32 random bytes are out of range with chance ~2^-128.
    let ephemeral = match Keypair::from_secret_bytes(secret) {
        Ok(key) => key,
        Err(_) => Keypair::generate(&mut UnwrapErr(getrandom::SysRng)),
    };
    let iv: &[u8; ecies::BLOCK_LEN] = iv.try_into().ok()?;
    let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
    let n = ecies::seal_with(to, plaintext, &ephemeral, iv, &mut sealed).ok();
    // Best effort, as the core's `Sealing`: the secret opens this reply.
    random = [0u8; SECRET_KEY_LEN + ecies::BLOCK_LEN];
    std::hint::black_box(&random);
    sealed.truncate(n?);
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

    /// Handles one sealed request (a UDP datagram).
    pub(crate) async fn handle_sealed(&self, sealed: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_SEALED_REQUEST];
        match ecies::open(&self.key, sealed, &mut buf) {
            Ok(plaintext) => self.handle(plaintext, source).await,
            Err(_) => {
                self.metrics.dropped("undecryptable");
                None
            }
        }
    }

    /// Handles one decrypted request; returns the sealed reply, if any.
    pub(crate) async fn handle(&self, plaintext: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        let started = Instant::now();
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
        let outcome = self.dispatch(&request, source).await;
        let sealed = seal_reply(&reply_to, &outcome.plaintext)?;
        self.metrics
            .request(op_name(request.op), outcome.result, started.elapsed());
        Some(sealed)
    }

    async fn dispatch(&self, request: &Packet<'_>, source: IpAddr) -> Outcome {
        let now = self.clock.now();
        if request.op == Op::Get {
            // Reads are unsigned and unchecked, as in the reference.
            return self.get(request, now).await;
        }
        if check_freshness(now, request.updated, request.ttl).is_err() {
            return self.error(request, now, "not_fresh");
        }
        if !matches!(request.op, Op::Put | Op::Del | Op::Usage) {
            return self.error(request, now, "unknown_op");
        }
        let Ok(signer) = request.verify_self_signed() else {
            return self.error(request, now, "bad_signature");
        };
        let Ok(digest) = request.digest() else {
            return self.error(request, now, "malformed");
        };
        if let Some(plaintext) = self.replay.get(&digest, now) {
            return Outcome {
                plaintext,
                result: "replayed",
            };
        }
        let owner = *signer.as_bytes();
        let outcome = match request.op {
            Op::Put => self.put(request, owner, source, now).await,
            Op::Del => self.delete(request, owner, now).await,
            _ => self.usage(request, source, now).await,
        };
        // Store failures may succeed on a retry; everything else is final.
        // USAGE changes nothing and is not kept: signed USAGE floods would
        // only crowd out the replies worth keeping.
        if outcome.result != "store_error" && request.op != Op::Usage {
            let expires = request.updated + request.ttl;
            self.replay
                .insert(digest, expires, outcome.plaintext.clone(), now);
        }
        outcome
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

    async fn put(
        &self,
        request: &Packet<'_>,
        owner: [u8; 33],
        source: IpAddr,
        now: f64,
    ) -> Outcome {
        let put = PutRequest {
            name: request.name.to_vec(),
            value: request.value.to_vec(),
            owner,
            ip: IpKey::from_ip(source),
            updated: request.updated,
            bump: request.bumps(),
            // For a store that publishes its names: the owner's proof.
            signed: signed_bytes(request),
        };
        let server = self.key.public();
        let (plaintext, result) = match self.store.put(put, now).await {
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
