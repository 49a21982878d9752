//! `keyway registry client|register|delete|lookup|list` as other checks
//! drive them (issue 17: the lines are a contract): the REPL over stdin
//! with nothing but answers on stdout, and the one-shot exit codes.
#![allow(clippy::unwrap_used)]

mod cli;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cli::{KEYWAY, Keys, keyway, read_lines, s};

/// Longest wait for one line from a process.
const PATIENCE: Duration = Duration::from_secs(30);

/// A directory with a password file, a network key and a running
/// `keyway registry serve` (killed by its PID when dropped).
struct Setup {
    keys: Keys,
    server: Child,
    /// `PUBKEY@HOST:PORT` of the server.
    address: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Setup {
    fn new() -> Self {
        let keys = Keys::new();
        let server_id = keys.identity("server.id").0;
        let db = keys.path("db");
        let mut server = Command::new(KEYWAY)
            .args([
                "registry",
                "serve",
                "--identity",
                s(&server_id),
                "--network-key",
                s(&keys.net),
                "--listen",
                "127.0.0.1:0",
                "--db",
                s(&db),
                "--password-file",
                s(&keys.pw),
            ])
            .env_remove("KEYWAY_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = read_lines(server.stdout.take().unwrap());
        let (mut node_pk, mut listening) = (None, None);
        while node_pk.is_none() || listening.is_none() {
            let line = lines.recv_timeout(PATIENCE).unwrap();
            if let Some(pk) = line.strip_prefix("node_pk=") {
                node_pk = Some(pk.to_owned());
            } else if let Some(addr) = line.strip_prefix("listening=") {
                listening = Some(addr.to_owned());
            }
        }
        let address = format!("{}@{}", node_pk.unwrap(), listening.unwrap());
        Self {
            keys,
            server,
            address,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.keys.path(name)
    }

    /// A client: its identity file, node_pk and the options every client
    /// command takes (its replica in a directory of its own).
    fn client(&self, name: &str) -> Client {
        let (identity, pk) = self.keys.identity(&format!("{name}.id"));
        let options = vec![
            "--identity".into(),
            s(&identity).into(),
            "--network-key".into(),
            s(&self.keys.net).into(),
            "--server".into(),
            self.address.clone(),
            "--replica".into(),
            s(&self.path(&format!("{name}.replica"))).into(),
            "--password-file".into(),
            s(&self.keys.pw).into(),
        ];
        Client { pk, options }
    }
}

/// A new identity file; its path and node_pk.
struct Client {
    pk: String,
    options: Vec<String>,
}

impl Client {
    /// `keyway registry COMMAND [NAME] OPTIONS…`: stdout and exit code.
    fn one(&self, command: &str, name: Option<&str>) -> (String, i32) {
        let mut args: Vec<&str> = vec!["registry", command];
        args.extend(name);
        args.extend(self.options.iter().map(String::as_str));
        let out = keyway(&args);
        (
            String::from_utf8(out.stdout).unwrap(),
            out.status.code().unwrap(),
        )
    }

    fn repl(&self) -> Repl {
        self.repl_with(&[])
    }

    fn repl_with(&self, extra: &[&str]) -> Repl {
        let mut child = Command::new(KEYWAY)
            .args(["registry", "client"])
            .args(&self.options)
            .args(extra)
            .env_remove("KEYWAY_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = read_lines(child.stdout.take().unwrap());
        Repl {
            child,
            stdin,
            lines,
        }
    }
}

/// A running REPL, killed (by its PID) when dropped.
struct Repl {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Repl {
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(PATIENCE).unwrap()
    }

    /// Sends `command` and returns its one line of answer.
    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.line()
    }

    /// `exit`, then: the process ends with 0 and prints nothing more.
    fn exit(mut self) {
        self.send("exit");
        let status = self.child.wait().unwrap();
        assert!(status.success());
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.is_empty(), "nothing after exit: {rest:?}");
    }
}

#[test]
fn the_repl_prints_only_answers() {
    let setup = Setup::new();
    let alice = setup.client("alice");
    let bob = setup.client("bob");

    let mut a = alice.repl();
    assert_eq!(a.ask("register Alice"), "OK");
    assert_eq!(a.ask("lookup alice"), alice.pk);
    assert_eq!(a.ask("register alice"), "IDEMPOTENT");
    assert_eq!(a.ask("register zoe"), "OK");
    assert_eq!(a.ask("lookup nobody"), "NOT FOUND");
    a.send("list");
    assert_eq!([a.line(), a.line(), a.line()], ["alice", "zoe", "END"]);
    assert!(
        a.ask("register x").starts_with("ERR:"),
        "a validation error"
    );

    let mut b = bob.repl();
    assert_eq!(b.ask("register alice"), "ERR:Username already taken");
    assert_eq!(
        b.ask("delete alice"),
        "ERR:Unauthorized: only the owner can delete this username"
    );
    assert_eq!(b.ask("lookup ALICE"), alice.pk, "synced at start");
    assert_eq!(b.ask("register bob"), "OK");

    // Alice's REPL follows the stream: Bob's name shows up without a
    // write of hers (bounded: 100 tries 100 ms apart).
    let mut seen = String::new();
    for _ in 0..100 {
        seen = a.ask("lookup bob");
        if seen != "NOT FOUND" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, bob.pk);

    assert_eq!(a.ask("delete alice"), "OK");
    assert_eq!(a.ask("lookup alice"), "NOT FOUND");
    assert_eq!(a.ask("delete alice"), "ERR:Username not found");
    a.exit();
    b.exit();
}

/// Replication lag through two REPLs: Bob's write is acknowledged (and in
/// his replica), then Alice's REPL is asked until it sees it. The REPL
/// follows by long poll, so this is a pull's round trip; polling every
/// 500 ms would exceed the bound in most samples.
#[test]
fn a_second_repl_sees_a_write_well_within_the_old_poll_interval() {
    const SAMPLES: usize = 6;
    const BOUND: Duration = Duration::from_millis(200);
    let setup = Setup::new();
    let alice = setup.client("alice");
    let bob = setup.client("bob");
    let mut a = alice.repl();
    let mut b = bob.repl();
    assert_eq!(a.ask("lookup nobody"), "NOT FOUND", "Alice's REPL is up");
    let mut lags = Vec::new();
    for i in 0..SAMPLES {
        let name = format!("bob{i:03}");
        assert_eq!(b.ask(&format!("register {name}")), "OK");
        let acknowledged = std::time::Instant::now();
        // Bounded: at most 2 s of lookups, each a round trip to the REPL.
        let mut seen = false;
        while acknowledged.elapsed() < Duration::from_secs(2) {
            if a.ask(&format!("lookup {name}")) == bob.pk {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(seen, "{name} reached Alice's replica");
        lags.push(acknowledged.elapsed());
        // Spread the writes over the follower's cycle.
        std::thread::sleep(Duration::from_millis(37 * (i as u64 + 1)));
    }
    eprintln!("replication lags: {lags:?}");
    assert!(
        lags.iter().all(|lag| *lag < BOUND),
        "every lag under {BOUND:?}: {lags:?}"
    );
    a.exit();
    b.exit();
}

#[test]
fn one_shot_commands_exit_by_the_answer() {
    let setup = Setup::new();
    let alice = setup.client("alice");
    let bob = setup.client("bob");
    let carol = setup.client("carol");

    assert_eq!(alice.one("register", Some("alice")), ("OK\n".into(), 0));
    assert_eq!(
        alice.one("register", Some("alice")),
        ("IDEMPOTENT\n".into(), 0)
    );
    assert_eq!(
        bob.one("register", Some("alice")),
        ("ERR:Username already taken\n".into(), 1)
    );
    assert_eq!(bob.one("register", Some("bob")), ("OK\n".into(), 0));
    // Carol never wrote: her first lookup syncs, then answers.
    assert_eq!(
        carol.one("lookup", Some("alice")),
        (format!("{}\n", alice.pk), 0)
    );
    assert_eq!(
        carol.one("lookup", Some("nobody")),
        ("NOT FOUND\n".into(), 2)
    );
    assert_eq!(carol.one("list", None), ("alice\nbob\nEND\n".into(), 0));
    assert_eq!(
        carol.one("delete", Some("alice")),
        (
            "ERR:Unauthorized: only the owner can delete this username\n".into(),
            1
        )
    );
    assert_eq!(alice.one("delete", Some("alice")), ("OK\n".into(), 0));
    assert_eq!(
        carol.one("lookup", Some("alice")),
        ("NOT FOUND\n".into(), 2)
    );
    assert_eq!(carol.one("list", None), ("bob\nEND\n".into(), 0));
}

#[test]
fn an_unreachable_server_is_one_line_on_stderr() {
    let setup = Setup::new();
    let alice = setup.client("alice");
    // The server's key at a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let key = setup.address.split('@').next().unwrap();
    let mut args: Vec<String> = vec!["registry".into(), "lookup".into(), "alice".into()];
    for pair in alice.options.chunks(2) {
        args.push(pair[0].clone());
        args.push(if pair[0] == "--server" {
            format!("{key}@127.0.0.1:{port}")
        } else {
            pair[1].clone()
        });
    }
    args.extend(["--timeout".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = keyway(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn a_restarted_repl_answers_from_its_replica_without_the_server() {
    let mut setup = Setup::new();
    let alice = setup.client("alice");
    assert_eq!(alice.one("register", Some("alice")), ("OK\n".into(), 0));
    assert_eq!(alice.one("register", Some("amber")), ("OK\n".into(), 0));
    let _ = setup.server.kill();
    let _ = setup.server.wait();

    let mut a = alice.repl_with(&["--timeout", "2"]);
    assert_eq!(a.ask("lookup alice"), alice.pk);
    a.send("list");
    assert_eq!([a.line(), a.line(), a.line()], ["alice", "amber", "END"]);
    // A write cannot be made: still one line, saying why.
    let failed = a.ask("register bob");
    assert!(failed.starts_with("ERR:"), "{failed}");
    assert_eq!(a.ask("lookup bob"), "NOT FOUND");
    a.exit();
}
