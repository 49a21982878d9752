//! `keyway node run|send` and `keyway drayer sync --via` as a user runs
//! them, between processes on loopback (issue 16: the CLI lines are a
//! contract).
#![allow(clippy::unwrap_used)]

mod cli;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

// The same directory of keys as the other process tests.
use cli::{KEYWAY, Keys as Setup, keyway, ok, read_lines, s};

/// The one-line reason of a failed command.
fn failed(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err
}

/// A running `keyway node run`, killed (by its PID) when dropped.
struct RunningNode {
    child: Child,
    lines: mpsc::Receiver<String>,
    node_pk: String,
    listening: String,
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RunningNode {
    fn start(setup: &Setup, identity: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(KEYWAY)
            .args([
                "node",
                "run",
                "--identity",
                s(identity),
                "--network-key",
                s(&setup.net),
                "--listen",
                "127.0.0.1:0",
                "--password-file",
                s(&setup.pw),
            ])
            .args(extra)
            .env_remove("KEYWAY_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = read_lines(child.stdout.take().unwrap());
        let mut node = Self {
            child,
            lines,
            node_pk: String::new(),
            listening: String::new(),
        };
        let first = node.line();
        node.node_pk = first.strip_prefix("node_pk=").unwrap().to_owned();
        let second = node.line();
        node.listening = second.strip_prefix("listening=").unwrap().to_owned();
        assert!(node.listening.starts_with("127.0.0.1:"), "{second}");
        node
    }

    /// The next stdout line, within a generous bound (a slow, shared
    /// machine; the test asserts what comes, never how fast).
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from the node")
    }

    fn address(&self) -> String {
        format!("{}@{}", self.node_pk, self.listening)
    }
}

fn send(setup: &Setup, to: &str, message: &str, identity: &Path, net: &Path) -> Output {
    keyway(&[
        "node",
        "send",
        to,
        message,
        "--identity",
        s(identity),
        "--network-key",
        s(net),
        "--password-file",
        s(&setup.pw),
        "--timeout",
        "4",
    ])
}

#[test]
fn messages_are_delivered_printed_and_acknowledged() {
    let setup = Setup::new();
    let (a, a_pk) = setup.identity("a.id");
    let (b, b_pk) = setup.identity("b.id");
    // `=` inside the capability list would be part of it: the value splits
    // at the first `=` only (here there is just one).
    let node = RunningNode::start(&setup, &a, &["--allow", &format!("{b_pk}=message")]);
    assert_eq!(node.node_pk, a_pk);

    ok(send(&setup, &node.address(), "hello, node", &b, &setup.net));
    assert_eq!(node.line(), format!("from={b_pk} msg=hello, node"));
    ok(send(&setup, &node.address(), "line\nbreak", &b, &setup.net));
    assert_eq!(node.line(), format!("from={b_pk} msg=line\\nbreak"));

    let json_node = RunningNode::start(
        &setup,
        &setup.identity("c.id").0,
        &["--json", "--allow", &format!("{b_pk}=sync:*,message")],
    );
    ok(send(&setup, &json_node.address(), "hi", &b, &setup.net));
    let line: serde_json::Value = serde_json::from_str(&json_node.line()).unwrap();
    assert_eq!(line["from"], b_pk.as_str());
    assert_eq!(line["msg_hex"], "6869");
}

#[test]
fn a_wrong_network_key_ends_in_handshake_failed() {
    let setup = Setup::new();
    let (a, _) = setup.identity("a.id");
    let (b, b_pk) = setup.identity("b.id");
    let other_net = setup.path("other.key");
    ok(keyway(&["netkey", "new", "--out", s(&other_net)]));
    let node = RunningNode::start(&setup, &a, &["--allow", &format!("{b_pk}=message")]);
    // Retried until --timeout (the node blocklists the source meanwhile),
    // and still the real reason, not `timeout`.
    let err = failed(send(&setup, &node.address(), "x", &b, &other_net));
    assert!(err.contains("handshake failed"), "{err}");
    assert!(!err.contains("timeout"), "{err}");
}

#[test]
fn an_identity_off_the_allow_list_is_not_authorized() {
    let setup = Setup::new();
    let (a, _) = setup.identity("a.id");
    let (b, b_pk) = setup.identity("b.id");
    let (stranger, _) = setup.identity("stranger.id");
    let node = RunningNode::start(&setup, &a, &["--allow", &format!("{b_pk}=sync:*")]);
    // Not on the list at all.
    let err = failed(send(&setup, &node.address(), "x", &stranger, &setup.net));
    assert!(err.contains("not authorized"), "{err}");
    // On the list, without `message`.
    let err = failed(send(&setup, &node.address(), "x", &b, &setup.net));
    assert!(err.contains("not authorized"), "{err}");
    assert!(
        node.lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing was delivered"
    );
}

#[test]
fn a_node_proving_another_key_than_dialed_is_refused() {
    let setup = Setup::new();
    let (a, _) = setup.identity("a.id");
    let (b, b_pk) = setup.identity("b.id");
    let node = RunningNode::start(&setup, &a, &["--allow", &format!("{b_pk}=message")]);
    // Dial the right place, expecting b's key there.
    let wrong = format!("{b_pk}@{}", node.listening);
    let err = failed(send(&setup, &wrong, "x", &b, &setup.net));
    assert!(err.contains("wrong peer identity"), "{err}");
    // The node did not blocklist the dialer for it: a right send goes
    // through at once.
    ok(send(&setup, &node.address(), "after", &b, &setup.net));
    assert_eq!(node.line(), format!("from={b_pk} msg=after"));
}

#[test]
fn a_mirror_over_a_link_equals_the_source_and_needs_the_capability() {
    let setup = Setup::new();
    let (a, _) = setup.identity("a.id");
    let (b, b_pk) = setup.identity("b.id");
    let (c, c_pk) = setup.identity("c.id");
    let source = setup.path("notes.stream");
    let other = setup.path("other.stream");
    let stream_pk = ok(keyway(&["drayer", "new", s(&source)])).trim().to_owned();
    let other_pk = ok(keyway(&["drayer", "new", s(&other)])).trim().to_owned();
    for i in 0..40 {
        ok(keyway(&[
            "drayer",
            "set",
            s(&source),
            &format!("key{i}"),
            &format!("value {i}"),
        ]));
    }
    let node = RunningNode::start(
        &setup,
        &a,
        &[
            "--allow",
            &format!("{b_pk}=sync:{stream_pk}"),
            "--allow",
            &format!("{c_pk}=sync:{other_pk},message"),
            "--serve-stream",
            s(&source),
            "--serve-stream",
            s(&other),
        ],
    );
    let sync = |mirror: &Path, identity: &Path, pubkey: Option<&str>| {
        let mut args = vec!["drayer", "sync", s(mirror), "--via"];
        let via = node.address();
        args.push(&via);
        args.extend(["--identity", s(identity), "--network-key", s(&setup.net)]);
        args.extend(["--password-file", s(&setup.pw)]);
        if let Some(pk) = pubkey {
            args.extend(["--pubkey", pk]);
        }
        keyway(&args)
    };
    let listing = |path: &Path| ok(keyway(&["drayer", "ls", s(path), "--json"]));

    let mirror = setup.path("mirror.stream");
    let out = ok(sync(&mirror, &b, Some(&stream_pk)));
    assert!(out.starts_with("40 new records"), "{out}");
    assert_eq!(listing(&mirror), listing(&source));
    let verified = ok(keyway(&["drayer", "verify", s(&mirror)]));
    assert!(verified.starts_with("40 records"), "{verified}");

    // An update brings the change (and only it).
    ok(keyway(&["drayer", "set", s(&source), "key7", "changed"]));
    ok(keyway(&["drayer", "del", s(&source), "key8"]));
    ok(sync(&mirror, &b, None));
    assert_eq!(listing(&mirror), listing(&source));

    // c may sync the other stream, not this one: refused, no record.
    let refused = setup.path("refused.stream");
    let err = failed(sync(&refused, &c, Some(&stream_pk)));
    assert!(err.contains("not authorized"), "{err}");
    assert_eq!(listing(&refused), "");
}

#[test]
fn ui_prints_a_pairing_url_on_loopback_and_refuses_other_addresses() {
    use std::io::{Read, Write};

    let setup = Setup::new();
    let (a, _) = setup.identity("a.id");
    let node = RunningNode::start(&setup, &a, &["--ui", "127.0.0.1:0"]);
    let line = node.line();
    let url = line.strip_prefix("ui=http://").unwrap();
    let (host, fragment) = url.split_once("/#pair=").unwrap();
    assert!(host.starts_with("127.0.0.1:"), "{line}");
    assert!(fragment.len() >= 32, "a pairing token: {line}");
    // The page itself is served (pairing and the session are the node-ui
    // crate's tests, in a real Chromium).
    let mut socket = std::net::TcpStream::connect(host).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.contains(fragment),
        "the token never travels to the server"
    );

    let err = failed(keyway(&[
        "node",
        "run",
        "--identity",
        s(&a),
        "--network-key",
        s(&setup.net),
        "--listen",
        "127.0.0.1:0",
        "--password-file",
        s(&setup.pw),
        "--ui",
        "0.0.0.0:0",
    ]));
    assert!(err.contains("loopback"), "{err}");
}
