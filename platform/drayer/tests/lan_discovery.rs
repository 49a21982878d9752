//! DrayerUDP: the original's datagrams byte for byte, and two nodes on
//! loopback multicast finding each other: a mirror asks the group, the
//! owner answers it alone, and the mirror pulls over HTTP from the address
//! the answer came from.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use keyway_core::drayer::{Meta, SigningKey};
use keyway_drayer::Stream;
use keyway_drayer::discovery::{
    Datagram, Discovery, DiscoveryConfig, decode, encode_get_records_since, encode_record,
};
use keyway_drayer::http::router;
use serde_json::Value;

fn unhex(text: &str) -> Vec<u8> {
    base16ct::mixed::decode_vec(text).unwrap()
}

#[test]
fn datagrams_match_the_originals() {
    let v: Value =
        serde_json::from_str(include_str!("../../../tests/vectors/drayer.json")).unwrap();
    let scenario = &v["original_scenario"];
    let key = SigningKey::from_bytes(
        &unhex(scenario["seed_hex"].as_str().unwrap())
            .try_into()
            .unwrap(),
    );
    let chain = key.verifying_key();
    let steps = scenario["steps"].as_array().unwrap();
    let r11 = steps[7]["owner_rows_by_modified"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 4)
        .unwrap();
    let tip = Meta {
        id: 4,
        timestamp: r11["timestamp"].as_i64().unwrap(),
        modified: r11["modified"].as_i64().unwrap(),
        prev: 3,
        prevchange: r11["prevchange"].as_i64().unwrap(),
        key_hash: [0; 32],
        value_hash: unhex(r11["hash_hex"].as_str().unwrap()).try_into().unwrap(),
        type_hash: [0; 32],
        signature: unhex(r11["signature_hex"].as_str().unwrap())
            .try_into()
            .unwrap(),
    };
    let extra = &v["original_extra"];
    let asked = encode_get_records_since(&chain, 1_550_000_001_750_000);
    assert_eq!(
        asked,
        unhex(extra["udp_getRecordsSince_hex"].as_str().unwrap())
    );
    let told = encode_record(&tip, "primaryServers", 33125, &chain);
    assert_eq!(
        told,
        unhex(extra["udp_record_announce_hex"].as_str().unwrap())
    );
    assert_eq!(
        decode(&asked).unwrap(),
        Some(Datagram::GetRecordsSince {
            chain: *chain.as_bytes(),
            time: 1_550_000_001_750_000
        })
    );
    assert_eq!(
        decode(&told).unwrap(),
        Some(Datagram::Record {
            chain: *chain.as_bytes(),
            modified: tip.modified,
            httpport: 33125
        })
    );
    // Other magics are ignored; garbage after the magic is an error.
    assert_eq!(decode(b"\x6b\xae\xf5\x9bxx").unwrap(), None);
    assert!(decode(b"\xab\xc1\x61\x29\x85").is_err());
    // httpport (cd 81 65) sits just before the 41-byte chain field.
    let mut zero_port = told.clone();
    let at = zero_port.len() - 41 - 3;
    assert_eq!(zero_port[at..at + 3], [0xcd, 0x81, 0x65]);
    zero_port[at..at + 3].copy_from_slice(&[0xcd, 0, 0]);
    assert!(decode(&zero_port).is_err(), "port 0 is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_finds_its_owner_on_loopback_multicast() {
    let dir = tempfile::tempdir().unwrap();
    let owner_path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&owner_path).unwrap();
    for i in 0..5 {
        owner.set(&format!("k{i}"), "obj", b"\xa1v").unwrap();
    }
    let public = *owner.public_key();
    let mirror_path = dir.path().join("mirror.stream");
    drop(Stream::mirror(&mirror_path, public).unwrap());

    // The owner serves HTTP and listens on the group.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    let served = Stream::open(&owner_path).unwrap();
    tokio::spawn(async move { axum::serve(listener, router(vec![served])).await });
    // A port of our own, so parallel runs and real DrayerUDP nodes are left alone.
    let udp_port = 20_000 + (std::process::id() % 20_000) as u16;
    let config = |http_port| DiscoveryConfig {
        port: udp_port,
        interface: Ipv4Addr::LOCALHOST,
        http_port,
        min_interval: Duration::from_millis(100),
        ..DiscoveryConfig::default()
    };
    let owner_node = Discovery::bind(config(http_port), std::slice::from_ref(&owner_path)).unwrap();
    tokio::spawn(owner_node.run());
    // A node holding another stream ignores all of this.
    let stranger_path = dir.path().join("stranger.stream");
    drop(Stream::create(&stranger_path).unwrap());
    let stranger = Discovery::bind(config(1), std::slice::from_ref(&stranger_path)).unwrap();
    tokio::spawn(stranger.run());

    let mirror_node = Discovery::bind(config(1), std::slice::from_ref(&mirror_path)).unwrap();
    mirror_node.announce().await.unwrap();
    tokio::spawn(mirror_node.run());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = Stream::open_read_only(&mirror_path)
            .unwrap()
            .list(None)
            .unwrap()
            .len();
        if held == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "mirror holds {held} records");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mirror = Stream::open_read_only(&mirror_path).unwrap();
    assert_eq!(mirror.verify().unwrap().problems, Vec::<String>::new());
    // The node holding another stream took nothing from the exchange.
    assert_eq!(
        Stream::open_read_only(&stranger_path)
            .unwrap()
            .count()
            .unwrap(),
        0
    );
    assert_eq!(mirror.tip().unwrap(), owner.tip().unwrap());
}

/// `getRecordsSince` with an extra key the decoder skips, `pad` bytes long:
/// what an asker sends to be answered by unicast.
fn padded_request(chain: &keyway_core::drayer::VerifyingKey, pad: usize) -> Vec<u8> {
    let mut asked = encode_get_records_since(chain, 0);
    assert_eq!(asked[4], 0x83);
    asked[4] = 0x84;
    asked.extend_from_slice(b"\xa3pad\xda");
    asked.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
    asked.resize(asked.len() + pad, 0);
    asked
}

/// Item 7: the reply to a datagram, sent to the datagram's source, is
/// never larger than the datagram (an honest `getRecordsSince` is about a
/// third of the announcement it asks for: the announcement goes to the
/// group instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unicast_reply_is_larger_than_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();
    owner.set("some key", "obj", b"\xa1v").unwrap();
    let public = *owner.public_key();
    let other_path = dir.path().join("other.stream");
    let mut other = Stream::create(&other_path).unwrap();
    other.set("other key", "obj", b"\xa1v").unwrap();
    // Port 0: only unicast is exercised here.
    let config = DiscoveryConfig {
        port: 0,
        interface: Ipv4Addr::LOCALHOST,
        ..DiscoveryConfig::default()
    };
    let node = Discovery::bind(config, &[other_path, path]).unwrap();
    let port = node.local_port().unwrap();
    tokio::spawn(node.run());

    let asker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let honest = encode_get_records_since(other.public_key(), 0);
    let padded = padded_request(&public, 600);
    asker.send_to(&honest, ("127.0.0.1", port)).await.unwrap();
    asker.send_to(&padded, ("127.0.0.1", port)).await.unwrap();
    // Datagrams are handled in order: a unicast reply to the honest
    // request (about the other stream) would arrive first.
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(20), asker.recv_from(&mut buf))
        .await
        .expect("the padded request is answered")
        .unwrap();
    let Ok(Some(Datagram::Record { chain, .. })) = decode(&buf[..n]) else {
        panic!("not an announcement");
    };
    assert_eq!(
        chain,
        *public.as_bytes(),
        "the {}-byte request was answered by unicast with {n} bytes",
        honest.len()
    );
    assert!(n <= padded.len(), "{n} bytes answer {}", padded.len());
}
