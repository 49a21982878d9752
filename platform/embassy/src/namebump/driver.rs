//! The loop that drives one [`Exchange`]: its transmits go out on the UDP
//! socket or the TCP leg, what arrives and the timer go back in, until it
//! is done or asks for the name's owner.

use embassy_futures::select::{Either3, select3};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_time::Timer;
use keyway_core::namebump::client::{
    Event, Failure, Family, Leg, Outcome, TRANSMIT_LEN, Transport,
};
use keyway_core::rand_core::CryptoRng;
use keyway_core::time::Clock;

use super::tcp_leg::{self, TcpLeg, TcpStep};
use super::{Client, Exchange};
use crate::clock::{now, to_embassy};

/// Datagrams the UDP socket holds before the driver reads them: one. The
/// driver reads each as soon as it is woken, and the socket (on a port of
/// its own) hears only the server's replies unless something strays to
/// it; a reply lost to a datagram still unread is retried by the machine.
/// A second slot would cost a whole reply's bytes.
const DATAGRAMS: usize = 1;

/// The TCP leg's receive buffer, its window: the reply stream is read
/// into `out` as it arrives and framed by the machine, so the window need
/// not hold a reply; a reply larger than this comes in more segments.
const TCP_WINDOW: usize = 512;

const UDP_V4: Leg = Leg::new(Transport::Udp, Family::V4);
const TCP_V4: Leg = Leg::new(Transport::Tcp, Family::V4);

/// Where [`Client::drive`] stopped.
pub(super) enum Step {
    Done(Outcome),
    /// The machine asks for the name's owner ([`Exchange::handle_lookup`]).
    LookupOwner,
}

impl<C: Clock> Client<'_, C> {
    /// Feeds `exchange` until it is done or asks for the owner. Buffers
    /// live in this future: a request or reply is at most
    /// [`TRANSMIT_LEN`] bytes. Four of that size: the UDP socket's (one
    /// datagram in, one out), the TCP socket's send buffer (the request
    /// goes in one write) and `out`, which takes each sealed request,
    /// keeps the TCP leg's until it is sent, then takes the reply stream
    /// as it is read; the TCP socket's receive buffer is [`TCP_WINDOW`].
    /// Datagrams are read in the socket's own buffer.
    pub(super) async fn drive<R: CryptoRng + ?Sized>(
        &self,
        exchange: &mut Exchange,
        rng: &mut R,
    ) -> Step {
        let mut udp_rx_meta = [PacketMetadata::EMPTY; DATAGRAMS];
        let mut udp_tx_meta = [PacketMetadata::EMPTY; 1];
        let mut udp_rx = [0u8; TRANSMIT_LEN * DATAGRAMS];
        let mut udp_tx = [0u8; TRANSMIT_LEN];
        let mut udp = UdpSocket::new(
            self.stack,
            &mut udp_rx_meta,
            &mut udp_rx,
            &mut udp_tx_meta,
            &mut udp_tx,
        );
        let mut udp_on = udp.bind(0).is_ok();
        let mut tcp_rx = [0u8; TCP_WINDOW];
        let mut tcp_tx = [0u8; TRANSMIT_LEN];
        let mut tcp = TcpSocket::new(self.stack, &mut tcp_rx, &mut tcp_tx);
        let mut tcp_state = TcpLeg::Off;
        let mut out = [0u8; TRANSMIT_LEN];
        loop {
            while let Some(event) = exchange.poll_event() {
                match event {
                    Event::CloseLeg(leg) if leg.transport == Transport::Tcp => {
                        tcp.abort();
                        tcp_state = TcpLeg::Off;
                    }
                    Event::CloseLeg(_) => {}
                    Event::LookupOwner => return Step::LookupOwner,
                    Event::Done(outcome) => {
                        tcp.abort();
                        return Step::Done(outcome);
                    }
                }
            }
            // While the TCP leg's request waits in `out`, nothing else is
            // sealed there. (A later attempt's requests come after that
            // leg is closed, so this waits for nothing in practice.)
            while !tcp_state.holds_request()
                && let Some(transmit) =
                    exchange.poll_transmit(now(), self.clock.now(), rng, &mut out)
            {
                let bytes = &out[..transmit.len];
                match transmit.leg {
                    UDP_V4 if udp_on => {
                        if udp.send_to(bytes, self.server).await.is_err() {
                            exchange.handle_leg_failed(now(), UDP_V4);
                        }
                    }
                    TCP_V4 => {
                        // A fresh connection per attempt, as the tokio
                        // client opens one per leg task.
                        tcp.abort();
                        tcp_state = TcpLeg::Connecting { len: bytes.len() };
                    }
                    leg => exchange.handle_leg_failed(now(), leg),
                }
            }
            if exchange.outcome().is_some() {
                continue;
            }
            let Some(deadline) = exchange.poll_timeout() else {
                // Only a finished exchange or a pending lookup has no
                // timer, and both were handled above.
                let attempts = exchange.attempts();
                return Step::Done(Outcome::Failed(Failure::Timeout { attempts }));
            };
            udp_on &= udp.is_open();
            let server = self.server;
            let clock = &self.clock;
            let udp_recv = async {
                if udp_on {
                    udp.recv_from_with(|datagram, meta| {
                        // Only the server's datagrams (the tokio leg
                        // connects its socket for the same reason).
                        if meta.endpoint == server {
                            exchange.handle_datagram(now(), clock.now(), UDP_V4, datagram);
                        }
                    })
                    .await
                } else {
                    core::future::pending().await
                }
            };
            let tcp_step = tcp_leg::step(&mut tcp, self.server, tcp_state, &mut out);
            match select3(udp_recv, tcp_step, Timer::at(to_embassy(deadline))).await {
                // The datagram went to the machine in the socket's buffer.
                Either3::First(()) => {}
                Either3::Second(step) => match (step, tcp_state) {
                    (TcpStep::Connected, TcpLeg::Connecting { len }) => {
                        tcp_state = TcpLeg::Sending { len };
                    }
                    (TcpStep::Sent, _) => tcp_state = TcpLeg::Reading,
                    (TcpStep::Read(n), _) => {
                        exchange.handle_stream(now(), self.clock.now(), TCP_V4, &out[..n]);
                    }
                    _ => {
                        tcp.abort();
                        tcp_state = TcpLeg::Off;
                        exchange.handle_leg_failed(now(), TCP_V4);
                    }
                },
                Either3::Third(()) => exchange.handle_timeout(now()),
            }
        }
    }
}
