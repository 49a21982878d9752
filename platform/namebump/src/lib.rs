//! namebump for tokio: the server and the client.
//!
//! Wire-compatible with namebump 0.0.16 in both directions (the reference
//! client works against [`server::Server`] unmodified; [`client::Client`]
//! works against the reference server) while keeping the promises the
//! reference breaks: real bump eviction, expiry at read time, replay
//! protection, one UDP reply to the right peer, no amplification.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod client;
pub mod clock;
pub mod server;
pub mod store;

pub use client::{Behavior, Client, ClientConfig, ClientError, Record, Reply};
pub use clock::{Clock, ManualClock, SystemClock};
pub use server::{Server, ServerConfig};
pub use store::{Limits, NameStore, SqlStore};
