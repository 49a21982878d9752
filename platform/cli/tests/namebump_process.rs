//! `keyway namebump` as a user runs it: real processes on loopback.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{Behavior, Client, ClientConfig};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// A `keyway namebump serve` child, killed when dropped.
struct Served {
    child: Child,
    server_pk: String,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // Bound and released at once; the server binds it right after.
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(dir: &Path, port: u16) -> Served {
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(KEYWAY);
    command
        .args(["namebump", "serve", "--listen", &addr, "--rate-limit", "0"])
        .arg("--db")
        .arg(format!("sqlite:{}", dir.join("nb.db").display()))
        .arg("--key")
        .arg(dir.join("server.key"));
    start(command, &addr)
}

/// Starts `command` (a `keyway namebump serve …`) and waits for its one
/// `listening=` line, which must be `addr`, then `server_pk=<hex>`
/// (after a `stream_pk=` line when it publishes a stream).
fn start(mut command: Command, addr: &str) -> Served {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.starts_with("stream_pk=") {
        line.clear();
        stdout.read_line(&mut line).unwrap();
    }
    assert_eq!(line.trim(), format!("listening={addr}"));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let server_pk = line
        .trim()
        .strip_prefix("server_pk=")
        .unwrap_or_else(|| panic!("expected server_pk=…, got {line:?}"))
        .to_owned();
    assert_eq!(server_pk.len(), 66);
    Served {
        child,
        server_pk,
        addr: addr.to_owned(),
    }
}

fn keyway(args: &[&str]) -> std::process::Output {
    Command::new(KEYWAY).args(args).output().unwrap()
}

fn client_args<'a>(s: &'a Served, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = rest.to_vec();
    v.extend(["--server", &s.addr, "--server-pk", &s.server_pk]);
    v
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_cli_contract_holds() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), free_port());
    let key = dir.path().join("me.key");
    let out = keyway(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let pk = String::from_utf8(out.stdout).unwrap();
    assert_eq!(pk.trim().len(), 66);
    let k = key.to_str().unwrap();

    let put = keyway(&client_args(
        &s,
        &["namebump", "put", "cli-name", "cli value", "--key", k],
    ));
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = keyway(&client_args(&s, &["namebump", "get", "cli-name"]));
    assert_eq!(
        (get.status.code(), get.stdout.as_slice()),
        (Some(0), &b"cli value"[..])
    );
    let v = json(&keyway(&client_args(
        &s,
        &["namebump", "get", "cli-name", "--json"],
    )));
    assert_eq!(
        (v["found"].as_bool(), v["owner"].as_str()),
        (Some(true), Some(pk.trim()))
    );
    let v = json(&keyway(&client_args(
        &s,
        &["namebump", "usage", "--key", k, "--json"],
    )));
    assert_eq!(
        (
            v["af"].as_u64(),
            v["names_used"].as_u64(),
            v["name_limit"].as_u64()
        ),
        (Some(2), Some(1), Some(20))
    );

    let other = dir.path().join("other.key");
    keyway(&["keygen", "--out", other.to_str().unwrap()]);
    let denied = keyway(&client_args(
        &s,
        &[
            "namebump",
            "put",
            "cli-name",
            "x",
            "--key",
            other.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(json(&denied)["kind"].as_str(), Some("not_owner"));
    let stderr = String::from_utf8(denied.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one-line reason: {stderr}");

    assert!(
        keyway(&client_args(
            &s,
            &["namebump", "del", "cli-name", "--key", k]
        ))
        .status
        .success()
    );
    let gone = keyway(&client_args(&s, &["namebump", "get", "cli-name"]));
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not found"));

    let long = "n".repeat(51);
    let bad = keyway(&client_args(
        &s,
        &["namebump", "put", &long, "v", "--key", k],
    ));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("maximum is 50"));
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = serve(dir.path(), port);
    let pk: PublicKey = s.server_pk.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Killed once this many writes were acknowledged (not after a fixed
    // time: a loaded machine acknowledges fewer per second), writers busy.
    const KILL_AFTER: usize = 100;
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let acked = rt.block_on(async {
        let writers: Vec<_> = (0..8u32)
            .map(|i| {
                let addr = s.addr.clone();
                let acked_so_far = acked_so_far.clone();
                tokio::spawn(async move {
                    let config = ClientConfig {
                        source: Some(format!("127.0.1.{}", i + 1).parse().unwrap()),
                        attempts: 1,
                        // Long enough for a slow commit on a loaded machine:
                        // only the kill should end a writer.
                        reply_timeout: Duration::from_secs(5),
                        ..ClientConfig::default()
                    };
                    let c = Client::new(&addr, pk).await.unwrap().with_config(config);
                    let k = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
                    let mut acked = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    for n in 0u32.. {
                        // 5 names per writer, rewritten with ever newer values.
                        let name = format!("k{i}-{}", n % 5);
                        let value = format!("{i}-{n}");
                        let put =
                            c.put(name.as_bytes(), value.as_bytes(), &k, Behavior::Bump, None);
                        match put.await {
                            Ok(()) => {
                                acked.push((name, n));
                                acked_so_far.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break, // the server is gone
                        }
                        if Instant::now() > deadline {
                            break;
                        }
                    }
                    acked
                })
            })
            .collect();
        let give_up = Instant::now() + Duration::from_secs(90);
        while acked_so_far.load(Ordering::Relaxed) < KILL_AFTER && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    s.child.wait().unwrap();
    assert!(
        acked.len() >= KILL_AFTER,
        "too few acknowledged writes to mean anything: {}",
        acked.len()
    );
    let mut last: HashMap<String, u32> = HashMap::new();
    for (name, n) in acked {
        last.insert(name, n);
    }
    let s = serve(dir.path(), port);
    for (name, n) in &last {
        let got = keyway(&client_args(&s, &["namebump", "get", name]));
        let got = String::from_utf8(got.stdout).unwrap();
        // A write may have committed without its acknowledgement arriving,
        // so a later value is fine; an older one would be a lost write.
        let seq: u32 = got
            .split('-')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            !got.is_empty() && seq >= *n,
            "{name}: acknowledged #{n}, found {got:?}"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn garbage_floods_cost_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), free_port());
    let pid = s.child.id();
    let flood = |rounds: usize| {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut x = 0x9e37_79b9_u32;
        let mut streams = Vec::new();
        for i in 0..rounds {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x as usize) % 1400 + 1;
            let datagram: Vec<u8> = (0..len).map(|j| (x >> (j % 25)) as u8).collect();
            let _ = udp.send_to(&datagram, &s.addr);
            if i % 100 == 0 {
                // Slow TCP streams: a valid key prefix, then junk, left open.
                if let Ok(mut t) = std::net::TcpStream::connect(&s.addr) {
                    let _ = t.write_all(&[2u8; 600]);
                    streams.push(t);
                }
            }
        }
        streams
    };
    drop(flood(5_000));
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(pid);
    let open = flood(40_000);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    drop(open);
    // Eight times more garbage (and 400 half-open streams) must not mean
    // proportionally more memory: allow 16 MiB of noise.
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let key = dir.path().join("k");
    keyway(&["keygen", "--out", key.to_str().unwrap()]);
    let put = keyway(&client_args(
        &s,
        &[
            "namebump",
            "put",
            "still",
            "here",
            "--key",
            key.to_str().unwrap(),
        ],
    ));
    assert!(put.status.success(), "the server still answers");
}

const EXAMPLE_CONFIG: &str = include_str!("../examples/namebump-serve.toml");

/// The committed example with `key = value` lines replaced (each must be
/// there once, so the example cannot lose a key these tests rely on).
fn example_config_with(replacements: &[(&str, String)]) -> String {
    let mut text = EXAMPLE_CONFIG.to_owned();
    for (key, value) in replacements {
        let prefix = format!("{key} = ");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 1, "{key} in the example: {lines:?}");
        text = text.replace(lines[0], &format!("{prefix}{value}"));
    }
    text
}

/// One HTTP/1.0 GET on loopback; the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_server_runs_from_the_example_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    // Relative paths: they must land beside the file, not in the working
    // directory the server is started from.
    let config = example_config_with(&[
        ("listen", format!("[\"{addr}\"]")),
        ("db", "\"sqlite:nb.db\"".to_owned()),
        ("key", "\"server.key\"".to_owned()),
        ("metrics", format!("\"{metrics}\"")),
    ]);
    let path = dir.path().join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(KEYWAY);
    command
        .current_dir(elsewhere.path())
        .args(["namebump", "serve", "--config"])
        .arg(&path);
    let s = start(command, &addr);

    let server_key = dir.path().join("server.key");
    let pk = keyway(&["pubkey", "--key", server_key.to_str().unwrap()]);
    assert_eq!(String::from_utf8(pk.stdout).unwrap().trim(), s.server_pk);
    assert!(dir.path().join("nb.db").exists());
    assert!(
        dir.path().join("namebump.stream").exists(),
        "publish_stream"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    let key = dir.path().join("me.key");
    assert!(
        keyway(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let put = keyway(&client_args(
        &s,
        &[
            "namebump",
            "put",
            "from-config",
            "it works",
            "--key",
            key.to_str().unwrap(),
        ],
    ));
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = keyway(&client_args(&s, &["namebump", "get", "from-config"]));
    assert_eq!(
        (get.status.code(), get.stdout.as_slice()),
        (Some(0), &b"it works"[..])
    );
    let scraped = http_get(&metrics, "/metrics");
    assert!(
        scraped.starts_with("HTTP/1.") && scraped.contains("keyway_namebump_"),
        "{scraped}"
    );
}

#[test]
fn command_line_flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let in_file = format!("127.0.0.1:{}", free_port());
    let on_line = format!("127.0.0.1:{}", free_port());
    let config = example_config_with(&[
        (
            "listen",
            format!("[\"{in_file}\", \"[::1]:{}\"]", free_port()),
        ),
        ("db", "\"sqlite:file.db\"".to_owned()),
        ("key", "\"server.key\"".to_owned()),
        ("metrics", format!("\"127.0.0.1:{}\"", free_port())),
    ]);
    let path = dir.path().join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let flag_db = dir.path().join("flag.db");
    let mut command = Command::new(KEYWAY);
    command
        .args(["namebump", "serve", "--config"])
        .arg(&path)
        .args(["--listen", &on_line, "--db"])
        .arg(format!("sqlite:{}", flag_db.display()));
    // `start` checks the only listening= line is the flag's address.
    let s = start(command, &on_line);
    assert!(flag_db.exists());
    assert!(!dir.path().join("file.db").exists());
    assert!(
        std::net::TcpStream::connect(&in_file).is_err(),
        "the file's address is unused"
    );

    let key = dir.path().join("me.key");
    keyway(&["keygen", "--out", key.to_str().unwrap()]);
    let put = keyway(&client_args(
        &s,
        &[
            "namebump",
            "put",
            "flagged",
            "v",
            "--key",
            key.to_str().unwrap(),
        ],
    ));
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

#[test]
fn a_bad_config_file_is_a_one_line_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serve.toml");
    let config = example_config_with(&[("max_connections", "0".to_owned())]);
    let line = config
        .lines()
        .position(|l| l == "max_connections = 0")
        .unwrap()
        + 1;
    std::fs::write(&path, config).unwrap();
    let out = Command::new(KEYWAY)
        .args(["namebump", "serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}: max_connections:", path.display())),
        "{stderr}"
    );
}

/// `bench --claims` reports its figure as claims: in JSON a "claim" op with
/// its rate and latencies, in text a claims/s line; the names are stored.
#[test]
fn bench_claims_reports_claims_and_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), free_port());
    let run = |extra: &[&str]| {
        let mut args = vec!["namebump", "bench", "--claims", "--clients", "2"];
        args.extend(["--duration", "1", "--timeout", "20"]);
        args.extend(extra);
        keyway(&client_args(&s, &args))
    };
    let out = run(&["--json"]);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    assert_eq!(report["mix"], "claims");
    let claims = report["claim"]["count"].as_u64().unwrap();
    assert!(claims > 0, "{report}");
    assert_eq!(
        (report["errors"].as_u64(), report["timeouts"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["put"]["count"], 0);
    for field in ["per_sec", "p50_ms", "p99_ms", "max_ms"] {
        assert!(
            report["claim"][field].as_f64().unwrap() > 0.0,
            "{field}: {report}"
        );
    }
    let text = run(&[]);
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(" claims/s "), "{text}");
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join("nb.db")).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM names WHERE af = 2", [], |r| r.get(0))
        .unwrap();
    assert!(
        stored as u64 >= claims,
        "{stored} stored, {claims} in the first run"
    );
}
