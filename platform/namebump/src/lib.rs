//! namebump for tokio: the server and the client.
//!
//! Wire-compatible with namebump 0.0.16 in both directions (the reference
//! client works against [`server::Server`] unmodified; [`client::Client`]
//! works against the reference server) while keeping the promises the
//! reference breaks: real bump eviction, expiry at read time, replay
//! protection, one UDP reply to the right peer, no amplification.
#![cfg_attr(test, allow(clippy::unwrap_used))]

//!
//! Features (issue 13): `client` (the client and the load generator) and
//! `server` (the server and its SQLite, PostgreSQL and MariaDB stores, with
//! their database, HTTP and metrics dependencies); both by default.

#[cfg(feature = "client")]
pub mod bench;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
#[cfg(feature = "server")]
pub mod replica;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "client")]
pub use client::{Behavior, Client, ClientConfig, ClientError, ErrorKind, Record, Reply};
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "server")]
pub use server::{Server, ServerConfig};
#[cfg(feature = "server")]
pub use store::{Limits, NameStore, SqlStore};
