//! The TCP leg's connection, one step per wake-up, so that the driver can
//! race it against the UDP leg and the timer in one `select`.
//!
//! A step may be dropped when another branch wins. Reads are safe to drop
//! (embassy-net keeps the bytes); a connect is not re-issued: a socket
//! left in SYN-SENT is waited on instead, and the request goes in one
//! write (a reference server reads one chunk as one message).

use embassy_net::IpEndpoint;
use embassy_net::tcp::{State, TcpSocket};

/// Where the leg is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TcpLeg {
    Off,
    /// Connecting; the request (`len` bytes) goes once connected.
    Connecting {
        len: usize,
    },
    Sending {
        len: usize,
    },
    /// Request sent: reading the reply stream.
    Reading,
}

impl TcpLeg {
    /// Whether the leg's request waits in its buffer (not yet sent).
    pub(super) fn holds_request(self) -> bool {
        matches!(self, Self::Connecting { .. } | Self::Sending { .. })
    }
}

/// What a step did.
#[derive(Debug)]
pub(super) enum TcpStep {
    Connected,
    Sent,
    Read(usize),
    Failed,
}

/// One step of the leg in `state`; never completes while the leg is off.
/// `buf` holds the request until it is sent (its first `len` bytes), then
/// takes what is read: one buffer, since the leg does one at a time.
pub(super) async fn step(
    socket: &mut TcpSocket<'_>,
    server: IpEndpoint,
    state: TcpLeg,
    buf: &mut [u8],
) -> TcpStep {
    match state {
        TcpLeg::Off => core::future::pending().await,
        TcpLeg::Connecting { .. } => match socket.state() {
            State::Closed => match socket.connect(server).await {
                Ok(()) => TcpStep::Connected,
                Err(_) => TcpStep::Failed,
            },
            State::SynSent | State::SynReceived => {
                // A connect dropped half-way: wait for its end (a refused
                // one leaves it to the machine's reply deadline).
                socket.wait_write_ready().await;
                TcpStep::Connected
            }
            State::Established => TcpStep::Connected,
            _ => TcpStep::Failed,
        },
        TcpLeg::Sending { len } => {
            let Some(request) = buf.get(..len) else {
                return TcpStep::Failed;
            };
            let mut sent = 0;
            while sent < request.len() {
                match socket.write(&request[sent..]).await {
                    Ok(0) | Err(_) => return TcpStep::Failed,
                    Ok(n) => sent += n,
                }
            }
            TcpStep::Sent
        }
        TcpLeg::Reading => match socket.read(buf).await {
            Ok(0) | Err(_) => TcpStep::Failed,
            Ok(n) => TcpStep::Read(n),
        },
    }
}
