//! Private mosquitto brokers for tests, on loopback addresses of their own
//! (127.0.0.2, 127.0.0.3, …) and free ports, or inside a test's network
//! namespace ([`crate::netns`]); killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running broker.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    /// The network namespace it runs in, if not the test's own.
    netns: Option<String>,
    _dir: tempfile::TempDir,
}

fn free_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl Mosquitto {
    /// Starts a broker on `ip` (a loopback address) and waits until it accepts.
    pub fn start(ip: &str) -> Result<Self> {
        Self::start_at(ip, free_port(ip)?, None)
    }

    /// Starts a broker inside `netns` on `ip:port` (the namespace is the
    /// test's own, so the port is known to be free) and waits until it accepts.
    pub fn start_in(netns: &crate::netns::Netns, ip: &str, port: u16) -> Result<Self> {
        Self::start_at(ip, port, Some(netns.name().to_owned()))
    }

    /// Kills the broker and starts a new one on the same address and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let netns = self.netns.take();
        *self = Self::start_at(&self.addr.ip().to_string(), self.addr.port(), netns)?;
        Ok(())
    }

    fn start_at(ip: &str, port: u16, netns: Option<String>) -> Result<Self> {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("mosquitto is not installed (tests/setup-debian.sh installs it)")?;
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nlistener {port} {ip}\nallow_anonymous true\n\
                 persistence false\nlog_dest none\nset_tcp_nodelay true\n"
            ),
        )?;
        let mut command = match &netns {
            Some(name) => {
                let mut c = Command::new(crate::netns::ip_binary()?);
                c.args(["netns", "exec", name]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto")?;
        let addr: SocketAddr = format!("{ip}:{port}").parse()?;
        let mut broker = Self {
            child,
            addr,
            netns,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !broker.answers()? {
            if Instant::now() > deadline || broker.child.try_wait()?.is_some() {
                bail!("mosquitto on {addr} did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    fn answers(&self) -> Result<bool> {
        let addr = self.addr;
        match &self.netns {
            Some(name) => crate::netns::run_in(name, move || answers_mqtt(&addr)),
            None => Ok(answers_mqtt(&addr)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the broker at once (SIGKILL): connections drop without a goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a broker at `addr` completes an MQTT CONNECT: an accepted TCP
/// connection alone once proved too early (a test's first connect to a
/// just-started broker was reset).
fn answers_mqtt(addr: &SocketAddr) -> bool {
    use std::io::{Read, Write};
    const CONNECT: &[u8] = &[
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 5, b'p', b'r', b'o', b'b', b'e',
    ];
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(addr, Duration::from_millis(200))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(CONNECT)?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack)?;
        Ok(connack == [0x20, 2, 0, 0])
    };
    probe().unwrap_or(false)
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sidewire pool of these brokers (compatible ranking, weight 1).
pub fn sidewire_pool(brokers: &[Mosquitto]) -> keyway_sidewire::Pool {
    keyway_sidewire::Pool {
        brokers: brokers
            .iter()
            .map(|b| keyway_sidewire::BrokerEntry::new(&b.addr().ip().to_string(), b.addr().port()))
            .collect(),
        ..keyway_sidewire::Pool::default()
    }
}
