//! A `keyway drayer serve` process stays small whatever is asked of it:
//! its peak resident memory (VmHWM, reset between phases) grows by far
//! less than the values it serves.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyway_drayer::Stream;

const KEYWAY: &str = env!("CARGO_BIN_EXE_keyway");

const MIB: u64 = 1024 * 1024;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A status field of `pid`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// Starts the peak (VmHWM) again from the current resident size.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// GETs `path`, reading the whole response; returns its size.
fn get(addr: &str, path: &str) -> usize {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    response.len()
}

/// Incompressible bytes, quickly.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn serving_large_values_keeps_the_server_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.stream");
    let mut owner = Stream::create(&path).unwrap();
    // 24 values of 4 MiB: 96 MiB.
    for i in 0..24 {
        owner
            .set(&format!("v{i}"), "blob", &noise(4 * MIB as usize, i + 1))
            .unwrap();
    }
    let quoted = owner
        .public_key_base64()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    drop(owner);

    let mut child = Command::new(KEYWAY)
        .args(["drayer", "serve", "--listen", "127.0.0.1:0"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let server = Server(child);
    let pid = server.0.id();
    let addr = first.trim().strip_prefix("listening=").unwrap().to_owned();
    // Warm up (threads, connections, caches) on small answers.
    get(&addr, &format!("/{quoted}/newest/1"));

    // Metadata only: no value is read into memory.
    let base = status_bytes(pid, "VmRSS:");
    reset_peak(pid);
    let len = get(&addr, &format!("/{quoted}/newRecords/0?values=0"));
    assert!(len < 64 * 1024, "{len}");
    let grown = status_bytes(pid, "VmHWM:").saturating_sub(base);
    assert!(
        grown < 24 * MIB,
        "values=0 grew the server by {} MiB",
        grown / MIB
    );

    // Four clients take all 96 MiB at once: responses are streamed.
    let base = status_bytes(pid, "VmRSS:");
    reset_peak(pid);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            let path = format!("/{quoted}/newest/10000");
            std::thread::spawn(move || get(&addr, &path))
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap() as u64 > 96 * MIB);
    }
    let grown = status_bytes(pid, "VmHWM:").saturating_sub(base);
    assert!(
        grown < 48 * MIB,
        "4 × newest/10000 grew the server by {} MiB",
        grown / MIB
    );
}
