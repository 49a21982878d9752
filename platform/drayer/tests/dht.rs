//! `dht::DhtNode` on a Mainline DHT test network bound to 127.0.0.1 (issue
//! 17): an announced stream is found under its key's info-hash, and only
//! under it. Nothing here reaches a public DHT node.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::Duration;

use keyway_drayer::dht::{DhtError, DhtNode, MAX_PEERS, QUERY_TIME};

fn testnet() -> mainline::Testnet {
    mainline::Testnet::builder(5)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announced_stream_is_found_under_its_key_only() {
    let net = testnet();
    let server = DhtNode::start(&net.bootstrap).unwrap();
    assert_eq!(
        *server.local_addr().await.ip(),
        Ipv4Addr::LOCALHOST,
        "a node joining through loopback only binds loopback"
    );
    let key = [7u8; 32];
    let other = [8u8; 32];
    server.announce(&key, 33125).await.unwrap();

    let mirror = DhtNode::start(&net.bootstrap).unwrap();
    let found = mirror.find(&key, MAX_PEERS, QUERY_TIME).await;
    assert_eq!(
        found,
        vec!["127.0.0.1:33125".parse().unwrap()],
        "the announcing host's address with its HTTP port"
    );
    assert!(mirror.find(&other, MAX_PEERS, QUERY_TIME).await.is_empty());

    // The count bound holds whatever the DHT returns.
    server.announce(&key, 33126).await.unwrap();
    mirror.announce(&key, 33127).await.unwrap();
    let one = mirror.find(&key, 1, QUERY_TIME).await;
    assert_eq!(one.len(), 1, "{one:?}");
    let all = mirror.find(&key, MAX_PEERS, Duration::from_secs(30)).await;
    assert!(all.len() >= 2, "{all:?}");
}

#[test]
fn a_bootstrap_that_does_not_resolve_is_an_error() {
    assert!(matches!(
        DhtNode::start(&["not an address".to_owned()]),
        Err(DhtError::Bootstrap(_))
    ));
    assert!(matches!(
        DhtNode::start(&["[::1]:6881".to_owned()]),
        Err(DhtError::Bootstrap(_))
    ));
}
