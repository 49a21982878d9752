//! Broker links against real mosquitto brokers on loopback.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keyway_sidewire::link::{BrokerLink, LinkConfig, LinkError};
use keyway_tests::mosquitto::Mosquitto;
use tokio::sync::mpsc;

#[tokio::test]
async fn a_publish_reaches_the_subscriber_through_the_broker() {
    let broker = Mosquitto::start("127.0.0.2").unwrap();
    let addr = broker.addr().to_string();
    let config = LinkConfig::default();
    let (tx_a, _rx_a) = mpsc::channel(16);
    let (tx_b, mut rx_b) = mpsc::channel(16);
    let a = BrokerLink::connect(&addr, b"topic-a", 0, &config, tx_a)
        .await
        .unwrap();
    let _b = BrokerLink::connect(&addr, b"topic-b", 7, &config, tx_b)
        .await
        .unwrap();
    for i in 0..3u8 {
        a.publish(b"topic-b", &[i; 300]).await.unwrap();
    }
    for i in 0..3u8 {
        let got = tokio::time::timeout(Duration::from_secs(3), rx_b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.link, got.topic.as_slice(), got.payload),
            (7, &b"topic-b"[..], vec![i; 300])
        );
    }
}

#[tokio::test]
async fn keep_alive_holds_a_live_link_and_a_dead_broker_is_noticed() {
    let mut broker = Mosquitto::start("127.0.0.3").unwrap();
    let addr = broker.addr().to_string();
    let config = LinkConfig {
        keep_alive: Duration::from_secs(1),
        ..LinkConfig::default()
    };
    let (tx, _rx) = mpsc::channel(16);
    let link = BrokerLink::connect(&addr, b"t", 0, &config, tx)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(link.is_alive(), "PINGRESPs keep it up");
    broker.kill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while link.is_alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!link.is_alive(), "a dead broker is noticed");
    assert!(matches!(
        link.publish(b"t", b"x").await,
        Err(LinkError::Closed { .. })
    ));
}

#[tokio::test]
async fn a_dead_broker_costs_one_short_connect_attempt() {
    // A port nobody listens on: refused at once, well within the timeout.
    let port = std::net::TcpListener::bind("127.0.0.4:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, _rx) = mpsc::channel(1);
    let started = std::time::Instant::now();
    let err = BrokerLink::connect(
        &format!("127.0.0.4:{port}"),
        b"t",
        0,
        &LinkConfig::default(),
        tx,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LinkError::Connect { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_reading_closes_the_link_at_the_write_deadline() {
    let wedged = keyway_tests::wedged::WedgedBroker::start("127.0.0.40").unwrap();
    let config = LinkConfig {
        write_timeout: Duration::from_millis(300),
        ..LinkConfig::default()
    };
    let (tx, _rx) = mpsc::channel(16);
    let link = BrokerLink::connect(&wedged.addr().to_string(), b"t", 0, &config, tx)
        .await
        .unwrap();
    // Far more than the socket buffers and the link's queue hold.
    let publisher = link.clone();
    let publishing = tokio::spawn(async move {
        for _ in 0..2000 {
            if publisher.publish(b"t", &[7u8; 60_000]).await.is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while link.is_alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publishing.abort();
    assert!(!link.is_alive(), "the wedged link is still open");
    assert!(link.stalled(), "closed for its stalled write");
    assert!(matches!(
        link.publish(b"t", b"x").await,
        Err(LinkError::Closed { .. })
    ));
}
