//! A hostile MQTT broker for tests: it completes CONNECT/CONNACK and
//! SUBSCRIBE/SUBACK on every connection, then never reads again. Its
//! receive buffer is small, so a client's writes stall after a few hundred
//! kilobytes (what fills is the client's own send buffer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A broker that stops reading after the handshake; stops when dropped.
#[derive(Debug)]
pub struct WedgedBroker {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WedgedBroker {
    /// Listens on `ip` (a loopback address), on a free port. Needs a tokio
    /// runtime.
    pub fn start(ip: &str) -> Result<Self> {
        let socket = TcpSocket::new_v4()?;
        // Inherited by accepted connections; the kernel keeps a minimum.
        socket.set_recv_buffer_size(4096)?;
        socket.bind(format!("{ip}:0").parse()?)?;
        let listener = socket.listen(64)?;
        let addr = listener.local_addr()?;
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        let task = tokio::spawn(async move {
            // Held open, never read: that is the point.
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(5), handshake(&mut stream))
                        .await;
                if matches!(handshake, Ok(Ok(()))) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Bounded: a test opens a handful of connections.
                    if held.len() < 1000 {
                        held.push(stream);
                    }
                }
            }
        });
        Ok(Self {
            addr,
            handshakes,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections that completed the handshake so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// As a pool entry.
    pub fn entry(&self) -> keyway_sidewire::BrokerEntry {
        keyway_sidewire::BrokerEntry::new(&self.addr.ip().to_string(), self.addr.port())
    }
}

impl Drop for WedgedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One MQTT packet: its first byte and its body.
async fn read_packet(stream: &mut TcpStream) -> Result<(u8, Vec<u8>)> {
    let first = stream.read_u8().await?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = stream.read_u8().await?;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            return Ok((first, body));
        }
    }
    anyhow::bail!("bad remaining length")
}

async fn handshake(stream: &mut TcpStream) -> Result<()> {
    let (connect, _) = read_packet(stream).await?;
    anyhow::ensure!(connect == 0x10, "not a CONNECT");
    stream.write_all(&[0x20, 2, 0, 0]).await?;
    let (subscribe, body) = read_packet(stream).await?;
    anyhow::ensure!(subscribe == 0x82, "not a SUBSCRIBE");
    let id = body.get(..2).context("no packet id")?;
    stream.write_all(&[0x90, 3, id[0], id[1], 1]).await?;
    Ok(())
}
