//! MQTT 3.1.1 as sidewire uses it (spec `sidewire.md` §2): the packet codec
//! and the client [`session`] machine that drives one broker connection.
//!
//! - [`decode`](decode()) / `encode_*`: packets in and out of the caller's
//!   buffers, streaming and size-capped.
//! - [`Session`]: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBACKs, keep-alive and
//!   the PINGRESP deadline, oversize skipping and the outbound queue, with
//!   no I/O, no clock and no heap.

mod decode;
mod encode;
mod error;
mod event;
mod inbox;
mod length;
mod outbox;
pub mod session;

pub use decode::{CONNACK_ACCEPTED, Packet, QoS, decode, filters, publish_packet_id};
pub use encode::{
    encode_connack, encode_connect, encode_disconnect, encode_pingreq, encode_pingresp,
    encode_puback, encode_publish, encode_suback, encode_subscribe,
};
pub use error::MqttError;
pub use session::{
    CloseReason, CommandError, Event, Refusal, Session, SessionConfig, SessionError, Transmit,
};
