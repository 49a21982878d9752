//! `keyway registry serve` as a user runs it (issue 17: the lines it
//! prints are a contract): `node_pk=`, `stream_pk=` and `listening=`
//! (then `http=` with --http); the stream is served to any proven peer
//! over links and to anyone over HTTP; a restart on the same --db keeps
//! the same stream.
#![allow(clippy::unwrap_used)]

mod cli;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cli::{KEYWAY, Keys, keyway, ok, read_lines, s};

/// A bound on every wait: a shared, slow machine, never a timing claim.
const PATIENCE: Duration = Duration::from_secs(120);

/// A running `keyway registry serve`, killed (by its PID) when dropped.
struct Server {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server and waits for its first `count` lines.
    fn start(args: &[&str], count: usize) -> Self {
        let mut child = Command::new(KEYWAY)
            .args(["registry", "serve"])
            .args(args)
            .env_remove("KEYWAY_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let rx = read_lines(child.stdout.take().unwrap());
        let mut server = Self {
            child,
            lines: Vec::new(),
        };
        for _ in 0..count {
            server.lines.push(rx.recv_timeout(PATIENCE).unwrap());
        }
        server
    }

    fn value(&self, key: &str) -> &str {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.lines))
    }
}

/// The keys, and the arguments of a server on them.
struct Setup(Keys);

impl std::ops::Deref for Setup {
    type Target = Keys;
    fn deref(&self) -> &Keys {
        &self.0
    }
}

impl Setup {
    fn new() -> Self {
        Self(Keys::new())
    }

    /// `registry serve` on loopback with `id` and `db`, stream over HTTP.
    fn serve_args<'a>(&'a self, id: &'a Path, db: &'a Path) -> Vec<&'a str> {
        vec![
            "--identity",
            s(id),
            "--network-key",
            s(&self.net),
            "--listen",
            "127.0.0.1:0",
            "--db",
            s(db),
            "--password-file",
            s(&self.pw),
            "--http",
            "127.0.0.1:0",
        ]
    }

    fn identity(&self, name: &str) -> PathBuf {
        self.0.identity(name).0
    }
}

#[test]
fn serve_prints_its_lines_serves_its_stream_and_keeps_it_across_a_restart() {
    let setup = Setup::new();
    let id = setup.identity("server.id");
    let db = setup.path("db");
    let args = setup.serve_args(&id, &db);
    let server = Server::start(&args, 4);
    // The three contract lines, in order, then the HTTP address.
    let keys: Vec<&str> = server
        .lines
        .iter()
        .map(|l| l.split_once('=').unwrap().0)
        .collect();
    assert_eq!(keys, ["node_pk", "stream_pk", "listening", "http"]);
    let node_pk = server.value("node_pk").to_owned();
    assert_eq!(node_pk.len(), 66);
    let stream_pk = server.value("stream_pk").to_owned();
    assert_eq!(stream_pk.len(), 44);
    let listening = server.value("listening").to_owned();
    assert!(listening.starts_with("127.0.0.1:"));
    assert!(db.join("registry.drayer").exists());

    // Over HTTP, to anyone.
    let url = format!("http://{}/", server.value("http"));
    let mirror = setup.path("http.drayer");
    ok(keyway(&[
        "drayer",
        "sync",
        s(&mirror),
        "--from",
        &url,
        "--pubkey",
        &stream_pk,
    ]));
    // Over a link, to a proven peer nobody listed (sync:* by default).
    let peer = setup.identity("peer.id");
    let mirror = setup.path("link.drayer");
    ok(keyway(&[
        "drayer",
        "sync",
        s(&mirror),
        "--via",
        &format!("{node_pk}@{listening}"),
        "--identity",
        s(&peer),
        "--network-key",
        s(&setup.net),
        "--password-file",
        s(&setup.pw),
        "--pubkey",
        &stream_pk,
    ]));
    drop(server);

    // Same --db, same stream.
    let again = Server::start(&args, 4);
    assert_eq!(again.value("stream_pk"), stream_pk);
    assert_eq!(again.value("node_pk"), node_pk);
}

/// With --dht the stream is announced on a local Mainline test network
/// (bound to 127.0.0.1, always passed as bootstrap) as `drayer serve --dht`
/// announces, and a mirror finds the server through it.
#[test]
fn serve_dht_announces_the_stream_and_a_mirror_finds_it() {
    let net = mainline::Testnet::builder(5)
        .bind_address(std::net::Ipv4Addr::LOCALHOST)
        .build()
        .unwrap();
    let mut bootstrap = Vec::new();
    for node in &net.bootstrap {
        assert!(node.starts_with("127.0.0.1:"), "{node}");
        bootstrap.push("--dht-bootstrap".to_owned());
        bootstrap.push(node.clone());
    }
    let setup = Setup::new();
    let id = setup.identity("server.id");
    let db = setup.path("db");
    let mut args = setup.serve_args(&id, &db);
    args.push("--dht");
    args.extend(bootstrap.iter().map(String::as_str));
    let server = Server::start(&args, 5);
    let stream_pk = server.value("stream_pk").to_owned();
    assert_eq!(server.lines[4], format!("dht_announced={stream_pk}"));
    let mirror = setup.path("mirror.drayer");
    let mut sync = vec![
        "drayer",
        "sync",
        s(&mirror),
        "--pubkey",
        &stream_pk,
        "--dht",
    ];
    sync.extend(bootstrap.iter().map(String::as_str));
    ok(keyway(&sync));
    assert!(mirror.exists());
}

#[test]
fn dht_needs_http() {
    let out = keyway(&[
        "registry",
        "serve",
        "--identity",
        "x",
        "--network-key",
        "y",
        "--listen",
        "127.0.0.1:0",
        "--db",
        "z",
        "--dht",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http"));
}
