//! The tokio shell on loopback: what the sockets see (issue 16, items 1, 4
//! and 5). The protocol rules themselves are tested on the core machine
//! with fake time (core/tests/link_machine.rs); here, that the shell applies
//! them to real connections: deadlines, the connection cap, the blocklist
//! before a byte is read, large messages through backpressure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use getrandom::SysRng;
use keyway_core::link::{
    AllowList, Capability, CloseReason, LinkConfig, NetworkKey, Refusal, Service,
};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_link::connection::{Handler, NoService};
use keyway_link::dial::dial;
use keyway_link::node::Node;
use keyway_link::{LinkError, PeerAddress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A bound on every wait: a shared, slow machine, never a timing claim.
const PATIENCE: Duration = Duration::from_secs(30);

/// Answers every request with its own body.
struct Echo;

impl Handler for Echo {
    fn handle(
        &self,
        _peer: PublicKey,
        _service: Service,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        Box::pin(async move { Ok(body) })
    }
}

fn config(net: [u8; 32], allow: AllowList) -> Arc<LinkConfig> {
    Arc::new(LinkConfig {
        identity: Keypair::generate(&mut UnwrapErr(SysRng)),
        network_key: NetworkKey::from_bytes(net),
        allow,
        limits: keyway_link::config::node_limits(),
    })
}

/// A node serving [`Echo`] on loopback.
async fn node(config: Arc<LinkConfig>, max_connections: usize) -> (Arc<Node>, PeerAddress) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let node = Node::new(config.clone(), Arc::new(Echo), max_connections);
    tokio::spawn(node.clone().serve(listener));
    let addr = PeerAddress {
        key: *config.identity.public(),
        host: "127.0.0.1".into(),
        port,
    };
    (node, addr)
}

fn allowing(peer: &Keypair, caps: &[Capability]) -> AllowList {
    let mut allow = AllowList::new();
    allow.allow(peer.public(), caps.iter().copied());
    allow
}

/// Reads until the node closes the connection; how many bytes it sent.
async fn until_closed(socket: &mut TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("the node closes the connection");
    total
}

#[tokio::test]
async fn a_large_message_crosses_the_link_through_backpressure() {
    let net = [7; 32];
    let client = config(net, AllowList::new());
    let server = config(net, allowing(&client.identity, &[Capability::Message]));
    let (_node, addr) = node(server, 8).await;
    let link = dial(client, &addr, Arc::new(NoService), PATIENCE)
        .await
        .unwrap();
    assert_eq!(link.peer(), &addr.key);
    // 3 MiB: many Noise messages each way, more than half the buffer budget.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let echoed = link.request(Service::Message, body.clone()).await.unwrap();
    assert_eq!(echoed, body);
    // Many small requests at once, answered in any order, each to its own.
    let mut waits = Vec::new();
    for i in 0..50u32 {
        let link = link.clone();
        waits.push(tokio::spawn(async move {
            let body = i.to_be_bytes().to_vec();
            (link.request(Service::Message, body.clone()).await, body)
        }));
    }
    for wait in waits {
        let (answer, body) = wait.await.unwrap();
        assert_eq!(answer.unwrap(), body);
    }
}

#[tokio::test]
async fn a_capability_is_checked_on_every_request() {
    let net = [8; 32];
    let client = config(net, AllowList::new());
    let server = config(
        net,
        allowing(&client.identity, &[Capability::Sync([1; 32])]),
    );
    let (_node, addr) = node(server, 8).await;
    let link = dial(client, &addr, Arc::new(NoService), PATIENCE)
        .await
        .unwrap();
    let mut granted = vec![1u8; 32];
    granted.extend_from_slice(b"page");
    assert_eq!(
        link.request(Service::Sync, granted.clone()).await.unwrap(),
        granted
    );
    let mut other_stream = vec![2u8; 32];
    other_stream.extend_from_slice(b"page");
    assert_eq!(
        link.request(Service::Sync, other_stream).await,
        Err(keyway_link::connection::RequestError::Refused(
            Refusal::NotAuthorized
        ))
    );
    assert_eq!(
        link.request(Service::Message, b"x".to_vec()).await,
        Err(keyway_link::connection::RequestError::Refused(
            Refusal::NotAuthorized
        ))
    );
    // The link survives refusals: the granted stream still answers.
    assert!(link.request(Service::Sync, granted).await.is_ok());
}

#[tokio::test]
async fn a_wrong_network_key_fails_and_blocklists_the_source() {
    let client = config([1; 32], AllowList::new());
    let server = config([2; 32], AllowList::new());
    let (node, addr) = node(server, 8).await;
    let err = dial(client.clone(), &addr, Arc::new(NoService), PATIENCE)
        .await
        .unwrap_err();
    assert_eq!(err, LinkError::Closed(CloseReason::HandshakeFailed));
    assert_eq!(err.to_string(), "handshake failed");
    // Penalised by address (no identity was proven).
    tokio::time::timeout(PATIENCE, async {
        while node.status().blocked == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    // While blocked, a connection is closed before a byte is read: even a
    // peer with the right key is not heard.
    let mut socket = TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap();
    assert_eq!(until_closed(&mut socket).await, 0);
}

#[tokio::test]
async fn a_peer_stalling_mid_handshake_is_cut_at_the_deadline() {
    let mut server = (*config([3; 32], AllowList::new())).clone();
    server.limits.handshake_timeout = Duration::from_millis(300);
    let (node, addr) = node(Arc::new(server), 8).await;
    let mut socket = TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap();
    // Half of the first handshake message (32 bytes announced), then nothing.
    socket.write_all(&[0, 32, 1, 2, 3]).await.unwrap();
    assert_eq!(
        until_closed(&mut socket).await,
        0,
        "no answer to half a message"
    );
    assert_eq!(node.status().peers.len(), 0, "its task is gone");
    tokio::time::timeout(PATIENCE, async {
        while node.status().blocked == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn junk_before_the_proof_is_not_buffered() {
    let (node, addr) = node(config([4; 32], AllowList::new()), 8).await;
    let mut socket = TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap();
    // An oversize handshake frame: refused at its prefix. The rest of the
    // megabyte is never read (the write may fail when the node hangs up).
    let junk = vec![0xff; 1 << 20];
    let _ = tokio::time::timeout(PATIENCE, socket.write_all(&junk)).await;
    until_closed(&mut socket).await;
    tokio::time::timeout(PATIENCE, async {
        while node.status().blocked == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_connection_cap_closes_connections_beyond_it() {
    let (node, addr) = node(config([5; 32], AllowList::new()), 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap());
    }
    tokio::time::timeout(PATIENCE, async {
        while node.status().peers.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let mut third = TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap();
    assert_eq!(until_closed(&mut third).await, 0);
    assert_eq!(node.status().peers.len(), 2, "the first two are held");
    // A slot freed is a slot for the next.
    drop(held.pop());
    tokio::time::timeout(PATIENCE, async {
        while node.status().peers.len() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let _fourth = TcpStream::connect(("127.0.0.1", addr.port)).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while node.status().peers.len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_relay_node_cannot_pass_for_the_node_it_relays_to() {
    // The relay is a member of the network with an identity of its own; it
    // accepts the dialer's link and could dial the real node, but it can
    // only prove its own key, and the dialer asked for the real one.
    let net = [6; 32];
    let dialer = config(net, AllowList::new());
    let real = config(net, AllowList::new());
    let relay = config(net, AllowList::new());
    let (_real_node, real_addr) = node(real, 8).await;
    let (relay_node, relay_addr) = node(relay, 8).await;
    let through_relay = PeerAddress {
        key: real_addr.key,
        ..relay_addr
    };
    let err = dial(dialer, &through_relay, Arc::new(NoService), PATIENCE)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::Closed(CloseReason::WrongPeerIdentity { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("wrong peer identity"), "{err}");
    // The dialer hung up for its own reason: once the relay's side of the
    // link is over, the relay has not penalised it.
    tokio::time::timeout(PATIENCE, async {
        while !relay_node.status().peers.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(relay_node.status().blocked, 0);
}

#[tokio::test]
async fn a_byte_relay_is_transparent_and_the_real_node_is_reached() {
    // A relay that only forwards bytes cannot read or change them: the
    // dialer's link ends at the real node, proven by its key.
    let net = [9; 32];
    let dialer = config(net, AllowList::new());
    let real = config(net, allowing(&dialer.identity, &[Capability::Message]));
    let (_real_node, real_addr) = node(real, 8).await;
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let target = real_addr.port;
    let forwarding = tokio::spawn(async move {
        let (mut inbound, _) = relay.accept().await.unwrap();
        let mut outbound = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    });
    let via_relay = PeerAddress {
        port: relay_port,
        ..real_addr.clone()
    };
    let link = dial(dialer, &via_relay, Arc::new(NoService), PATIENCE)
        .await
        .unwrap();
    assert_eq!(link.peer(), &real_addr.key);
    assert_eq!(
        link.request(Service::Message, b"through".to_vec())
            .await
            .unwrap(),
        b"through"
    );
    drop(link);
    let _ = tokio::time::timeout(PATIENCE, forwarding).await;
}
