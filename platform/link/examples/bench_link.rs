//! Secure-link figures for BENCHMARKS.md (issue 16), all in one run:
//!
//! 1. handshake + identity proofs: CPU per side (thread CPU time, the two
//!    machines driven in memory, one after the other) and wall time of a
//!    dial over loopback TCP to a node in this process;
//! 2. bulk throughput over one link (1 MiB requests, empty answers);
//! 3. 64-byte messages per second over one link (64 in flight, the most a
//!    link's `concurrent_requests` allows);
//! 4. raw ChaCha20-Poly1305 (the crate and version snow seals with) on
//!    64 KiB buffers: the physical limit of 2 and 3.
//!
//! Both ends of 2 and 3 run in this process, on the machine's cores.
//! Run with `tests/bench-link.sh` (release build).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305_snow::aead::{AeadInPlace, KeyInit};
use futures_util::future::BoxFuture;
use getrandom::SysRng;
use keyway_core::link::{AllowList, Capability, Link, LinkConfig, NetworkKey, Refusal, Service};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::rate::RateLimit;
use keyway_core::{Keypair, PublicKey};
use keyway_link::PeerAddress;
use keyway_link::connection::{Handler, NoService};
use keyway_link::dial::dial;
use keyway_link::node::Node;

const HANDSHAKES: usize = 300;
const DIALS: usize = 100;
const BULK_BYTES: usize = 256 << 20;
const BULK_CHUNK: usize = 1 << 20;
const SMALL: usize = 200_000;
const IN_FLIGHT: usize = 64;
const AEAD_BYTES: usize = 512 << 20;

/// Answers every request with nothing: the cost measured is the link's.
struct Sink;

impl Handler for Sink {
    fn handle(
        &self,
        _peer: PublicKey,
        _service: Service,
        _body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of the whole process (both ends of the link): a figure a busy
/// machine distorts far less than wall time.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn config(net: [u8; 32], allow: AllowList) -> Arc<LinkConfig> {
    let mut limits = keyway_link::config::node_limits();
    // The default 1,000 requests/s per peer is a defence, not a limit of
    // the link: lifted here to measure the link itself.
    limits.request_rate = RateLimit {
        rate: 1e9,
        burst: 1e9,
    };
    Arc::new(LinkConfig {
        identity: Keypair::generate(&mut UnwrapErr(SysRng)),
        network_key: NetworkKey::from_bytes(net),
        allow,
        limits,
    })
}

/// Handshake and proofs between two machines in memory; CPU per side.
fn handshakes(dialer: &Arc<LinkConfig>, acceptor: &Arc<LinkConfig>) -> (Duration, Duration) {
    let mut cpu = [Duration::ZERO; 2];
    let mut buf = vec![0u8; keyway_core::link::MAX_WIRE_FRAME];
    let now = keyway_core::time::Instant::from_secs(1);
    let mut rng = UnwrapErr(SysRng);
    for _ in 0..HANDSHAKES {
        let t = thread_cpu();
        let mut a = Link::new_initiator(dialer.clone(), *acceptor.identity.public(), now, &mut rng);
        cpu[0] += thread_cpu() - t;
        let t = thread_cpu();
        let mut b = Link::new_responder(acceptor.clone(), now, &mut rng);
        cpu[1] += thread_cpu() - t;
        for _round in 0..16 {
            if a.is_connected() && b.is_connected() {
                break;
            }
            let t = thread_cpu();
            let mut to_b = Vec::new();
            while let Some(n) = a.poll_transmit(now, &mut buf) {
                to_b.extend_from_slice(&buf[..n]);
            }
            while a.poll_event().is_some() {}
            cpu[0] += thread_cpu() - t;
            let t = thread_cpu();
            b.handle_input(now, &to_b);
            let mut to_a = Vec::new();
            while let Some(n) = b.poll_transmit(now, &mut buf) {
                to_a.extend_from_slice(&buf[..n]);
            }
            while b.poll_event().is_some() {}
            cpu[1] += thread_cpu() - t;
            let t = thread_cpu();
            a.handle_input(now, &to_a);
            cpu[0] += thread_cpu() - t;
        }
        assert!(a.is_connected() && b.is_connected(), "handshake completes");
    }
    (cpu[0] / HANDSHAKES as u32, cpu[1] / HANDSHAKES as u32)
}

fn raw_aead() -> f64 {
    let cipher = chacha20poly1305_snow::ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    let mut n = 0u64;
    for i in 0..AEAD_BYTES / buf.len() {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
        let tag = cipher
            .encrypt_in_place_detached(&nonce.into(), b"", &mut buf)
            .unwrap();
        n = n.wrapping_add(u64::from(tag[0]));
    }
    std::hint::black_box(n);
    AEAD_BYTES as f64 / start.elapsed().as_secs_f64() / 1e6
}

#[tokio::main]
async fn main() {
    let net = [42u8; 32];
    let dialer = config(net, AllowList::new());
    let mut allow = AllowList::new();
    allow.allow(dialer.identity.public(), [Capability::Message]);
    let acceptor = config(net, allow);

    let (cpu_dialer, cpu_acceptor) = handshakes(&dialer, &acceptor);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = PeerAddress {
        key: *acceptor.identity.public(),
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    let node = Node::new(acceptor.clone(), Arc::new(Sink), 1024);
    tokio::spawn(node.serve(listener));
    let patience = Duration::from_secs(30);

    let start = Instant::now();
    for _ in 0..DIALS {
        let link = dial(dialer.clone(), &addr, Arc::new(NoService), patience)
            .await
            .unwrap();
        drop(link);
    }
    let dial_wall = start.elapsed() / DIALS as u32;

    let link = dial(dialer.clone(), &addr, Arc::new(NoService), patience)
        .await
        .unwrap();
    let chunk = vec![0x5a; BULK_CHUNK];
    let cpu = process_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let link = link.clone();
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..BULK_BYTES / BULK_CHUNK / 4 {
                link.request(Service::Message, chunk.clone()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let bulk = BULK_BYTES as f64 / start.elapsed().as_secs_f64() / 1e6;
    let bulk_cpu = BULK_BYTES as f64 / (process_cpu() - cpu).as_secs_f64() / 1e6;

    let cpu = process_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let link = link.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..SMALL / IN_FLIGHT {
                link.request(Service::Message, vec![0x33; 64])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let small = SMALL as f64 / start.elapsed().as_secs_f64();
    let small_cpu = (process_cpu() - cpu) / SMALL as u32;

    let aead = raw_aead();

    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| handshake + proofs, CPU of the dialer (mean of {HANDSHAKES}) | {:.0} µs |",
        cpu_dialer.as_secs_f64() * 1e6
    );
    println!(
        "| handshake + proofs, CPU of the acceptor (mean of {HANDSHAKES}) | {:.0} µs |",
        cpu_acceptor.as_secs_f64() * 1e6
    );
    println!(
        "| dial to connected over loopback TCP, wall (mean of {DIALS}) | {:.2} ms |",
        dial_wall.as_secs_f64() * 1e3
    );
    println!("| bulk over one link (1 MiB requests, 4 in flight) | {bulk:.0} MB/s |");
    println!("| 64-byte messages over one link ({IN_FLIGHT} in flight, acked) | {small:.0} /s |");
    println!("| bulk per CPU second (both ends, all threads) | {bulk_cpu:.0} MB/s |");
    println!(
        "| 64-byte message, CPU of both ends | {:.2} µs |",
        small_cpu.as_secs_f64() * 1e6
    );
    println!("| raw ChaCha20-Poly1305 (64 KiB buffers, one core) | {aead:.0} MB/s |");
    println!("| bulk / raw AEAD | {:.0} % |", 100.0 * bulk / aead);
}
