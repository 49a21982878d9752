//! The client against a registry server over secure links on loopback:
//! writes, read-your-writes, replicas that never wrote, restarts, a
//! newest-N replica over the link and a replica fed by an HTTP mirror.
#![allow(clippy::unwrap_used)]

mod loopback;

use std::sync::Arc;
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::link::{AllowList, LinkConfig, NetworkKey};
use keyway_core::rand_core::UnwrapErr;
use keyway_registry::client::{Client, ClientOptions};

use loopback::Server;

/// Longest any test step may take.
const PATIENCE: Duration = Duration::from_secs(30);

fn keypair() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

fn config(identity: &Keypair, net: [u8; 32]) -> Arc<LinkConfig> {
    Arc::new(LinkConfig {
        identity: identity.clone(),
        network_key: NetworkKey::from_bytes(net),
        allow: AllowList::new(),
        limits: keyway_link::config::node_limits(),
    })
}

async fn client(server: &Server, who: &Keypair, dir: &std::path::Path) -> Client {
    client_with(server, who, dir, ClientOptions::default()).await
}

async fn client_with(
    server: &Server,
    who: &Keypair,
    dir: &std::path::Path,
    options: ClientOptions,
) -> Client {
    Client::open(config(who, server.net), server.addr.clone(), dir, options)
        .await
        .unwrap()
}

async fn line(
    reply: Result<keyway_registry::client::Reply, keyway_registry::client::ClientError>,
) -> String {
    reply.unwrap().line
}

#[tokio::test]
async fn hyper_registrys_cases_through_the_client() {
    tokio::time::timeout(PATIENCE, async {
        let (alice, bob) = (keypair(), keypair());
        let server = Server::start().await;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = client(&server, &alice, dirs.0.path()).await;
        let b = client(&server, &bob, dirs.1.path()).await;

        assert_eq!(line(a.register("Alice").await).await, "OK");
        // Read-your-writes: answered locally, at once.
        assert_eq!(a.lookup("alice").await.unwrap(), Some(*alice.public()));
        assert_eq!(line(a.register("alice").await).await, "IDEMPOTENT");
        assert_eq!(
            line(b.register("ALICE").await).await,
            "ERR:Username already taken"
        );
        assert_eq!(
            line(b.delete("alice").await).await,
            "ERR:Unauthorized: only the owner can delete this username"
        );
        assert_eq!(line(b.register("bob").await).await, "OK");
        b.sync().await.unwrap();
        assert_eq!(b.list().await.unwrap(), ["alice", "bob"]);
        assert_eq!(line(a.delete("alice").await).await, "OK");
        assert_eq!(a.lookup("alice").await.unwrap(), None);
        assert_eq!(
            line(a.delete("alice").await).await,
            "ERR:Username not found"
        );
        // Refused here, before any request: the name rules.
        let invalid = line(a.register("x").await).await;
        assert!(invalid.starts_with("ERR:Invalid username"), "{invalid}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_third_client_that_never_wrote_sees_the_same_state() {
    tokio::time::timeout(PATIENCE, async {
        let (alice, bob, carol) = (keypair(), keypair(), keypair());
        let server = Server::start().await;
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = client(&server, &alice, dirs[0].path()).await;
        let b = client(&server, &bob, dirs[1].path()).await;
        for name in ["zed", "amy", "mid"] {
            assert_eq!(line(a.register(name).await).await, "OK");
        }
        assert_eq!(line(b.register("bob").await).await, "OK");
        assert_eq!(line(a.delete("mid").await).await, "OK");

        let c = client(&server, &carol, dirs[2].path()).await;
        // Up to the server's current position, as a one-shot read does.
        let at = c.catch_up().await.unwrap();
        assert_eq!(at, a.sync().await.unwrap());
        assert_eq!(c.list().await.unwrap(), ["amy", "bob", "zed"]);
        assert_eq!(c.list().await.unwrap(), a.list().await.unwrap());
        assert_eq!(c.lookup("bob").await.unwrap(), Some(*bob.public()));
        assert_eq!(c.lookup("zed").await.unwrap(), Some(*alice.public()));
        assert_eq!(c.lookup("mid").await.unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn read_your_writes_holds_while_another_client_writes() {
    tokio::time::timeout(PATIENCE, async {
        let (alice, bob) = (keypair(), keypair());
        let server = Server::start().await;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = client(&server, &alice, dirs.0.path()).await;
        let b = Arc::new(client(&server, &bob, dirs.1.path()).await);
        // Bob writes all along; his records land between Alice's, so
        // "the stream grew" would often be true before hers is in.
        let writer = {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let reply = b.register(&format!("bob{i:03}")).await.unwrap();
                    assert_eq!(reply.line, "OK");
                }
            })
        };
        for i in 0..20 {
            let name = format!("alice{i:03}");
            assert_eq!(line(a.register(&name).await).await, "OK");
            assert_eq!(
                a.lookup(&name).await.unwrap(),
                Some(*alice.public()),
                "{name} is in Alice's replica when register returns"
            );
        }
        assert_eq!(line(a.delete("alice000").await).await, "OK");
        assert_eq!(a.lookup("alice000").await.unwrap(), None);
        writer.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_restarted_client_keeps_everything_without_the_server() {
    tokio::time::timeout(PATIENCE, async {
        let alice = keypair();
        let server = Server::start().await;
        let dir = tempfile::tempdir().unwrap();
        let key = {
            let a = client(&server, &alice, dir.path()).await;
            for name in ["one", "two", "three"] {
                assert_eq!(line(a.register(name).await).await, "OK");
            }
            a.stream_key().await
        };
        server.stop();
        // The stream key comes from the replica: no server needed to open.
        let a = client(&server, &alice, dir.path()).await;
        assert_eq!(a.stream_key().await, key);
        assert_eq!(a.list().await.unwrap(), ["one", "three", "two"]);
        assert_eq!(a.lookup("two").await.unwrap(), Some(*alice.public()));
        // A write now fails with a reason, and changes nothing.
        let options = ClientOptions {
            timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        drop(a);
        let a = client_with(&server, &alice, dir.path(), options).await;
        let e = a.register("four").await.unwrap_err().to_string();
        assert!(e.contains("cannot connect") || e.contains("timeout"), "{e}");
        assert_eq!(a.list().await.unwrap(), ["one", "three", "two"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_newest_n_replica_starts_over_the_link() {
    tokio::time::timeout(PATIENCE, async {
        let (alice, other) = (keypair(), keypair());
        let server = Server::start().await;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = client(&server, &alice, dirs.0.path()).await;
        for i in 0..8 {
            assert_eq!(line(a.register(&format!("name{i}")).await).await, "OK");
        }
        let options = ClientOptions {
            keep: Some(3),
            ..ClientOptions::default()
        };
        let small = client_with(&server, &other, dirs.1.path(), options).await;
        small.sync().await.unwrap();
        assert_eq!(small.list().await.unwrap(), ["name5", "name6", "name7"]);
        assert_eq!(line(a.register("latest").await).await, "OK");
        small.sync().await.unwrap();
        assert_eq!(small.list().await.unwrap(), ["latest", "name6", "name7"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_replica_syncs_from_an_http_mirror() {
    tokio::time::timeout(PATIENCE, async {
        let (alice, other) = (keypair(), keypair());
        let server = Server::start().await;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = client(&server, &alice, dirs.0.path()).await;
        for name in ["one", "two"] {
            assert_eq!(line(a.register(name).await).await, "OK");
        }
        let url = server.serve_http().await;
        let options = ClientOptions {
            mirror: Some(url),
            ..ClientOptions::default()
        };
        // Writes still go over the link; reads come from the mirror, and
        // read-your-writes waits on it.
        let b = client_with(&server, &other, dirs.1.path(), options).await;
        b.sync().await.unwrap();
        assert_eq!(b.list().await.unwrap(), ["one", "two"]);
        assert_eq!(line(b.register("three").await).await, "OK");
        assert_eq!(b.list().await.unwrap(), ["one", "three", "two"]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn read_your_writes_gives_up_at_its_deadline_with_a_reason() {
    tokio::time::timeout(PATIENCE, async {
        let server = Server::start().await;
        let alice = keypair();
        let dir = tempfile::tempdir().unwrap();
        // Reads from a mirror that stopped following: a write is accepted
        // but can never be read back from it.
        let url = server.serve_frozen_http().await;
        let options = ClientOptions {
            mirror: Some(url),
            timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        let a = client_with(&server, &alice, dir.path(), options).await;
        let started = std::time::Instant::now();
        let e = a.register("alice").await.unwrap_err().to_string();
        assert!(e.contains("did not reach position"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        assert_eq!(a.lookup("alice").await.unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_held_wait_blocks_neither_writes_nor_other_requests_on_its_link() {
    tokio::time::timeout(PATIENCE, async {
        let alice = keypair();
        let server = Server::start().await;
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(client(&server, &alice, dir.path()).await);
        let before = a.catch_up().await.unwrap();
        // Held by the server for up to 20 s on the link Alice writes on.
        let waiting = {
            let a = a.clone();
            tokio::spawn(async move { a.wait_beyond(before, Duration::from_secs(20)).await })
        };
        // Give the wait time to reach the server (a wait that answers
        // before the write still fails the assertion below).
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the server holds the wait");
        let started = tokio::time::Instant::now();
        assert_eq!(a.catch_up().await.unwrap(), before, "another request");
        assert_eq!(line(a.register("alice").await).await, "OK");
        let written = a.position().await.unwrap();
        assert!(written > before);
        // The write woke the wait, long before its 20 s.
        assert_eq!(waiting.await.unwrap().unwrap(), written);
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await
    .unwrap();
}
