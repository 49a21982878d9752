//! The legs a request travels on: {UDP, TCP} × {IPv4, IPv6}.
//!
//! The machine names legs; the shell maps each to a socket (a UDP socket
//! per family, a TCP connection per family) and opens a fresh one for every
//! [`Transmit`], since every attempt uses a fresh reply key.

/// The transport of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The address family of a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

/// One leg of the race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Leg {
    pub transport: Transport,
    pub family: Family,
}

impl Leg {
    /// Every leg, in the order an attempt transmits on them: per family,
    /// UDP first (it answers first when both work).
    pub const ALL: [Leg; LEGS] = [
        Leg::new(Transport::Udp, Family::V4),
        Leg::new(Transport::Tcp, Family::V4),
        Leg::new(Transport::Udp, Family::V6),
        Leg::new(Transport::Tcp, Family::V6),
    ];

    pub const fn new(transport: Transport, family: Family) -> Self {
        Self { transport, family }
    }

    /// This leg's position in [`Leg::ALL`].
    pub const fn index(self) -> usize {
        let family = match self.family {
            Family::V4 => 0,
            Family::V6 => 2,
        };
        let transport = match self.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        };
        family + transport
    }
}

/// How many legs there are.
pub const LEGS: usize = 4;

/// Bytes for the shell to send: the first `len` bytes of the buffer given
/// to `poll_transmit`, on a fresh socket (UDP) or connection (TCP) of `leg`,
/// in one write (a reference server reads one TCP chunk as one message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub leg: Leg,
    pub len: usize,
}

/// Why a leg ended without a reply, as the outcome reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegFault {
    /// The shell reported an I/O error (refused, reset, closed): it holds
    /// the details.
    Io,
    /// The TCP reply stream is not framed as sealed messages to our reply
    /// key (garbage, a reply sealed to another key, or more bytes than any
    /// reply), so no reply can come from it.
    Unframeable,
}
