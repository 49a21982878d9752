//! `keyway drayer serve --dht` and `keyway drayer sync --dht` between
//! processes (issue 17, "Finding streams beyond the LAN"), on a Mainline
//! DHT test network of this test's own bound to 127.0.0.1: every process
//! is given its bootstrap, so nothing here reaches a public DHT node.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");
/// The longest any step may take; a DHT lookup itself ends within 30 s.
const STEP: Duration = Duration::from_secs(120);

/// Kills a child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `keyway drayer ARGS…`, killing it after `STEP`.
fn keyway(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(KEYWAY);
    command.arg("drayer");
    let mut paths = paths.iter();
    for arg in args {
        match *arg {
            "{}" => command.arg(paths.next().unwrap()),
            a => command.arg(a),
        };
    }
    let mut child = Killed(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Drain both pipes on threads so a chatty child cannot block.
    let mut out = child.0.stdout.take().unwrap();
    let mut err = child.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < STEP, "keyway drayer {args:?} hangs");
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A local DHT of five server nodes on 127.0.0.1, and the
/// `--dht-bootstrap` arguments naming them.
fn testnet() -> (mainline::Testnet, Vec<String>) {
    let net = mainline::Testnet::builder(5)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap();
    let mut args = Vec::new();
    for node in &net.bootstrap {
        assert!(node.starts_with("127.0.0.1:"), "{node}");
        args.push("--dht-bootstrap".to_owned());
        args.push(node.clone());
    }
    (net, args)
}

/// A hostile peer: accepts up to 32 connections and answers each with
/// garbage. Returns its port.
fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(32) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nnot msgpack!",
            );
        }
    });
    port
}

/// Announces `port` on this host for the stream `pk` from a node of the
/// test network, as any DHT participant could.
#[allow(deprecated)] // the blocking API: this test has no runtime
fn announce_from_testnet(net: &mainline::Testnet, pk: &str, port: u16) {
    let key = keyway_drayer::parse_public_key(pk).unwrap();
    let hash = keyway_drayer::dht::info_hash(key.as_bytes());
    net.nodes[0]
        .announce_peer(mainline::Id::from(hash), Some(port))
        .unwrap();
}

#[test]
fn a_mirror_finds_the_server_on_a_local_dht_beside_a_hostile_peer() {
    let (net, bootstrap) = testnet();
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("notes.stream");
    let pk = ok(keyway(&["new", "{}"], &[&owner])).trim().to_owned();
    for (k, v) in [("hello", "world"), ("gone", "soon"), ("last", "one")] {
        ok(keyway(&["set", "{}", k, v], &[&owner]));
    }
    ok(keyway(&["del", "{}", "gone"], &[&owner]));

    let mut server = Command::new(KEYWAY)
        .args(["drayer", "serve", "--listen", "127.0.0.1:0", "--dht"])
        .args(&bootstrap)
        .arg(&owner)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let _server = Killed(server);
    let (lines, said) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let listening = said.recv_timeout(STEP).unwrap();
    assert!(listening.starts_with("listening=127.0.0.1:"), "{listening}");
    let announced = said.recv_timeout(STEP).unwrap();
    assert_eq!(announced, format!("dht_announced={pk}"));

    // A hostile peer announces itself for the same stream: the mirror
    // may try it, gets nothing that verifies, and goes on to the server.
    let hostile = garbage_server();
    announce_from_testnet(&net, &pk, hostile);

    let mirror = dir.path().join("mirror.stream");
    let mut args = vec!["sync", "{}", "--pubkey", &pk, "--dht"];
    args.extend(bootstrap.iter().map(String::as_str));
    let out = keyway(&args, &[&mirror]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let said = ok(out);
    assert!(said.contains("2 records held"), "{said}\n{stderr}");
    assert_eq!(
        ok(keyway(&["ls", "{}", "--json"], &[&mirror])),
        ok(keyway(&["ls", "{}", "--json"], &[&owner]))
    );
    assert!(ok(keyway(&["verify", "{}"], &[&mirror])).starts_with("2 records"));

    // Later changes come the same way, into the existing mirror.
    ok(keyway(&["set", "{}", "later", "too"], &[&owner]));
    let mut args = vec!["sync", "{}", "--dht"];
    args.extend(bootstrap.iter().map(String::as_str));
    let said = ok(keyway(&args, &[&mirror]));
    assert!(said.starts_with("1 new records"), "{said}");
    assert_eq!(
        ok(keyway(&["ls", "{}", "--json"], &[&mirror])),
        ok(keyway(&["ls", "{}", "--json"], &[&owner]))
    );
}

#[test]
fn only_hostile_or_no_peers_means_the_sync_fails() {
    let (net, bootstrap) = testnet();
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("notes.stream");
    let pk = ok(keyway(&["new", "{}"], &[&owner])).trim().to_owned();
    ok(keyway(&["set", "{}", "hello", "world"], &[&owner]));
    let mirror = dir.path().join("mirror.stream");
    let mut args = vec!["sync", "{}", "--pubkey", &pk, "--dht"];
    args.extend(bootstrap.iter().map(String::as_str));

    let out = keyway(&args, &[&mirror]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server of this stream found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hostile = garbage_server();
    announce_from_testnet(&net, &pk, hostile);
    let out = keyway(&args, &[&mirror]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!(":{hostile}/")), "{stderr}");
    assert_eq!(
        ok(keyway(&["ls", "{}"], &[&mirror])),
        "",
        "nothing from the hostile peer was kept"
    );

    // --max-seconds bounds the peers together: none left, none tried.
    args.extend(["--max-seconds", "0"]);
    let out = keyway(&args, &[&mirror]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not tried"), "{stderr}");
}
