//! `keyway namebump serve --publish-stream`, `keyway drayer serve` on the
//! stream while the server writes it, `keyway namebump mirror [--follow]`
//! and `keyway namebump get --replica`, as a user runs them (issue 17),
//! down to a server that alters a value in its stream. Bumps and expiries
//! are in platform/namebump/tests/publish_replica.rs, where the clock is
//! the test's.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// A child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, BufReader<ChildStdout>) {
    let mut child = Command::new(KEYWAY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (Running(child), stdout)
}

/// The value of the next `prefix=` line.
fn read_value(stdout: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix(&format!("{prefix}="))
        .unwrap_or_else(|| panic!("expected {prefix}=…, got {line:?}"))
        .to_owned()
}

fn keyway(args: &[&str]) -> Output {
    Command::new(KEYWAY).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = keyway(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Polls `get NAME --replica` until it prints `want` (None: not found),
/// for at most 20 s.
fn replica_reaches(replica: &Path, name: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = keyway(&["namebump", "get", name, "--replica", p(replica)]);
        let got = match out.status.code() {
            Some(0) => Some(String::from_utf8(out.stdout).unwrap()),
            Some(2) => None,
            _ => None,
        };
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: replica holds {got:?}, want {want:?} ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_following_replica_answers_like_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, replica) = (dir.path().join("names.stream"), dir.path().join("r.stream"));
    let db = format!("sqlite:{}", dir.path().join("nb.db").display());
    let (_server, mut out) = spawn(&[
        "namebump",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit",
        "0",
        "--db",
        &db,
        "--key",
        p(&dir.path().join("server.key")),
        "--publish-stream",
        p(&stream),
    ]);
    let stream_pk = read_value(&mut out, "stream_pk");
    let addr = read_value(&mut out, "listening");
    let server_pk = read_value(&mut out, "server_pk");
    assert!(stream.exists() && dir.path().join("names.stream.privatekey").exists());

    // The stream file is served by another process while the server writes.
    let (_drayer, mut out) = spawn(&["drayer", "serve", p(&stream), "--listen", "127.0.0.1:0"]);
    let url = format!("http://{}", read_value(&mut out, "listening"));
    let (mut follower, _follower_out) = spawn(&[
        "namebump",
        "mirror",
        p(&replica),
        "--from",
        &url,
        "--pubkey",
        &stream_pk,
        "--follow",
        "--interval",
        "0.2",
    ]);

    let key = dir.path().join("owner.key");
    std::fs::write(&key, "22".repeat(32)).unwrap();
    let server = ["--server", addr.as_str(), "--server-pk", server_pk.as_str()];
    let put = |name: &str, value: &str| {
        let mut args = vec!["namebump", "put", name, value, "--key", p(&key)];
        args.extend_from_slice(&server);
        ok(&args);
    };
    put("alice", "hello");
    put("bob", "world");
    replica_reaches(&replica, "alice", Some("hello"));
    replica_reaches(&replica, "bob", Some("world"));

    // The same answer, in the same form, as the server's.
    let mut from_server = vec!["namebump", "get", "alice", "--json"];
    from_server.extend_from_slice(&server);
    let from_replica = [
        "namebump",
        "get",
        "alice",
        "--json",
        "--replica",
        p(&replica),
    ];
    assert_eq!(ok(&from_server), ok(&from_replica));

    // An update and a delete.
    put("alice", "hello again");
    let mut del = vec!["namebump", "del", "bob", "--key", p(&key)];
    del.extend_from_slice(&server);
    ok(&del);
    replica_reaches(&replica, "alice", Some("hello again"));
    replica_reaches(&replica, "bob", None);
    let missing = keyway(&["namebump", "get", "bob", "--replica", p(&replica)]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(ok(&from_server), ok(&from_replica));

    // Ctrl-C stops the follower cleanly.
    let pid = follower.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follower.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the follower ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // A one-shot mirror into a fresh replica catches up at once.
    let once = dir.path().join("once.stream");
    let printed = ok(&[
        "namebump",
        "mirror",
        p(&once),
        "--from",
        &url,
        "--pubkey",
        &stream_pk,
    ]);
    assert!(printed.contains("new records"), "{printed}");
    assert_eq!(
        ok(&["namebump", "get", "alice", "--replica", p(&once)]),
        "hello again"
    );

    // The server (it holds the stream key) alters alice's value in its
    // stream: the replica pulls the record, and refuses to answer with it.
    let mut owned = keyway_drayer::Stream::open(&stream).unwrap();
    let record_key = hex(b"alice");
    let mut record = owned.get(&record_key, "namebump").unwrap().unwrap();
    let value_end = record.len() - 33 - 64;
    record[value_end - 1] = b'!';
    owned.set(&record_key, "namebump", &record).unwrap();
    drop(owned);
    let pulled = keyway(&[
        "namebump",
        "mirror",
        p(&once),
        "--from",
        &url,
        "--pubkey",
        &stream_pk,
    ]);
    assert_eq!(pulled.status.code(), Some(1), "the mirror reports it");
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(
        stderr.contains(&format!("record {record_key} is not what its owner signed")),
        "{stderr}"
    );
    let refused = keyway(&["namebump", "get", "alice", "--replica", p(&once)]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not what its owner signed"), "{stderr}");
    assert!(refused.stdout.is_empty(), "no value printed");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn unsupported_uses_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("s.stream");
    let out = keyway(&[
        "namebump",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--db",
        "postgres://nobody@127.0.0.1:1/none",
        "--key",
        p(&dir.path().join("k")),
        "--publish-stream",
        p(&stream),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs an SQLite database"), "{stderr}");
    assert!(!stream.exists(), "nothing created");

    let out = keyway(&[
        "namebump",
        "get",
        "x",
        "--replica",
        p(&dir.path().join("none")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mirror the stream first"));

    let out = keyway(&[
        "namebump",
        "get",
        "x",
        "--replica",
        "r",
        "--server",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
}
