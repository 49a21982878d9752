//! `keyway demo` as a user runs it (issue 12): the built binary, its
//! output, its exit code, and what it leaves behind (nothing).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

/// Runs `keyway ARGS`; a run that hangs is killed (the demo bounds its
/// own waits: this only keeps a broken build from stalling the suite).
fn keyway(args: &[&str]) -> Output {
    let mut child = Command::new(KEYWAY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "keyway {args:?} hung; it printed:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The step line `area step …`, which must report `ok` with a time in ms.
fn step<'a>(text: &'a str, area: &str, step: &str, detail: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(area) && words.next() == Some(step) && l.contains(detail)
        })
        .unwrap_or_else(|| panic!("no `{area} {step}` line with {detail:?} in:\n{text}"));
    let ms: f64 = line
        .strip_suffix(" ms")
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no timing at the end of {line:?}"));
    assert!(ms >= 0.0 && line.contains(" ok "), "{line}");
    line
}

#[test]
fn demo_runs_every_part_on_loopback_and_cleans_up() {
    let out = keyway(&["demo"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let header = text.lines().next().unwrap();
    assert!(header.contains("127.0.0.1"), "{header}");
    let dir = header
        .split_once("files in ")
        .and_then(|(_, rest)| rest.split_once(" (removed"))
        .map(|(dir, _)| dir)
        .unwrap_or_else(|| panic!("no directory named in {header:?}"));
    assert!(!Path::new(dir).exists(), "{dir} was left behind");

    step(&text, "namebump", "serve", "127.0.0.1:");
    step(&text, "namebump", "claim", "demo-name");
    step(&text, "namebump", "read", "\"hello from keyway demo\"");
    step(&text, "namebump", "update", "\"hello again, updated\"");
    step(&text, "namebump", "read", "\"hello again, updated\"");
    step(&text, "namebump", "delete", "demo-name");
    step(&text, "namebump", "read", "absent");
    step(&text, "namebump", "stop", "");
    step(&text, "drayer", "create", "demo.stream");
    step(&text, "drayer", "set", "3 signed records");
    step(&text, "drayer", "serve", "http://127.0.0.1:");
    step(&text, "drayer", "mirror", "the same 3 records");

    // No skipping here: tests/run.sh installs mosquitto, so its absence
    // fails this test.
    assert!(!text.contains("skipped"), "{text}");
    let broker = step(&text, "sidewire", "broker", "mosquitto (pid ");
    step(&text, "sidewire", "nodes", "subscribed");
    step(&text, "sidewire", "received", "\"hello bob, from alice\"");
    step(&text, "sidewire", "ack", "ACK");
    step(&text, "sidewire", "stop", "reaped");
    let pid = broker
        .split_once("(pid ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(pid, _)| pid)
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "mosquitto {pid} still running"
    );

    let steps = text
        .lines()
        .filter(|l| !l.starts_with("summary") && l.contains(" ok "))
        .count();
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("summary: {steps} steps ok")),
        "{summary} (counted {steps} step lines)"
    );
}

#[test]
fn demo_packet_still_walks_the_seven_steps() {
    let out = keyway(&["demo", "--packet"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut from = 0;
    for step in [
        "1. keygen",
        "2. build",
        "3. sign",
        "4. encrypt",
        "5. decrypt",
        "6. verify",
        "7. tamper",
    ] {
        let at = text[from..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step} after byte {from} in:\n{text}"));
        from += at + step.len();
    }
    assert!(!text.contains("namebump  serve"), "{text}");
}
