//! `keyway drayer …` as a user runs it: create, write, read, list, verify,
//! then serve from one process and mirror from another over loopback HTTP.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

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
    command.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn create_write_serve_and_mirror_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("notes.stream");
    let pk = ok(keyway(&["new", "{}"], &[&owner])).trim().to_owned();
    assert_eq!(pk.len(), 44, "{pk}");
    assert!(dir.path().join("notes.stream.privatekey").exists());
    assert!(
        !keyway(&["new", "{}"], &[&owner]).status.success(),
        "never overwritten"
    );

    ok(keyway(&["set", "{}", "hello", "world"], &[&owner]));
    ok(keyway(
        &[
            "set",
            "{}",
            "greeting",
            "hi there",
            "--type",
            "publicSocialPost",
        ],
        &[&owner],
    ));
    ok(keyway(
        &["set", "{}", "blob", "\u{1}raw", "--raw"],
        &[&owner],
    ));
    ok(keyway(&["set", "{}", "gone", "soon"], &[&owner]));
    ok(keyway(&["set", "{}", "last", "one"], &[&owner]));
    ok(keyway(&["del", "{}", "gone"], &[&owner]));
    assert_eq!(ok(keyway(&["get", "{}", "hello"], &[&owner])), "world");
    let raw = keyway(&["get", "{}", "hello", "--raw"], &[&owner]);
    assert_eq!(raw.stdout, b"\xa5world", "the stored msgpack");
    assert_eq!(
        ok(keyway(&["get", "{}", "blob", "--raw"], &[&owner])),
        "\u{1}raw"
    );
    assert_eq!(
        keyway(&["get", "{}", "gone"], &[&owner]).status.code(),
        Some(2)
    );
    let listed = ok(keyway(&["ls", "{}", "--json"], &[&owner]));
    let lines: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["key"], "hello");
    assert_eq!(lines[0]["value_hex"], "a5776f726c64");
    assert!(ok(keyway(&["verify", "{}"], &[&owner])).starts_with("4 records"));

    // Serve it; mirror it from another process.
    let mut server = Command::new(KEYWAY)
        .args(["drayer", "serve", "--listen", "127.0.0.1:0"])
        .arg(&owner)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _server = Server(server);
    let addr = first.trim().strip_prefix("listening=").unwrap().to_owned();
    let url = format!("http://{addr}/");
    let mirror = dir.path().join("mirror.stream");
    assert!(
        !keyway(&["sync", "{}", "--from", &url], &[&mirror])
            .status
            .success(),
        "cloning needs --pubkey"
    );
    let said = ok(keyway(
        &["sync", "{}", "--from", &url, "--pubkey", &pk],
        &[&mirror],
    ));
    assert!(said.contains("4 records held"), "{said}");
    assert_eq!(ok(keyway(&["get", "{}", "hello"], &[&mirror])), "world");
    assert!(!dir.path().join("mirror.stream.privatekey").exists());
    assert!(
        !keyway(&["set", "{}", "x", "y"], &[&mirror])
            .status
            .success(),
        "a mirror cannot write"
    );

    // The owner names its server in the stream and changes things; the
    // mirror catches up, then syncs from the primary server it learnt.
    ok(keyway(&["primary", "{}", &url], &[&owner]));
    ok(keyway(&["set", "{}", "hello", "again"], &[&owner]));
    ok(keyway(
        &["del", "{}", "greeting", "--type", "publicSocialPost"],
        &[&owner],
    ));
    ok(keyway(&["sync", "{}", "--from", &url], &[&mirror]));
    assert_eq!(
        ok(keyway(&["primary", "{}"], &[&mirror])).trim(),
        format!("http\t{url}")
    );
    ok(keyway(&["set", "{}", "later", "too"], &[&owner]));
    let said = ok(keyway(&["sync", "{}"], &[&mirror]));
    assert!(said.starts_with("1 new records"), "{said}");
    assert_eq!(ok(keyway(&["get", "{}", "hello"], &[&mirror])), "again");
    assert_eq!(
        ok(keyway(&["ls", "{}", "--json"], &[&mirror])),
        ok(keyway(&["ls", "{}", "--json"], &[&owner]))
    );
    assert!(ok(keyway(&["verify", "{}"], &[&mirror])).starts_with("5 records"));

    // A partial mirror keeps the newest two.
    let recent = dir.path().join("recent.stream");
    ok(keyway(
        &[
            "sync", "{}", "--from", &url, "--pubkey", &pk, "--newest", "2",
        ],
        &[&recent],
    ));
    let held = ok(keyway(&["ls", "{}", "--json"], &[&recent]));
    assert_eq!(held.lines().count(), 2, "{held}");
    assert!(ok(keyway(&["verify", "{}"], &[&recent])).starts_with("2 records"));

    // Damage is named and fails verification.
    let conn = rusqlite::Connection::open(&mirror).unwrap();
    conn.execute("UPDATE record SET value = x'a1' WHERE key = 'last'", [])
        .unwrap();
    let out = keyway(&["verify", "{}"], &[&mirror]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"last\""));
}

#[test]
fn del_removes_the_newest_record_and_a_mirror_follows() {
    // The original refused this ("cannot delete the very most recently
    // added item", spec D5).
    let dir = tempfile::tempdir().unwrap();
    let owner = dir.path().join("notes.stream");
    let pk = ok(keyway(&["new", "{}"], &[&owner])).trim().to_owned();
    ok(keyway(&["set", "{}", "first", "1"], &[&owner]));
    ok(keyway(&["set", "{}", "newest", "2"], &[&owner]));

    let mut server = Command::new(KEYWAY)
        .args(["drayer", "serve", "--listen", "127.0.0.1:0"])
        .arg(&owner)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _server = Server(server);
    let addr = first.trim().strip_prefix("listening=").unwrap().to_owned();
    let url = format!("http://{addr}/");
    let mirror = dir.path().join("mirror.stream");
    ok(keyway(
        &["sync", "{}", "--from", &url, "--pubkey", &pk],
        &[&mirror],
    ));
    assert_eq!(ok(keyway(&["get", "{}", "newest"], &[&mirror])), "2");

    ok(keyway(&["del", "{}", "newest"], &[&owner]));
    ok(keyway(&["sync", "{}", "--from", &url], &[&mirror]));
    for path in [&owner, &mirror] {
        assert_eq!(
            keyway(&["get", "{}", "newest"], &[path]).status.code(),
            Some(2)
        );
        assert_eq!(ok(keyway(&["get", "{}", "first"], &[path])), "1");
        ok(keyway(&["verify", "{}"], &[path]));
    }
    // The placeholder standing in for it is not listed as data.
    let listed = ok(keyway(&["ls", "{}", "--json"], &[&mirror]));
    assert_eq!(listed, ok(keyway(&["ls", "{}", "--json"], &[&owner])));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        !keyway(
            &["set", "{}", "placeholder", "x", "--type", "drayer"],
            &[&owner]
        )
        .status
        .success(),
        "reserved"
    );

    // The next record takes the placeholder's place; the last one goes too.
    ok(keyway(&["set", "{}", "next", "3"], &[&owner]));
    ok(keyway(&["sync", "{}", "--from", &url], &[&mirror]));
    assert_eq!(ok(keyway(&["get", "{}", "next"], &[&mirror])), "3");
    ok(keyway(&["del", "{}", "next"], &[&owner]));
    ok(keyway(&["del", "{}", "first"], &[&owner]));
    ok(keyway(&["sync", "{}", "--from", &url], &[&mirror]));
    assert_eq!(ok(keyway(&["ls", "{}", "--json"], &[&mirror])), "");
    assert_eq!(ok(keyway(&["ls", "{}", "--json"], &[&owner])), "");
    ok(keyway(&["verify", "{}"], &[&mirror]));
}

/// With `DRAYER_REFERENCE=<clone of EternityForest/drayer>` and
/// `DRAYER_REFERENCE_PYTHON=<python with libnacl, msgpack==0.6.2,
/// requests, cherrypy>`: the original, mirroring `keyway drayer serve`
/// while the owner deletes its newest record again and again, holds the
/// owner's rows after every sync (`tests/interop/drayer_ref_tip_delete.py`).
/// The original cannot be installed from a package registry, so the test
/// command reports this test as ignored; run it with `--ignored`.
#[test]
#[ignore = "needs a clone of the original Drayer: set DRAYER_REFERENCE and run with --ignored"]
fn the_original_mirrors_deletions_of_the_newest_record() {
    let checkout = std::env::var("DRAYER_REFERENCE")
        .expect("DRAYER_REFERENCE must name a clone of EternityForest/drayer");
    let python = std::env::var("DRAYER_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/drayer_ref_tip_delete.py"
    );
    let out = Command::new(python)
        .args([script, &checkout, KEYWAY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
