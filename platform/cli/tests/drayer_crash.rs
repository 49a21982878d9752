//! An owner write that `keyway` reported done survives the process being
//! killed (SIGKILL) in the middle of a write loop.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use keyway_drayer::Stream;

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// Lines fed to the writer at most: it is killed long before.
const LINES: usize = 1_000_000;

#[test]
fn kill_9_in_a_write_loop_loses_no_reported_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let made = Command::new(KEYWAY)
        .args(["drayer", "new"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let mut writer = Command::new(KEYWAY)
        .args(["drayer", "set-lines"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..LINES {
            // The pipe breaks when the writer dies.
            if writeln!(stdin, "k{i}\tvalue {i}").is_err() {
                return;
            }
        }
    });
    let (done_tx, done) = mpsc::channel();
    let stdout = writer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if done_tx.send(line).is_err() {
                return;
            }
        }
    });

    // Some writes reported, then SIGKILL while the loop runs.
    let mut reported = Vec::new();
    while reported.len() < 300 {
        let line = done
            .recv_timeout(Duration::from_secs(120))
            .expect("the writer reports writes");
        reported.push(line);
    }
    writer.kill().unwrap();
    let status = writer.wait().unwrap();
    assert!(!status.success(), "killed mid-loop: {status:?}");
    // What it printed before dying was reported done too.
    reader.join().unwrap();
    reported.extend(done.try_iter());
    feeder.join().unwrap();
    assert!(reported.len() < LINES, "the loop was still running");

    let stream = Stream::open(&path).unwrap();
    for key in &reported {
        let i: usize = key.strip_prefix('k').unwrap().parse().unwrap();
        let value = stream.get(key, "obj").unwrap();
        assert_eq!(
            value.as_deref(),
            Some(keyway_drayer::obj::encode_str(&format!("value {i}")).as_slice()),
            "{key} was reported written"
        );
    }
    assert_eq!(stream.verify().unwrap().problems, Vec::<String>::new());
}
