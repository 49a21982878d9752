//! Drayer streams for std: the original's SQLite stream files
//! (`../shared/specs/drayer.md` §5) driven by the algorithms of
//! `keyway_core::drayer`.
//!
//! - [`Stream`]: open, create or mirror a stream file; get, set, delete,
//!   list, verify.
//! - [`sqlite`]: the `Chain` over one SQLite transaction.
//! - [`keyfile`]: the `<stream>.privatekey` file.
//! - [`file_record`]: `file` records, directory import and export.
//! - [`sync`]: pulling a stream from a peer.
//! - [`http`]: the HTTP API's client, and its server (feature `server`).
//! - [`wire`]: the msgpack record maps of the HTTP API.
//! - `discovery` (feature `server`): DrayerUDP LAN discovery.
//! - `dht` (feature `server`): finding streams on the Mainline DHT.
//! - [`primary_servers`]: the `primaryServers` record.
//! - [`obj`]: the dict API's msgpack values.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod blocking;
#[cfg(feature = "server")]
pub mod dht;
#[cfg(feature = "server")]
pub mod discovery;
pub mod file_record;
pub mod http;
pub mod keyfile;
pub mod obj;
pub mod primary_servers;
pub mod sqlite;
mod stream;
pub mod sync;
mod verifiers;
pub mod wire;

pub use stream::{Batch, Entry, Stream, StreamError, VerifyReport, parse_public_key};
