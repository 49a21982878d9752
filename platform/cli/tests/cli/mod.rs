//! What the process tests share: running the built `keyway` and reading
//! its answer.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

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
