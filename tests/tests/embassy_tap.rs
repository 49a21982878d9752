//! The firmware example (`keyway-embassy`'s `host_node`, issue 14) on its
//! own TCP/IP stack over a TAP device, against real servers: a `keyway
//! namebump serve` on SQLite, three mosquitto brokers, `keyway sidewire`
//! nodes (tokio) and the sidewire 0.1.9 reference router, all inside a
//! network namespace of the test's own (see `keyway_tests::netns`).
//!
//! Needs root and `/dev/net/tun`: without them each test fails with the
//! reason. The binaries are built with cargo on first use, or taken from
//! `KEYWAY_BIN` (the `keyway` CLI) and `KEYWAY_HOST_NODE` (the example).
//! Every wait is bounded; every process is killed by its PID when its
//! handle drops; the namespace is deleted last, also when a test fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use keyway_tests::mosquitto::Mosquitto;
use keyway_tests::netns::{DEVICE_CIDR, KERNEL_IP, Netns, TAP};
use keyway_tests::reference::{Venv, interop_dir, workspace_root};
use serde_json::{Value, json};

/// The namebump server's port on the kernel side of the TAP device.
const NAMEBUMP_PORT: u16 = 5300;
/// The brokers' ports on the kernel side of the TAP device.
const BROKER_PORTS: [u16; 3] = [1883, 1884, 1885];
/// How long any one command may run before the test fails (and kills it).
const COMMAND_BOUND: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------- binaries

/// The `keyway` CLI and the firmware example, built once per test binary.
struct Binaries {
    keyway: PathBuf,
    host_node: PathBuf,
}

fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| Binaries {
        keyway: from_env_or_cargo("KEYWAY_BIN", &["-p", "keyway", "--bin", "keyway"]),
        host_node: from_env_or_cargo(
            "KEYWAY_HOST_NODE",
            &["-p", "keyway-embassy", "--example", "host_node"],
        ),
    })
}

/// `$var`, or the executable `cargo build <args>` produces (cargo's own
/// report says where, whatever the target directory).
fn from_env_or_cargo(var: &str, args: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build {} failed (or set {var} to the binary)",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build {} reported no executable", args.join(" ")))
}

// ---------------------------------------------------------------- processes

/// A child process, killed (by its PID) and reaped when dropped.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn spawn(mut command: Command, what: &str) -> Self {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Self {
            child,
            what: what.to_owned(),
        }
    }

    /// Its stdout (or stderr), line by line, read on a thread of its own so
    /// that each wait can be bounded.
    fn lines(&mut self, stderr: bool) -> Lines {
        let (tx, rx) = channel();
        let reader: Box<dyn Read + Send> = if stderr {
            Box::new(self.child.stderr.take().unwrap())
        } else {
            Box::new(self.child.stdout.take().unwrap())
        };
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            what: self.what.clone(),
        }
    }

    /// Waits (bounded) for the exit; a process still running at the bound
    /// is a failure.
    fn wait(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {bound:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Lines {
    rx: Receiver<String>,
    what: String,
}

impl Lines {
    /// The next line, waiting at most `bound`; `None` at end of stream.
    fn next_within(&self, bound: Duration) -> Option<String> {
        match self.rx.recv_timeout(bound) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no line from {} within {bound:?}", self.what),
        }
    }

    /// Everything left, once the process has exited.
    fn rest(&self) -> Vec<String> {
        let mut all = Vec::new();
        while let Some(line) = self.next_within(Duration::from_secs(10)) {
            all.push(line);
        }
        all
    }
}

/// What a finished command left.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `command` to its end (bounded by [`COMMAND_BOUND`]).
fn run(command: Command, what: &str) -> Output {
    let mut proc = Proc::spawn(command, what);
    let (out, err) = (proc.lines(false), proc.lines(true));
    let status = proc.wait(COMMAND_BOUND);
    Output {
        code: status.code(),
        stdout: out.rest().join("\n"),
        stderr: err.rest().join("\n"),
    }
}

// ---------------------------------------------------------------- the namespace

/// A namespace with its servers; fields drop in order, the namespace last.
struct Lab {
    server: Option<Served>,
    brokers: Vec<Mosquitto>,
    dir: tempfile::TempDir,
    ns: Netns,
}

struct Served {
    _proc: Proc,
    addr: String,
    pk: String,
}

impl Lab {
    fn new() -> Self {
        let ns = Netns::create().unwrap();
        Self {
            server: None,
            brokers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            ns,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `keyway namebump serve` on SQLite at the kernel side of the
    /// TAP device, and waits (bounded) for its `listening=` and
    /// `server_pk=` lines.
    fn serve_namebump(&mut self) {
        let addr = format!("{KERNEL_IP}:{NAMEBUMP_PORT}");
        let mut command = self.ns.command(&binaries().keyway);
        command
            .args(["namebump", "serve", "--listen", &addr, "--rate-limit", "0"])
            .arg("--db")
            .arg(format!("sqlite:{}", self.path("nb.db").display()))
            .arg("--key")
            .arg(self.path("server.key"));
        let mut proc = Proc::spawn(command, "keyway namebump serve");
        let lines = proc.lines(false);
        let bound = Duration::from_secs(30);
        assert_eq!(lines.next_within(bound), Some(format!("listening={addr}")));
        let pk = lines
            .next_within(bound)
            .and_then(|l| l.strip_prefix("server_pk=").map(str::to_owned))
            .expect("server_pk= line");
        assert_eq!(pk.len(), 66, "{pk}");
        self.server = Some(Served {
            _proc: proc,
            addr,
            pk,
        });
    }

    /// Starts the three brokers and writes the pool file listing them.
    fn start_brokers(&mut self) -> PathBuf {
        let mut pool = String::new();
        for port in BROKER_PORTS {
            self.brokers
                .push(Mosquitto::start_in(&self.ns, KERNEL_IP, port).unwrap());
            pool.push_str(&format!(
                "[[broker]]\nhost = \"{KERNEL_IP}\"\nport = {port}\n\n"
            ));
        }
        let path = self.path("pool.toml");
        std::fs::write(&path, pool).unwrap();
        path
    }

    /// A new key file and its public key (hex).
    fn keygen(&self, name: &str) -> (PathBuf, String) {
        let path = self.path(name);
        let mut command = Command::new(&binaries().keyway);
        command.args(["keygen", "--out"]).arg(&path);
        let out = run(command, "keyway keygen").ok();
        (path, out.stdout.trim().to_owned())
    }

    /// The `keyway` CLI on the namespace's kernel stack.
    fn keyway(&self) -> Command {
        self.ns.command(&binaries().keyway)
    }

    /// The firmware example on its own stack over the TAP device.
    fn firmware(&self) -> Command {
        let mut command = self.ns.command(&binaries().host_node);
        command.args(["--tap", TAP, "--addr", DEVICE_CIDR, "--gateway", KERNEL_IP]);
        command
    }

    /// `--server ADDR --server-pk HEX` of the running namebump server.
    fn server_args(&self) -> [String; 4] {
        let s = self.server.as_ref().expect("serve_namebump first");
        [
            "--server".into(),
            s.addr.clone(),
            "--server-pk".into(),
            s.pk.clone(),
        ]
    }
}

/// A started `sidewire listen --json`, once it said it is subscribed.
struct Listener {
    proc: Proc,
    stdout: Lines,
}

impl Listener {
    fn start(mut command: Command, what: &str, pk: &str) -> Self {
        command.arg("--json");
        let mut proc = Proc::spawn(command, what);
        let stderr = proc.lines(true);
        let stdout = proc.lines(false);
        let ready = stderr
            .next_within(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{what} ended before listening"));
        assert!(ready.starts_with(&format!("listening pk={pk}")), "{ready}");
        // Drain its stderr so a chatty listener never blocks on a full pipe.
        std::thread::spawn(move || while stderr.rx.recv().is_ok() {});
        Self { proc, stdout }
    }

    /// Waits (bounded) for the exit after `--count` messages; returns the
    /// messages as (sender, text).
    fn finish(self) -> Vec<(String, String)> {
        let (status, messages) = self.finish_any();
        assert!(status.success(), "{status}: {messages:?}");
        messages
    }

    /// Waits (bounded) for the exit, whatever its status (a `--timeout`
    /// before `--count` exits 1), and returns the messages.
    fn finish_any(mut self) -> (ExitStatus, Vec<(String, String)>) {
        let status = self.proc.wait(Duration::from_secs(150));
        let lines = self.stdout.rest();
        let messages = lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let bytes = base16_decode(v["msg_hex"].as_str().unwrap());
                (
                    v["from"].as_str().unwrap().to_owned(),
                    String::from_utf8(bytes).unwrap(),
                )
            })
            .collect();
        (status, messages)
    }
}

fn base16_decode(hex: &str) -> Vec<u8> {
    base16ct::lower::decode_vec(hex).unwrap()
}

fn listen_args(key: &Path, pool: &Path, count: usize) -> Vec<String> {
    listen_args_for(key, pool, count, 120)
}

fn listen_args_for(key: &Path, pool: &Path, count: usize, seconds: u32) -> Vec<String> {
    vec![
        "sidewire".into(),
        "listen".into(),
        "--count".into(),
        count.to_string(),
        "--timeout".into(),
        seconds.to_string(),
        "--key".into(),
        key.display().to_string(),
        "--brokers".into(),
        pool.display().to_string(),
    ]
}

fn send_args(dest: &str, message: &str, key: &Path, pool: &Path) -> Vec<String> {
    vec![
        "sidewire".into(),
        "send".into(),
        dest.into(),
        message.into(),
        "--timeout".into(),
        "60".into(),
        "--key".into(),
        key.display().to_string(),
        "--brokers".into(),
        pool.display().to_string(),
    ]
}

fn with(mut command: Command, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    command.args(args);
    command
}

// ---------------------------------------------------------------- tests

#[test]
fn firmware_puts_gets_and_deletes_a_name() {
    let mut lab = Lab::new();
    lab.serve_namebump();
    let (key, _) = lab.keygen("device.key");
    let (other, _) = lab.keygen("other.key");
    let (key, other) = (key.display().to_string(), other.display().to_string());
    // `namebump …` with the running server's address and key.
    let nb = |command: Command, args: &[&str]| {
        let mut all: Vec<String> = vec!["namebump".into()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all.extend(lab.server_args());
        with(command, &all)
    };

    let before = lab.ns.tap_rx_packets().unwrap();
    let put = ["put", "device-name", "10.77.0.2:7000", "--key", &key];
    run(nb(lab.firmware(), &put), "firmware put").ok();
    // The request came over the TAP device, from the firmware's own stack.
    assert!(lab.ns.tap_rx_packets().unwrap() > before);
    // The kernel-side CLI reads what the firmware wrote…
    let get = run(nb(lab.keyway(), &["get", "device-name"]), "keyway get").ok();
    assert_eq!(get.stdout, "10.77.0.2:7000");
    // …and the firmware reads it too.
    let get = run(nb(lab.firmware(), &["get", "device-name"]), "firmware get").ok();
    assert_eq!(get.stdout, "10.77.0.2:7000");

    // The same over TCP only (the UDP legs off).
    let get = ["get", "device-name", "--no-udp"];
    let get = run(nb(lab.firmware(), &get), "firmware get over TCP").ok();
    assert_eq!(get.stdout, "10.77.0.2:7000");
    let put = ["put", "device-name", "over TCP", "--no-udp", "--key", &key];
    run(nb(lab.firmware(), &put), "firmware put over TCP").ok();
    let get = run(nb(lab.keyway(), &["get", "device-name"]), "keyway get").ok();
    assert_eq!(get.stdout, "over TCP");

    // A name the CLI put, read by the firmware.
    let put = [
        "put",
        "server-name",
        "from the kernel side",
        "--key",
        &other,
    ];
    run(nb(lab.keyway(), &put), "keyway put").ok();
    let get = run(nb(lab.firmware(), &["get", "server-name"]), "firmware get").ok();
    assert_eq!(get.stdout, "from the kernel side");
    // The firmware cannot take it: the server refuses, and the owner
    // lookup (run in the write's own exchange) tells why.
    let put = ["put", "server-name", "hijack", "--key", &key];
    let refused = run(nb(lab.firmware(), &put), "firmware put on another's name");
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(refused.stderr.contains("not the owner"), "{refused:#?}");
    let get = run(nb(lab.keyway(), &["get", "server-name"]), "keyway get").ok();
    assert_eq!(get.stdout, "from the kernel side");

    // The firmware deletes its name; both sides then find nothing (exit 2).
    let del = ["del", "device-name", "--key", &key];
    run(nb(lab.firmware(), &del), "firmware del").ok();
    for (command, what) in [
        (lab.firmware(), "firmware get"),
        (lab.keyway(), "keyway get"),
    ] {
        let gone = run(nb(command, &["get", "device-name"]), what);
        assert_eq!(
            (gone.code, gone.stdout.as_str()),
            (Some(2), ""),
            "{what}: {gone:#?}"
        );
    }
}

#[test]
fn firmware_and_a_tokio_node_exchange_messages() {
    let mut lab = Lab::new();
    let pool = lab.start_brokers();
    let (fw_key, fw_pk) = lab.keygen("device.key");
    let (tk_key, tk_pk) = lab.keygen("tokio.key");

    // Firmware → tokio.
    let listener = Listener::start(
        with(lab.keyway(), &listen_args(&tk_key, &pool, 2)),
        "keyway sidewire listen",
        &tk_pk,
    );
    for message in ["from the device 1", "from the device 2"] {
        run(
            with(lab.firmware(), &send_args(&tk_pk, message, &fw_key, &pool)),
            "firmware sidewire send",
        )
        .ok();
    }
    let got = listener.finish();
    assert_eq!(
        got,
        [
            (fw_pk.clone(), "from the device 1".to_owned()),
            (fw_pk.clone(), "from the device 2".to_owned()),
        ]
    );

    // Tokio → firmware.
    let listener = Listener::start(
        with(lab.firmware(), &listen_args(&fw_key, &pool, 2)),
        "firmware sidewire listen",
        &fw_pk,
    );
    for message in ["to the device 1", "to the device 2"] {
        run(
            with(lab.keyway(), &send_args(&fw_pk, message, &tk_key, &pool)),
            "keyway sidewire send",
        )
        .ok();
    }
    let got = listener.finish();
    assert_eq!(
        got,
        [
            (tk_pk.clone(), "to the device 1".to_owned()),
            (tk_pk.clone(), "to the device 2".to_owned()),
        ]
    );
}

#[test]
fn firmware_and_the_reference_router_exchange_messages() {
    let venv = Venv::namebump().unwrap();
    let mut lab = Lab::new();
    let pool = lab.start_brokers();
    let (fw_key, fw_pk) = lab.keygen("device.key");
    let reference_secret =
        keyway_core::Keypair::generate(&mut keyway_core::rand_core::UnwrapErr(getrandom::SysRng));
    let brokers: Vec<Value> = BROKER_PORTS.iter().map(|p| json!([KERNEL_IP, p])).collect();
    let texts = [
        "from the reference 1",
        "from the reference 2",
        "from the reference 3",
    ];

    // The firmware listens; the reference sends it three messages, then
    // waits for three from the firmware. The reference's smart pipe queues
    // one message on each broker client it holds, and it holds one client
    // thrice here (the brokers share a host, its client key), which numbers
    // the copies 0, 1, 2 in one queue: the node ACKs each copy and delivers
    // the message once (core receiver's renumbering rule). The
    // listener takes up to six within a bounded 25 s, so a second delivery
    // would show, and the test wants exactly the three texts, in order,
    // from the reference's key.
    let listener = Listener::start(
        with(lab.firmware(), &listen_args_for(&fw_key, &pool, 6, 25)),
        "firmware sidewire listen",
        &fw_pk,
    );
    let mut command = lab.ns.command(venv.python());
    command
        .arg(interop_dir().join("sidewire_peer.py"))
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::piped());
    let mut peer = Proc::spawn(command, "sidewire reference router");
    let request = json!({
        "secret": base16ct::lower::encode_string(&reference_secret.secret_bytes()),
        "brokers": brokers,
        "send_to": fw_pk,
        "hints": brokers,
        "messages": texts,
        "expect": 3,
        "timeout": 90,
    });
    {
        use std::io::Write;
        let mut stdin = peer.child.stdin.take().unwrap();
        writeln!(stdin, "{request}").unwrap();
    }
    let peer_out = peer.lines(false);
    let peer_err = peer.lines(true);
    std::thread::spawn(move || {
        while let Ok(line) = peer_err.rx.recv() {
            eprintln!("reference: {line}");
        }
    });
    let ready = peer_out
        .next_within(Duration::from_secs(60))
        .expect("the reference's ready line");
    let ref_pk = ready.strip_prefix("ready ").expect("ready <pk>").to_owned();
    assert_eq!(ref_pk, reference_secret.public().to_string());

    let (_, got) = listener.finish_any();
    let expected: Vec<(String, String)> = texts
        .iter()
        .map(|t| (ref_pk.clone(), (*t).to_owned()))
        .collect();
    assert_eq!(got, expected);

    for i in 1..=3 {
        run(
            with(
                lab.firmware(),
                &send_args(&ref_pk, &format!("from the device {i}"), &fw_key, &pool),
            ),
            "firmware sidewire send",
        )
        .ok();
    }
    let report: Value = serde_json::from_str(
        &peer_out
            .next_within(Duration::from_secs(150))
            .expect("the reference's report"),
    )
    .unwrap();
    assert_eq!(peer.wait(Duration::from_secs(30)).code(), Some(0));
    // Its sends returned success: the firmware's ACKs reached it.
    assert_eq!(report["sent"], json!([true, true, true]), "{report}");
    let received: Vec<(&str, &str)> = report["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["src"].as_str().unwrap(), r["msg"].as_str().unwrap()))
        .collect();
    assert_eq!(
        received,
        [
            (fw_pk.as_str(), "from the device 1"),
            (fw_pk.as_str(), "from the device 2"),
            (fw_pk.as_str(), "from the device 3"),
        ]
    );
}

#[test]
fn firmware_node_survives_a_broker_restart() {
    let mut lab = Lab::new();
    let pool = lab.start_brokers();
    let (fw_key, fw_pk) = lab.keygen("device.key");
    let (tk_key, tk_pk) = lab.keygen("tokio.key");
    let send = |lab: &Lab, message: &str| {
        run(
            with(lab.keyway(), &send_args(&fw_pk, message, &tk_key, &pool)),
            "keyway sidewire send",
        )
        .ok();
    };

    // One firmware listener lives through everything below.
    let listener = Listener::start(
        with(lab.firmware(), &listen_args(&fw_key, &pool, 4)),
        "firmware sidewire listen",
        &fw_pk,
    );
    send(&lab, "all brokers up");
    lab.brokers[0].kill();
    send(&lab, "first broker down");
    lab.brokers[0].restart().unwrap();
    send(&lab, "first broker back");
    // Only the restarted broker is left: this message reaches the device
    // only if it dialled that broker again.
    lab.brokers[1].kill();
    lab.brokers[2].kill();
    send(&lab, "only the restarted broker");
    let got = listener.finish();
    let expected: Vec<(String, String)> = [
        "all brokers up",
        "first broker down",
        "first broker back",
        "only the restarted broker",
    ]
    .iter()
    .map(|t| (tk_pk.clone(), (*t).to_owned()))
    .collect();
    assert_eq!(got, expected);

    // And the other way, from the same device process's successor, through
    // the one broker left.
    let listener = Listener::start(
        with(lab.keyway(), &listen_args(&tk_key, &pool, 1)),
        "keyway sidewire listen",
        &tk_pk,
    );
    run(
        with(
            lab.firmware(),
            &send_args(&tk_pk, "device after the restart", &fw_key, &pool),
        ),
        "firmware sidewire send",
    )
    .ok();
    assert_eq!(
        listener.finish(),
        [(fw_pk.clone(), "device after the restart".to_owned())]
    );
}
