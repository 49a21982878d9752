//! sidewire for tokio: signed messages to a public key over ordinary MQTT
//! brokers chosen by rendezvous hashing (`../shared/specs/sidewire.md`).
//!
//! The wire pieces (AppPacket, ranking, MQTT codec, receive rules) are in
//! `keyway_core`; this crate adds the sockets: [`link::BrokerLink`] is one
//! MQTT connection, [`Router`] a node on a pool and [`SmartPipe`] a sender.
//!
//! The seed's shape: a keypair, a handler, a clock and the brokers; then
//! `start`, pipes, `close`.
//!
//! ```no_run
//! # async fn demo(keypair: keyway_core::Keypair, dest: keyway_core::PublicKey)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use keyway_sidewire::{Message, Pool, Router, system_time};
//!
//! let pool = Pool::load(std::path::Path::new("pool.toml"))?;
//! let on_msg = Arc::new(|m: &Message| println!("{}: {:?}", m.from, m.data));
//! let router = Router::new(keypair, Some(on_msg), system_time, pool);
//! router.start().await?;
//! router.pipe(dest).send(b"hello", Duration::from_secs(10)).await?;
//! router.close(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod hint_cache;
pub mod link;
mod pool;
mod pool_file;
pub mod router;

pub use pool_file::PoolFileError;

pub use router::{
    BrokerEntry, Clock, Handler, Message, Pool, Router, RouterConfig, RouterError, SmartPipe,
    clock_fn, system_time,
};
