//! sidewire for tokio: signed messages to a public key over ordinary MQTT
//! brokers chosen by rendezvous hashing (`../shared/specs/sidewire.md`).
//!
//! The wire pieces (AppPacket, ranking, MQTT codec, receive rules) are in
//! `keyway_core`; this crate adds the sockets: [`link::BrokerLink`] is one
//! MQTT connection, [`Router`] a node on a pool and [`SmartPipe`] a sender.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod hint_cache;
pub mod link;
mod pool_file;
pub mod router;

pub use pool_file::PoolFileError;

pub use router::{BrokerEntry, Message, Pool, Router, RouterConfig, RouterError, SmartPipe};
