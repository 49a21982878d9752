//! sidewire 0.1.9: signed messages to a public key over ordinary MQTT
//! brokers chosen by rendezvous hashing (spec `sidewire.md`).
//!
//! A node's inbound topic is its 66-hex-digit public key; every MQTT
//! payload is one [`AppPacket`]; brokers are ranked per destination by
//! [`rendezvous`]; [`screen`] decides which inbound packets earn a
//! signature check; [`receiver`] decides what to deliver and ACK; [`node`]
//! is the whole node as a sans-I/O state machine containing both.

pub mod app_packet;
pub mod buckets;
pub mod node;
pub mod receiver;
pub mod rendezvous;
pub mod screen;

pub use app_packet::{AppPacket, MsgType};
pub use receiver::{Receiver, Slot, Verdict};
pub use screen::{Class, Peer, Screen, ScreenLimits};
