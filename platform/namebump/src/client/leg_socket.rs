//! One leg's socket or connection, as a task: it sends the machine's
//! request and reports what arrives until it fails or is dropped.

use std::net::SocketAddr;

use keyway_core::namebump::client::{Leg, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::mpsc;

/// What a leg's task reports, tagged with the transmit it serves.
#[derive(Debug)]
pub(super) struct LegReport {
    pub(super) leg: Leg,
    pub(super) generation: u64,
    pub(super) what: LegInput,
}

#[derive(Debug)]
pub(super) enum LegInput {
    Bytes(Vec<u8>),
    Failed(std::io::Error),
}

/// Reports a leg task may queue before it waits for the exchange to read
/// them: a flooding peer slows its own task, not the exchange.
pub(super) const LEG_REPORTS: usize = 16;

/// One leg's socket: sends the request, then reports what arrives until
/// it fails or the exchange drops it.
pub(super) struct LegTask {
    pub(super) leg: Leg,
    pub(super) generation: u64,
    pub(super) server: SocketAddr,
    pub(super) local: SocketAddr,
    /// Bind TCP to `local` too (UDP always binds).
    pub(super) bind: bool,
    pub(super) request: Vec<u8>,
    pub(super) reports: mpsc::Sender<LegReport>,
}

impl LegTask {
    pub(super) async fn run(self) {
        let result = match self.leg.transport {
            Transport::Udp => self.udp().await,
            Transport::Tcp => self.tcp().await,
        };
        if let Err(e) = result {
            self.report(LegInput::Failed(e)).await;
        }
    }

    async fn report(&self, what: LegInput) -> bool {
        let report = LegReport {
            leg: self.leg,
            generation: self.generation,
            what,
        };
        self.reports.send(report).await.is_ok()
    }

    async fn udp(&self) -> std::io::Result<()> {
        let socket = UdpSocket::bind(self.local).await?;
        // Connected: datagrams from anyone but the server are not even read.
        socket.connect(self.server).await?;
        socket.send(&self.request).await?;
        let mut buf = vec![0u8; 2048];
        loop {
            let n = socket.recv(&mut buf).await?;
            if !self.report(LegInput::Bytes(buf[..n].to_vec())).await {
                return Ok(());
            }
        }
    }

    async fn tcp(&self) -> std::io::Result<()> {
        let socket = if self.server.is_ipv6() {
            TcpSocket::new_v6()?
        } else {
            TcpSocket::new_v4()?
        };
        if self.bind {
            socket.bind(self.local)?;
        }
        let mut stream = socket.connect(self.server).await?;
        stream.set_nodelay(true)?;
        // One write: a reference server reads one chunk as one message.
        stream.write_all(&self.request).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if !self.report(LegInput::Bytes(buf[..n].to_vec())).await {
                return Ok(());
            }
        }
    }
}
