//! What the process tests share: running the built `keyway` and reading
//! its answer, and a directory with the keys the link commands need.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

pub(crate) const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// Runs `keyway ARGS` to the end, with no password in the environment
/// and nothing on stdin.
pub(crate) fn keyway(args: &[&str]) -> Output {
    Command::new(KEYWAY)
        .args(args)
        .env_remove("KEYWAY_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Its stdout, after asserting it succeeded (stderr as the message).
pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The lines a child writes, read on a thread of their own (so a wait for
/// one can have a deadline: `recv_timeout`).
pub(crate) fn read_lines(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A temporary directory with a password file and a network key.
pub(crate) struct Keys {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pw: PathBuf,
    pub(crate) net: PathBuf,
}

impl Keys {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "test password\n").unwrap();
        let net = dir.path().join("net.key");
        ok(keyway(&["netkey", "new", "--out", s(&net)]));
        Self { dir, pw, net }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new identity file `name` in the directory, and its node_pk.
    pub(crate) fn identity(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let out = ok(keyway(&[
            "identity",
            "new",
            "--out",
            s(&path),
            "--password-file",
            s(&self.pw),
        ]));
        let pk = out.trim().strip_prefix("node_pk=").unwrap().to_owned();
        (path, pk)
    }
}
