//! A Keyway router and the sidewire 0.1.9 reference router exchange
//! messages both ways, with ACKs, through three private loopback brokers.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_sidewire::{Message, Router, system_time};
use keyway_tests::mosquitto::{Mosquitto, sidewire_pool};
use keyway_tests::reference::{Venv, interop_dir};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyway_and_reference_routers_talk_both_ways() {
    let venv = Venv::namebump().unwrap();
    let brokers: Vec<Mosquitto> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let pool = sidewire_pool(&brokers);
    // The seed's shape: keypair, handler, clock, brokers; then start.
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let sink = inbox.clone();
    let ours = Router::new(
        Keypair::generate(&mut UnwrapErr(getrandom::SysRng)),
        Some(Arc::new(move |m: &Message| {
            sink.lock().unwrap().push(m.clone())
        })),
        system_time,
        pool,
    );
    ours.start().await.unwrap();

    let theirs = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
    let hints: Vec<Value> = ours
        .brokers()
        .iter()
        .map(|a| {
            let (host, port) = a.rsplit_once(':').unwrap();
            json!([host, port.parse::<u16>().unwrap()])
        })
        .collect();
    let request = json!({
        "secret": base16ct::lower::encode_string(&theirs.secret_bytes()),
        "brokers": brokers.iter().map(|b| json!([b.addr().ip().to_string(), b.addr().port()])).collect::<Vec<_>>(),
        "send_to": ours.public_key().to_string(),
        "hints": hints,
        "messages": ["hello keyway 1", "hello keyway 2", "hello keyway 3"],
        "expect": 3,
        "timeout": 20,
    });
    let mut child = Command::new(venv.python())
        .arg(interop_dir().join("sidewire_peer.py"))
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{request}").unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next().unwrap().unwrap();
        (first, lines)
    })
    .await
    .unwrap();
    let (ready_line, mut lines) = ready;
    let their_pk: PublicKey = ready_line.strip_prefix("ready ").unwrap().parse().unwrap();
    assert_eq!(their_pk, *theirs.public());

    // Keyway → reference, each acknowledged by the reference router.
    let pipe = ours.pipe(their_pk);
    for i in 1..=3 {
        pipe.send(
            format!("hello reference {i}").as_bytes(),
            Duration::from_secs(8),
        )
        .await
        .unwrap();
    }
    let report = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    child.wait().unwrap();
    let report: Value = serde_json::from_str(&report).unwrap();

    // Reference → Keyway: its sends returned success (our ACKs reached it)…
    assert_eq!(report["sent"], json!([true, true, true]), "{report}");
    // …and our handler saw the three messages from its key.
    let got: Vec<(String, PublicKey)> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|m| (String::from_utf8(m.data.clone()).unwrap(), m.from))
        .collect();
    let expected: Vec<(String, PublicKey)> = (1..=3)
        .map(|i| (format!("hello keyway {i}"), their_pk))
        .collect();
    assert_eq!(got, expected);
    // The reference delivered ours, from our key.
    let received: Vec<&str> = report["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    assert_eq!(
        received,
        [
            "hello reference 1",
            "hello reference 2",
            "hello reference 3"
        ]
    );
    let our_hex = ours.public_key().to_string();
    assert!(
        report["received"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["src"] == json!(our_hex))
    );
}
