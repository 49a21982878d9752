//! One broker link: a TCP socket and the MQTT [`Session`] on it. The node
//! machine decides when a link opens and closes and what it publishes; the
//! session decides the MQTT bytes and its own deadlines. This file only
//! connects, writes what the session gives and reads what comes.

use embassy_futures::select::{Either, select};
use embassy_net::IpEndpoint;
use embassy_net::tcp::{State, TcpSocket};
use keyway_core::mqtt::{CloseReason, Session};
use keyway_core::sidewire::node::{BrokerId, LinkDown, LinkId};

use crate::clock::now;

/// Bytes taken from the session's outbox at a time: the session gives a
/// packet in pieces ([`Session::poll_transmit`] moves at most what fits),
/// so this staging copy needs not hold a whole packet of `B` bytes.
pub const WRITE_CHUNK: usize = 512;

/// A TCP socket's buffers, one pair per link (the application sizes them).
#[derive(Debug)]
pub struct SocketMemory<const N: usize> {
    rx: [u8; N],
    tx: [u8; N],
}

impl<const N: usize> SocketMemory<N> {
    pub const fn new() -> Self {
        Self {
            rx: [0; N],
            tx: [0; N],
        }
    }

    pub(super) fn buffers(&mut self) -> (&mut [u8], &mut [u8]) {
        (&mut self.rx, &mut self.tx)
    }
}

impl<const N: usize> Default for SocketMemory<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Idle,
    Connecting,
    Open,
}

/// What one wake-up of a link brought.
#[derive(Debug)]
pub(super) enum Io {
    Connected,
    Wrote(usize),
    /// Bytes went from the socket straight into the session's inbox (how
    /// many: none when the inbox was full).
    Received(usize),
    /// The transport is gone (refused, reset, EOF).
    Lost,
}

/// A link slot; `B` is the size of the session's inbox and outbox.
pub(super) struct Link<'a, const B: usize> {
    pub(super) socket: TcpSocket<'a>,
    pub(super) phase: Phase,
    pub(super) id: LinkId,
    pub(super) broker: BrokerId,
    pub(super) endpoint: IpEndpoint,
    pub(super) session: Option<Session<[u8; B]>>,
    /// Whether the node was told the link is up.
    pub(super) up: bool,
    pub(super) write: [u8; WRITE_CHUNK],
    pub(super) write_len: usize,
    pub(super) written: usize,
    /// The session took no bytes and had nothing to give: its inbox waits
    /// for its outbox (PUBACKs to queue), so reading waits for a write.
    pub(super) stalled_read: bool,
}

impl<'a, const B: usize> Link<'a, B> {
    pub(super) fn new(socket: TcpSocket<'a>) -> Self {
        Self {
            socket,
            phase: Phase::Idle,
            id: LinkId(u64::MAX),
            broker: BrokerId(u32::MAX),
            endpoint: IpEndpoint::new(embassy_net::IpAddress::v4(0, 0, 0, 0), 0),
            session: None,
            up: false,
            write: [0; WRITE_CHUNK],
            write_len: 0,
            written: 0,
            stalled_read: false,
        }
    }

    pub(super) fn is_free(&self) -> bool {
        self.phase == Phase::Idle && self.session.is_none()
    }

    /// Takes the slot for `id`: the session is new, its socket reset.
    pub(super) fn start(
        &mut self,
        id: LinkId,
        broker: BrokerId,
        endpoint: IpEndpoint,
        session: Session<[u8; B]>,
    ) {
        self.socket.abort();
        self.phase = Phase::Connecting;
        self.id = id;
        self.broker = broker;
        self.endpoint = endpoint;
        self.session = Some(session);
        self.up = false;
        self.write_len = 0;
        self.written = 0;
        self.stalled_read = false;
    }

    /// Lets the slot go after its session closed; how the node hears it.
    pub(super) fn finish(&mut self, reason: CloseReason) -> LinkDown {
        let heard = self.session.as_ref().is_some_and(Session::heard);
        if reason == CloseReason::Disconnected {
            // Our DISCONNECT went out: end with a FIN, as a broker expects.
            self.socket.close();
        } else {
            self.socket.abort();
        }
        self.phase = Phase::Idle;
        self.session = None;
        self.write_len = 0;
        self.written = 0;
        link_down(self.up, heard, reason)
    }

    /// Waits for this link's next I/O; never completes for a free slot.
    /// Dropping it loses nothing: reads and writes are embassy-net's
    /// cancel-safe ones, and a connect is issued once and then waited on.
    pub(super) async fn io(&mut self) -> Io {
        match self.phase {
            Phase::Idle => core::future::pending().await,
            Phase::Connecting => match self.socket.state() {
                State::Closed => match self.socket.connect(self.endpoint).await {
                    Ok(()) => Io::Connected,
                    Err(_) => Io::Lost,
                },
                State::SynSent | State::SynReceived => {
                    // A refused connect is ended by the session's
                    // handshake deadline.
                    self.socket.wait_write_ready().await;
                    Io::Connected
                }
                State::Established => Io::Connected,
                _ => Io::Lost,
            },
            Phase::Open => {
                let (mut reader, mut writer) = self.socket.split();
                let pending = &self.write[self.written..self.write_len];
                // The session reads from the socket's own buffer: no copy
                // and no read buffer of the link's (what it does not take
                // stays in the socket).
                let session = &mut self.session;
                let read = reader.read_with(|bytes| {
                    let taken = session
                        .as_mut()
                        .map_or(bytes.len(), |s| s.handle_received(now(), bytes));
                    (taken, Io::Received(taken))
                });
                let result = match (pending.is_empty(), self.stalled_read) {
                    (true, false) => read.await,
                    // Nothing to write and nothing taken: the session's
                    // timers (keep-alive) end this if it stays so.
                    (true, true) => core::future::pending().await,
                    (false, true) => writer.write(pending).await.map(Io::Wrote),
                    (false, false) => match select(writer.write(pending), read).await {
                        Either::First(r) => r.map(Io::Wrote),
                        Either::Second(r) => r,
                    },
                };
                match result {
                    Ok(Io::Wrote(0)) | Err(_) => Io::Lost,
                    Ok(io) => io,
                }
            }
        }
    }
}

/// How a link's end is told to the node. The tokio router's rule
/// (router/links.rs): a stalled writer and a silent broker are failures
/// (the broker backs off); a link that never came up failed to connect.
pub(super) fn link_down(up: bool, heard: bool, reason: CloseReason) -> LinkDown {
    if !up {
        LinkDown::ConnectFailed
    } else if reason == CloseReason::WriteStalled {
        LinkDown::Stalled
    } else if !heard {
        LinkDown::Unheard
    } else {
        LinkDown::Closed
    }
}

/// Waits for the first link with I/O; `None` entries never complete.
pub(super) async fn any_io<const B: usize>(link: Option<&mut Link<'_, B>>) -> Io {
    match link {
        Some(link) => link.io().await,
        None => core::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use keyway_core::mqtt::Refusal;

    use super::*;

    #[test]
    fn a_link_that_never_came_up_failed_to_connect() {
        for reason in [
            CloseReason::HandshakeTimeout,
            CloseReason::ConnectionLost,
            CloseReason::Refused(Refusal::Unexpected { packet_type: 9 }),
        ] {
            assert_eq!(link_down(false, false, reason), LinkDown::ConnectFailed);
        }
    }

    #[test]
    fn stalled_and_silent_brokers_are_failures_and_a_closed_one_is_not() {
        let stalled = link_down(true, true, CloseReason::WriteStalled);
        let silent = link_down(true, false, CloseReason::PingTimeout);
        let closed = link_down(true, true, CloseReason::ConnectionLost);
        assert_eq!(stalled, LinkDown::Stalled);
        assert_eq!(silent, LinkDown::Unheard);
        assert_eq!(closed, LinkDown::Closed);
        assert!(stalled.is_failure() && silent.is_failure());
        assert!(!closed.is_failure());
    }
}
