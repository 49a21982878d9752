//! `keyway sidewire listen` and `send` as separate processes, over three
//! private mosquitto brokers on loopback.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyway_tests::mosquitto::Mosquitto;

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

fn keygen(path: &std::path::Path) -> String {
    let out = Command::new(KEYWAY)
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn two_keyway_processes_talk_over_a_pool() {
    let brokers: Vec<Mosquitto> = ["127.0.0.5", "127.0.0.6", "127.0.0.7"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.toml");
    let text: String = brokers
        .iter()
        .map(|b| {
            format!(
                "[[broker]]\nhost = \"{}\"\nport = {}\n\n",
                b.addr().ip(),
                b.addr().port()
            )
        })
        .collect();
    std::fs::write(&pool, text).unwrap();
    let (key_a, key_b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    let (pk_a, pk_b) = (keygen(&key_a), keygen(&key_b));

    let mut listener = Command::new(KEYWAY)
        .args([
            "sidewire",
            "listen",
            "--count",
            "2",
            "--timeout",
            "30",
            "--json",
            "--key",
        ])
        .arg(&key_b)
        .arg("--brokers")
        .arg(&pool)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(listener.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(
        ready.starts_with(&format!("listening pk={pk_b}")),
        "{ready}"
    );

    let hint = brokers[0].addr().to_string();
    let cache = dir.path().join("hints.json");
    let cache_arg = cache.to_str().unwrap();
    for (message, extra) in [
        ("hello b", vec!["--hint-cache", cache_arg]),
        ("second", vec!["--hint", hint.as_str()]),
    ] {
        let sent = Command::new(KEYWAY)
            .args(["sidewire", "send", &pk_b, message])
            .args(&extra)
            .arg("--key")
            .arg(&key_a)
            .arg("--brokers")
            .arg(&pool)
            .output()
            .unwrap();
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }
    // The first send remembered where B was reached: one of the pool's brokers.
    let remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let seen = &remembered[pk_b.as_str()];
    assert_eq!(seen.as_array().map(Vec::len), Some(1), "{remembered}");
    let port = seen[0]["port"].as_u64().unwrap();
    assert!(
        brokers.iter().any(|b| u64::from(b.addr().port()) == port),
        "{remembered}"
    );

    let out = listener.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, message) in lines.iter().zip(["hello b", "second"]) {
        assert_eq!(line["from"].as_str(), Some(pk_a.as_str()));
        assert_eq!(
            line["msg_hex"].as_str().unwrap(),
            base16ct::lower::encode_string(message.as_bytes())
        );
    }

    let bad = Command::new(KEYWAY)
        .args([
            "sidewire", "send", &pk_a, "x", "--hint", "nonsense", "--key",
        ])
        .arg(&key_b)
        .arg("--brokers")
        .arg(&pool)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected HOST:PORT"));

    // Nobody listens for A: the send fails after its timeout, with a reason.
    let started = Instant::now();
    let lost = Command::new(KEYWAY)
        .args([
            "sidewire",
            "send",
            &pk_a,
            "anyone?",
            "--timeout",
            "1.5",
            "--key",
        ])
        .arg(&key_b)
        .arg("--brokers")
        .arg(&pool)
        .output()
        .unwrap();
    assert_eq!(lost.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&lost.stderr).contains("no acknowledgement"));
    assert!(started.elapsed() < Duration::from_secs(10));
}
