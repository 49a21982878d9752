//! The demo's private MQTT broker: a mosquitto child on a free loopback
//! port with its own config file, killed by PID and reaped when done.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keyway_core::mqtt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::steps::WAIT;

/// The mosquitto binary: on PATH, or where Debian puts it (`/usr/sbin`
/// is not on every user's PATH).
pub(super) fn find() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

/// A running broker; dropping it kills and reaps the child.
pub(super) struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Broker {
    /// Starts `binary` on a free port of 127.0.0.1, with its config and
    /// error log in `dir`, and waits (at most [`WAIT`]) until it answers
    /// an MQTT CONNECT.
    pub(super) async fn start(binary: &Path, dir: &Path) -> Result<Self> {
        // A free port now; another process could take it before mosquitto
        // binds it, and then the start fails with mosquitto's reason.
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("finding a free port for mosquitto")?
            .port();
        let conf = dir.join("mosquitto.conf");
        // Nagle off: a small PUBLISH otherwise waits ~40 ms for the delayed
        // ACK of the one before, which would be most of the timing shown.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 set_tcp_nodelay true\nlog_dest stderr\nlog_type error\n"
            ),
        )
        .context("writing mosquitto.conf")?;
        let errors = dir.join("mosquitto.log");
        let log = std::fs::File::create(&errors).context("creating mosquitto.log")?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut broker = Self {
            child: Some(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        let deadline = Instant::now() + WAIT;
        while !answers_mqtt(broker.addr).await {
            if let Some(status) = broker.exited()? {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                let said = said.lines().last().unwrap_or("no message");
                bail!("mosquitto exited at start ({status}): {said}");
            }
            if Instant::now() > deadline {
                bail!(
                    "mosquitto did not answer on {} within {} s",
                    broker.addr,
                    WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(broker)
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("mosquitto already stopped"),
        }
    }

    /// Kills the broker by its PID and waits for it to be gone.
    pub(super) fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SIGKILL: a broker holding nothing (no persistence) needs no
        // orderly exit, and a kill cannot be ignored. A child that already
        // exited is reaped by the wait all the same.
        let _ = child.kill();
        child.wait().context("waiting for mosquitto to exit")?;
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a broker at `addr` completes an MQTT CONNECT (its CONNACK
/// accepts): accepting TCP alone can come before it serves MQTT.
async fn answers_mqtt(addr: SocketAddr) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut packet = [0u8; 64];
        let len = mqtt::encode_connect(b"keyway-demo-probe", 10, &mut packet).ok()?;
        stream.write_all(packet.get(..len)?).await.ok()?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await.ok()?;
        if let Ok(len) = mqtt::encode_disconnect(&mut packet)
            && let Some(bytes) = packet.get(..len)
        {
            let _ = stream.write_all(bytes).await;
        }
        Some(connack == mqtt::CONNACK_ACCEPTED)
    };
    tokio::time::timeout(Duration::from_millis(500), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
