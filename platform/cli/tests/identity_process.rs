//! `keyway identity …` and `keyway netkey …` as a user runs them (issue 16:
//! the CLI lines are a contract).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// Runs `keyway` with no terminal and no password in the environment
/// (unless `env_password` is given).
fn keyway(args: &[&str], env_password: Option<&str>) -> Output {
    let mut command = Command::new(KEYWAY);
    command
        .args(args)
        .env_remove("KEYWAY_PASSWORD")
        .stdin(Stdio::null());
    if let Some(pw) = env_password {
        command.env("KEYWAY_PASSWORD", pw);
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

fn node_pk_line(stdout: &str) -> &str {
    let line = stdout.trim_end();
    assert!(!line.contains('\n'), "one line: {stdout:?}");
    let hex = line.strip_prefix("node_pk=").unwrap();
    assert_eq!(hex.len(), 66, "{line}");
    assert!(hex.starts_with("02") || hex.starts_with("03"), "{line}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    line
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn identity_new_and_show_print_the_same_node_pk() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("node.identity");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2 and more\n").unwrap();

    let created = ok(keyway(
        &[
            "identity",
            "new",
            "--out",
            s(&id),
            "--password-file",
            s(&pw),
        ],
        None,
    ));
    let line = node_pk_line(&created).to_owned();
    let mode = std::fs::metadata(&id).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&id).unwrap();
    assert!(
        text.starts_with("keyway-identity v1\nkdf=argon2id-v19\nm_kib=65536\nt=3\n"),
        "{text}"
    );

    let shown = ok(keyway(
        &["identity", "show", s(&id), "--password-file", s(&pw)],
        None,
    ));
    assert_eq!(node_pk_line(&shown), line);

    // The trailing newline of the file is not part of the password: the
    // same password from the environment opens it.
    let from_env = ok(keyway(
        &["identity", "show", s(&id)],
        Some("hunter2 and more"),
    ));
    assert_eq!(node_pk_line(&from_env), line);

    assert!(
        !keyway(
            &[
                "identity",
                "new",
                "--out",
                s(&id),
                "--password-file",
                s(&pw)
            ],
            None
        )
        .status
        .success(),
        "an identity file is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&id).unwrap(), text);
}

#[test]
fn wrong_or_missing_password_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("node.identity");
    ok(keyway(&["identity", "new", "--out", s(&id)], Some("right")));

    let wrong = keyway(&["identity", "show", s(&id)], Some("wrong"));
    assert!(!wrong.status.success());
    let err = String::from_utf8(wrong.stderr).unwrap();
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(wrong.stdout.is_empty());

    // No file, no environment, no terminal: say where a password can come from.
    let none = keyway(&["identity", "show", s(&id)], None);
    assert!(!none.status.success());
    let err = String::from_utf8(none.stderr).unwrap();
    assert!(
        err.contains("--password-file") && err.contains("KEYWAY_PASSWORD"),
        "{err}"
    );
}

#[test]
fn netkey_new_writes_32_private_hex_bytes_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.key");
    let b = dir.path().join("b.key");
    ok(keyway(&["netkey", "new", "--out", s(&a)], None));
    ok(keyway(&["netkey", "new", "--out", s(&b)], None));
    let text = std::fs::read_to_string(&a).unwrap();
    let hex = text.strip_suffix('\n').unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(text, std::fs::read_to_string(&b).unwrap(), "random keys");
    let mode = std::fs::metadata(&a).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !keyway(&["netkey", "new", "--out", s(&a)], None)
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(&a).unwrap(), text);
}
