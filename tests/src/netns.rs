//! A private network namespace with a TAP device, for the firmware example
//! (issue 14): the example runs its own TCP/IP stack (embassy-net) on the
//! TAP device, and every server it talks to runs inside the same namespace
//! on the kernel side of that device. Nothing is reachable from outside
//! the namespace, and nothing outside it is reachable from the tests.
//!
//! Needs root (creating namespaces and TAP devices) and `/dev/net/tun`; a
//! machine without them fails the test with the reason, never skips it.
//! The namespace is deleted when the [`Netns`] is dropped, also when a test
//! panics; a namespace left by a killed test run (its process id no longer
//! alive) is deleted by the next run.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail, ensure};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Namespaces this harness creates are named `kw-emb-<pid>-<n>`.
const PREFIX: &str = "kw-emb-";
/// The TAP device inside the namespace.
pub const TAP: &str = "tap0";
/// The kernel side of the TAP device: where the servers listen.
pub const KERNEL_IP: &str = "10.77.0.1";
/// The firmware side: the example's own stack takes this address.
pub const DEVICE_CIDR: &str = "10.77.0.2/24";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Where `ip` (iproute2) is installed.
pub fn ip_binary() -> Result<PathBuf> {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("`ip` is not installed (tests/setup-debian.sh installs iproute2)")
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new(ip_binary()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A network namespace holding `tap0` (kernel side [`KERNEL_IP`]/24, up)
/// and loopback (up); deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and its TAP device. Fails, with the reason,
    /// when not run as root or without `/dev/net/tun`.
    pub fn create() -> Result<Self> {
        ensure!(
            rustix::process::geteuid().is_root(),
            "the firmware tests need root: they create a network namespace and a TAP device \
             (issue 14); run them as root (tests/run.sh does in CI)"
        );
        ensure!(
            std::path::Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: the firmware tests need TUN/TAP support (modprobe tun)"
        );
        remove_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        // From here on, dropping `ns` deletes the namespace.
        let ns = Self { name };
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        ns.exec_ip(&["tuntap", "add", "name", TAP, "mode", "tap"])?;
        ns.exec_ip(&["addr", "add", &format!("{KERNEL_IP}/24"), "dev", TAP])?;
        ns.exec_ip(&["link", "set", TAP, "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Packets the kernel received on the TAP device: what the firmware's
    /// own stack sent.
    pub fn tap_rx_packets(&self) -> Result<u64> {
        let out = Command::new(ip_binary()?)
            .args(["-n", &self.name, "-s", "-j", "link", "show", TAP])
            .stdin(Stdio::null())
            .output()
            .context("running ip -s link show")?;
        ensure!(out.status.success(), "ip -s link show {TAP} failed");
        let links: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        links[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("no rx packet count in ip -s -j link show")
    }

    fn exec_ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `program` run inside the namespace (`ip netns exec` replaces itself
    /// with `program`, so the child's PID is the program's own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(ip_binary().unwrap_or_else(|_| PathBuf::from("ip")));
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null());
        command
    }

    /// Runs `f` on a thread of its own moved into the namespace (sockets it
    /// opens live there), and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        run_in(&self.name, f)
    }
}

/// [`Netns::run`] by the namespace's name.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = PathBuf::from("/run/netns").join(name);
    let handle = std::thread::spawn(move || -> Result<T> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .context("setns into the test namespace")?;
        Ok(f())
    });
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("a thread inside namespace {name} panicked"),
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the TAP device inside it.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}: {e:#}", self.name);
        }
    }
}

/// Deletes namespaces of earlier runs whose process is gone (a run killed
/// with SIGKILL cannot clean up after itself).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten().take(1000) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}
