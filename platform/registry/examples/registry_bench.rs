//! The client side of the registry's benchmark (issue 17): local lookups
//! per second from a replica of N names, how fast a replica is built
//! (every record's stream and owner signatures checked), and replication
//! lag — a write acknowledged by the server → visible in a second
//! client's replica, that client syncing as soon as the ack arrives —
//! through a server on loopback.
//!
//! cargo run --release -p keyway-registry --example registry_bench -- [NAMES] [LOOKUPS] [WRITES]
//! (defaults 100000, 1000000, 300)
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway_core::Keypair;
use keyway_core::link::{AllowList, Capability, LinkConfig, NetworkKey};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::registry::{MAX_REQUEST_LEN, Op, RECORD_KIND, Username, WriteRequest};
use keyway_drayer::Stream;
use keyway_drayer::sync::{Local, PullLimits};
use keyway_link::PeerAddress;
use keyway_link::node::Node;
use keyway_registry::client::{Client, ClientOptions};
use keyway_registry::replica::Replica;
use keyway_registry::{Registry, RegistryService};

fn keypair() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (names, lookups, writes) = (arg(1, 100_000), arg(2, 1_000_000), arg(3, 300));
    lookups_per_second(names, lookups).await;
    replication_lag(writes).await;
}

async fn lookups_per_second(names: usize, lookups: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = Stream::create(&dir.path().join("registry.drayer")).unwrap();
    let registry = stream.public_key().to_bytes();
    let owners: Vec<Keypair> = (0..64).map(|_| keypair()).collect();
    let started = Instant::now();
    let records: Vec<(String, Vec<u8>)> = (0..names)
        .map(|i| {
            let name = format!("user{i:07}");
            let signed = WriteRequest::sign(
                Op::Register,
                Username::fold(&name).unwrap(),
                registry,
                1_800_000_000_000 + i as u64,
                &owners[i % owners.len()],
            );
            let mut value = vec![0u8; MAX_REQUEST_LEN];
            let n = signed.encode(&mut value).unwrap();
            value.truncate(n);
            (name, value)
        })
        .collect();
    for chunk in records.chunks(10_000) {
        stream
            .set_many(
                chunk
                    .iter()
                    .map(|(k, v)| (k.as_str(), RECORD_KIND, v.as_slice())),
            )
            .unwrap();
    }
    println!(
        "stream_of_{names}_names_written_s={:.1}",
        started.elapsed().as_secs_f64()
    );

    let replica_dir = dir.path().join("replica");
    let mut replica = Replica::open(&replica_dir, *stream.public_key(), None).unwrap();
    let started = Instant::now();
    replica
        .sync(Local(&mut stream), &PullLimits::default())
        .await
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    println!("replica_build_records_per_s={:.0}", names as f64 / took);
    assert_eq!(replica.count().unwrap(), names);

    // xorshift: names in no order the B-tree could exploit.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let queries: Vec<String> = (0..lookups.min(100_000))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("user{:07}", x % names as u64)
        })
        .collect();
    let started = Instant::now();
    let mut found = 0usize;
    for i in 0..lookups {
        found += usize::from(
            replica
                .lookup(&queries[i % queries.len()])
                .unwrap()
                .is_some(),
        );
    }
    let took = started.elapsed().as_secs_f64();
    assert_eq!(found, lookups);
    println!(
        "local_lookups_per_s={:.0} (replica of {names} names)",
        lookups as f64 / took
    );
}

async fn replication_lag(writes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("server")).unwrap();
    let service = RegistryService::new(registry).unwrap();
    let mut allow = AllowList::new();
    allow.allow_anyone([Capability::SyncAll, Capability::RegistryWrite]);
    let net = [9; 32];
    let server = keypair();
    let config = |identity: &Keypair, allow: AllowList| {
        Arc::new(LinkConfig {
            identity: identity.clone(),
            network_key: NetworkKey::from_bytes(net),
            allow,
            limits: keyway_link::config::node_limits(),
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = PeerAddress {
        key: *server.public(),
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    let node = Node::new(config(&server, allow), Arc::new(service), 64);
    tokio::spawn(node.serve(listener));
    let (writer_dir, reader_dir) = (dir.path().join("writer"), dir.path().join("reader"));
    let (writer_id, reader_id) = (keypair(), keypair());
    let writer = Client::open(
        config(&writer_id, AllowList::new()),
        addr.clone(),
        &writer_dir,
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let reader = Client::open(
        config(&reader_id, AllowList::new()),
        addr,
        &reader_dir,
        ClientOptions::default(),
    )
    .await
    .unwrap();

    let started = Instant::now();
    let mut lags: Vec<Duration> = Vec::with_capacity(writes);
    for i in 0..writes {
        let name = format!("lag{i:06}");
        let reply = writer.send(Op::Register, &name).await.unwrap();
        assert_eq!(reply.line, "OK");
        let acked = Instant::now();
        let position = reply.position.unwrap();
        // Bounded by the client's timeout.
        reader
            .reach(position, Duration::from_secs(10))
            .await
            .unwrap();
        lags.push(acked.elapsed());
    }
    let took = started.elapsed().as_secs_f64();
    lags.sort();
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    println!(
        "replication_lag_ms p50={:.2} p99={:.2} (ack → in a second replica; {writes} writes)",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    println!(
        "registrations_per_s_one_client_sequential={:.0}",
        writes as f64 / took
    );
}
