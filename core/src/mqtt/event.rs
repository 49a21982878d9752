//! What the session machine reports: its events and why it closed.

use core::fmt;

use super::decode::QoS;
use super::error::MqttError;
#[cfg(doc)]
use super::session::{Session, SessionConfig};

/// What a session reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The broker accepted the CONNECT.
    Connected,
    /// The broker granted a subscription.
    Subscribed { packet_id: u16, qos: QoS },
    /// A PUBLISH from the broker (already acknowledged if QoS 1). The bytes
    /// are the session's, until its next `&mut` call.
    Message { topic: &'a [u8], payload: &'a [u8] },
    /// The session is over; nothing more will be sent or reported.
    Closed(CloseReason),
}

/// What the broker refused, or answered out of turn, during the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A CONNACK other than "accepted, no session" (`20 02 00 00`).
    Connack {
        session_present: bool,
        return_code: u8,
    },
    /// A SUBACK failure (0x80) or a QoS above the one asked for.
    Suback { packet_id: u16, return_code: u8 },
    /// A packet of this type where the handshake expected another.
    Unexpected { packet_type: u8 },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No CONNACK (or SUBACK) within [`SessionConfig::connect_timeout`].
    HandshakeTimeout,
    Refused(Refusal),
    /// The broker's bytes are not MQTT this client accepts.
    Malformed(MqttError),
    /// No PINGRESP within a keep-alive of a PINGREQ.
    PingTimeout,
    /// A write did not finish within [`SessionConfig::write_timeout`].
    WriteStalled,
    /// The transport closed ([`Session::handle_closed`]).
    ConnectionLost,
    /// Our DISCONNECT was written ([`Session::handle_disconnect`]).
    Disconnected,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandshakeTimeout => f.write_str("no CONNACK/SUBACK in time"),
            Self::Refused(Refusal::Connack {
                session_present,
                return_code,
            }) => write!(
                f,
                "CONNACK return code {return_code} (session present: {session_present})"
            ),
            Self::Refused(Refusal::Suback {
                packet_id,
                return_code,
            }) => write!(f, "SUBACK {packet_id} return code {return_code:#04x}"),
            Self::Refused(Refusal::Unexpected { packet_type }) => {
                write!(f, "packet type {packet_type} during the handshake")
            }
            Self::Malformed(e) => write!(f, "{e}"),
            Self::PingTimeout => f.write_str("no PINGRESP"),
            Self::WriteStalled => f.write_str("write deadline missed"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::Disconnected => f.write_str("disconnected"),
        }
    }
}
