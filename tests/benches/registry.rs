//! The name registry (issue 17) through its command-line contract, on
//! loopback: one `keyway registry serve` and `keyway registry client`
//! REPLs, each a process, driven over their standard input and output.
//! The same figures, in the same order and printed the same way, as the
//! hyper-registry script it is compared with (kept outside this repository):
//!
//! - `fill`: NAMES registrations (`user-0000000`…), pipelined into CLIENTS
//!   REPLs; this is how the registry gets its big replica (the CLI has no
//!   other way in; hyper-registry's script puts straight into its Hyperbee);
//! - `replica_sync`: a fresh client REPL, started after the fill, answers
//!   a lookup of the last name (start, unlock of its identity file — timed
//!   alone as `unlock_secs` — and the sync of the whole stream);
//! - `lookup_local_per_s`: LOOKUPS random hits pipelined into that REPL
//!   (after an untimed tenth as many): the local reads, with the REPL's line
//!   parsing and printing around each; `lookup_roundtrip_per_s`: one at a
//!   time, each waiting for its answer (adds a pipe round trip per lookup);
//!   `lookup_inprocess_per_s`: at the end, with the REPL gone, the same
//!   replica opened in this process (`keyway_registry::replica::Replica`)
//!   and LOOKUPS random hits through `Replica::lookup`, one after another:
//!   the local read alone, as hyper-registry's script times `db.get`;
//! - `register_per_s`: CLIENTS REPLs each register their share of
//!   REGISTRATIONS one after another; a reply comes when the writer's
//!   replica holds the record (read-your-writes), p50/p99 per registration;
//! - `replication_lag`: a writer's `register` → the name visible in the
//!   other client's replica (its `lookup` asked again and again until it
//!   answers the key, every millisecond), p50/p99 from the writer's reply
//!   (`p50_ms`/`p99_ms`, 0 when the reader already had it) and from the
//!   moment the command was sent (`send_p50_ms`/`send_p99_ms`);
//!   LAG_SAMPLES writes, one at a time, each after a random pause of
//!   0–1 s.
//!
//! Not a test: `bash tests/bench-registry.sh [NAMES] [LOOKUPS]
//! [REGISTRATIONS] [CLIENTS] [LAG_SAMPLES]`, which builds the release
//! `keyway` and passes it in `KEYWAY_BIN`.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use keyway_registry::replica::Replica;

/// Longest wait for any one reply; a registry that stops answering ends
/// the run instead of hanging it.
const REPLY: Duration = Duration::from_secs(60);
/// How long a lag sample may take before it counts as lost.
const STALL: Duration = Duration::from_secs(10);
/// Lag samples start after a pause drawn from 0..LAG_PAUSE_MS.
const LAG_PAUSE_MS: usize = 1000;
/// Between two lookups of a name not yet visible: the lag's resolution.
const POLL: Duration = Duration::from_millis(1);

fn name(i: usize) -> String {
    format!("user-{i:07}")
}

fn is_key(line: &str) -> bool {
    line.len() == 66 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Random picks of existing names; no need for a cryptographic generator.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Reads a child's stdout on a thread, so every wait for a line has a deadline.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The files every process shares: the binary, the identity password and
/// the network key.
struct Setup {
    bin: PathBuf,
    dir: PathBuf,
    password: PathBuf,
    network_key: PathBuf,
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let bin = std::env::var_os("KEYWAY_BIN").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/keyway"),
            PathBuf::from,
        );
        let password = dir.join("password");
        std::fs::write(&password, "registry-bench\n").unwrap();
        let setup = Self {
            bin,
            dir: dir.to_owned(),
            password,
            network_key: dir.join("network.key"),
        };
        setup.run(&["netkey", "new", "--out"], &setup.network_key, false);
        setup
    }

    /// `keyway ARGS PATH [--password-file …]`: its standard output.
    fn run(&self, args: &[&str], path: &Path, with_password: bool) -> String {
        let mut c = Command::new(&self.bin);
        c.args(args).arg(path);
        if with_password {
            c.arg("--password-file").arg(&self.password);
        }
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "keyway {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn identity(&self, who: &str) -> PathBuf {
        let path = self.dir.join(format!("{who}.identity"));
        self.run(&["identity", "new", "--out"], &path, true);
        path
    }

    fn command(&self, args: &[&str], identity: &Path, log: &str) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .arg("--identity")
            .arg(identity)
            .arg("--network-key")
            .arg(&self.network_key)
            .arg("--password-file")
            .arg(&self.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(self.dir.join(log)).unwrap());
        c
    }
}

/// `keyway registry serve` on 127.0.0.1.
struct Server {
    child: Child,
    /// `PUBKEY@HOST:PORT`, as clients take it.
    address: String,
}

impl Server {
    fn start(setup: &Setup) -> Self {
        let identity = setup.identity("server");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let db = setup.dir.join("server-db");
        let mut child = setup
            .command(&["registry", "serve"], &identity, "server.err")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(&db)
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        let (mut node_pk, mut listening) = (None, None);
        let deadline = Instant::now() + REPLY;
        while node_pk.is_none() || listening.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no node_pk=/listening= from the server:\n{}",
                    tail(&setup.dir.join("server.err"))
                )
            });
            if let Some(v) = line.strip_prefix("node_pk=") {
                node_pk = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("listening=") {
                listening = Some(v.to_owned());
            }
        }
        // Keep draining its stdout so it never blocks on a full pipe.
        thread::spawn(move || while lines.recv().is_ok() {});
        Self {
            child,
            address: format!("{}@{}", node_pk.unwrap(), listening.unwrap()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `keyway registry client` REPL.
struct Repl {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    who: String,
    /// Its standard error, quoted when it stops answering.
    log: PathBuf,
}

/// The last lines of a process's standard error, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Repl {
    fn start(setup: &Setup, server: &Server, who: &str) -> Self {
        let identity = setup.identity(who);
        let mut child = setup
            .command(&["registry", "client"], &identity, &format!("{who}.err"))
            .arg("--server")
            .arg(&server.address)
            .arg("--replica")
            .arg(setup.dir.join(format!("{who}.replica")))
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            stdin,
            lines,
            who: who.to_owned(),
            log: setup.dir.join(format!("{who}.err")),
        }
    }

    fn reply(&self) -> String {
        self.lines.recv_timeout(REPLY).unwrap_or_else(|_| {
            panic!(
                "{} did not answer within {REPLY:?}:\n{}",
                self.who,
                tail(&self.log)
            )
        })
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.reply()
    }

    /// Writes every command (from a thread: the REPL's answers must be
    /// read meanwhile, or both pipes fill) and returns the answers in order.
    fn pipeline(&mut self, commands: &[String]) -> Vec<String> {
        let Self {
            stdin,
            lines,
            who,
            log,
            ..
        } = self;
        thread::scope(|s| {
            s.spawn(|| {
                let mut w = std::io::BufWriter::new(&mut *stdin);
                for c in commands {
                    // A REPL that died is reported by the reading side.
                    if writeln!(w, "{c}").is_err() {
                        return;
                    }
                }
                let _ = w.flush();
            });
            (0..commands.len())
                .map(|_| {
                    lines
                        .recv_timeout(REPLY)
                        .unwrap_or_else(|_| panic!("{who} stopped answering:\n{}", tail(log)))
                })
                .collect()
        })
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let mut arg = |default| args.next().unwrap_or(default);
    let (names, lookups, registrations, clients, lag_samples) =
        (arg(100_000), arg(100_000), arg(2_000), arg(4), arg(300));
    let clients = clients.max(1);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine nproc={} cpu={cpu:?} registry=keyway transport=links-on-127.0.0.1",
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::new(tmp.path());
    let server = Server::start(&setup);
    let mut writers: Vec<Repl> = (0..clients)
        .map(|c| Repl::start(&setup, &server, &format!("writer{c}")))
        .collect();

    // 1. Fill.
    let started = Instant::now();
    thread::scope(|s| {
        for (c, w) in writers.iter_mut().enumerate() {
            s.spawn(move || {
                let share: Vec<String> = (c..names)
                    .step_by(clients)
                    .map(|i| format!("register {}", name(i)))
                    .collect();
                for (command, reply) in share.iter().zip(w.pipeline(&share)) {
                    assert_eq!(reply, "OK", "{command}");
                }
            });
        }
    });
    println!(
        "figure=fill names={names} secs={:.3}",
        started.elapsed().as_secs_f64()
    );

    // 2. A fresh replica of everything.
    let reader_identity = setup.identity("unlock-probe");
    let started = Instant::now();
    setup.run(&["identity", "show"], &reader_identity, true);
    let unlock = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut reader = Repl::start(&setup, &server, "reader");
    if names > 0 {
        let last = format!("lookup {}", name(names - 1));
        let deadline = Instant::now() + Duration::from_secs(600);
        while !is_key(&reader.ask(&last)) {
            assert!(
                Instant::now() < deadline,
                "the reader's replica never caught up"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    println!(
        "figure=replica_sync names={names} secs={:.3} unlock_secs={unlock:.3}",
        started.elapsed().as_secs_f64()
    );

    // 3. Lookups on that replica.
    if names > 0 && lookups > 0 {
        let mut rng = SplitMix(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        let mut random = |count: usize| -> Vec<String> {
            (0..count)
                .map(|_| format!("lookup {}", name(rng.below(names))))
                .collect()
        };
        let warm = random(lookups.div_ceil(10));
        assert!(reader.pipeline(&warm).iter().all(|a| is_key(a)));
        let picks = random(lookups);
        let started = Instant::now();
        let answers = reader.pipeline(&picks);
        let secs = started.elapsed().as_secs_f64();
        assert!(
            answers.iter().all(|a| is_key(a)),
            "a lookup of an existing name missed"
        );
        println!(
            "figure=lookup_local_per_s value={:.3} names={names} lookups={lookups} secs={secs:.3} mode=pipelined-repl",
            lookups as f64 / secs
        );
        let one_by_one = random((lookups / 20).max(1));
        let started = Instant::now();
        for l in &one_by_one {
            assert!(is_key(&reader.ask(l)), "{l}");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "figure=lookup_roundtrip_per_s value={:.3} names={names} lookups={} secs={secs:.3}",
            one_by_one.len() as f64 / secs,
            one_by_one.len()
        );
    }

    // 4. Registrations through the one server, each waiting for its reply.
    let share = (registrations / clients).max(1);
    let started = Instant::now();
    let mut latencies: Vec<Duration> = thread::scope(|s| {
        let tasks: Vec<_> = writers
            .iter_mut()
            .enumerate()
            .map(|(c, w)| {
                s.spawn(move || {
                    (0..share)
                        .map(|k| {
                            let t = Instant::now();
                            let reply = w.ask(&format!("register reg{c}-{k}"));
                            assert_eq!(reply, "OK");
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        tasks.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "figure=register_per_s value={:.3} registrations={} clients={clients} p50_ms={:.3} p99_ms={:.3} secs={secs:.3}",
        (share * clients) as f64 / secs,
        share * clients,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // 5. Replication lag: the writer's register → visible to the reader.
    let writer = &mut writers[0];
    let (mut from_reply, mut from_send) = (Vec::new(), Vec::new());
    let (mut lost, mut before_reply) = (0, 0);
    let mut rng = SplitMix(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    for k in 0..lag_samples {
        let n = format!("lag-{k}");
        // A random pause first: a replica that pulls on a timer would
        // otherwise be sampled at one phase of its period every time.
        thread::sleep(Duration::from_millis(rng.below(LAG_PAUSE_MS) as u64));
        let sent = Instant::now();
        let (replied, seen) = thread::scope(|s| {
            let write = s.spawn(|| {
                assert_eq!(writer.ask(&format!("register {n}")), "OK");
                Instant::now()
            });
            let deadline = sent + STALL;
            let lookup = format!("lookup {n}");
            let mut seen = None;
            while Instant::now() < deadline {
                if is_key(&reader.ask(&lookup)) {
                    seen = Some(Instant::now());
                    break;
                }
                // Asking without a pause would take a core from the
                // server on a small machine.
                thread::sleep(POLL);
            }
            (write.join().unwrap(), seen)
        });
        match seen {
            None => lost += 1,
            Some(at) => {
                if at < replied {
                    before_reply += 1;
                }
                from_reply.push(at.saturating_duration_since(replied));
                from_send.push(at - sent);
            }
        }
    }
    from_reply.sort_unstable();
    from_send.sort_unstable();
    println!(
        "figure=replication_lag p50_ms={:.3} p99_ms={:.3} max_ms={:.3} send_p50_ms={:.3} send_p99_ms={:.3} samples={lag_samples} lost={lost} seen_before_reply={before_reply}",
        percentile(&from_reply, 0.5),
        percentile(&from_reply, 0.99),
        percentile(&from_reply, 1.0),
        percentile(&from_send, 0.5),
        percentile(&from_send, 0.99)
    );
    drop((reader, writers, server));

    // 6. The reader's replica, read in-process.
    if names > 0 && lookups > 0 {
        let dir = setup.dir.join("reader.replica");
        let key = Replica::stream_key_in(&dir)
            .unwrap()
            .expect("the reader kept no replica");
        let replica = Replica::open(&dir, key, None).unwrap();
        let mut rng = SplitMix(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        let mut random =
            |count: usize| -> Vec<String> { (0..count).map(|_| name(rng.below(names))).collect() };
        for n in random(lookups.div_ceil(10)) {
            assert!(replica.lookup(&n).unwrap().is_some(), "{n}");
        }
        let picks = random(lookups);
        let started = Instant::now();
        for n in &picks {
            assert!(replica.lookup(n).unwrap().is_some(), "{n}");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "figure=lookup_inprocess_per_s value={:.3} names={names} lookups={lookups} secs={secs:.3} mode=Replica::lookup",
            lookups as f64 / secs
        );
    }
}
