//! The name registry (issue 17): hyper-registry's command/query split on
//! Keyway's parts. Writes come over secure links (service
//! `registry-write`), are judged and appended in one step by a single
//! writer, and land in a Drayer stream that replicas mirror (over links or
//! HTTP) and verify record by record.
//!
//! - [`record`]: what a registry record is and how a reader checks it
//!   (shared by the server and replicas).
//! - [`index`] (feature `server`): the server's SQLite index of names and
//!   owners, rebuilt from the stream when missing or behind.
//! - [`server`] (feature `server`): the registry's directory, the write
//!   path, and the link service.
//! - [`replica`]: a client's replica (a verified Drayer mirror and an
//!   index of names) answering `lookup` and `list` locally.
//! - [`client`]: writes over a link, with read-your-writes by position.
//!
//! The wire formats are in `keyway_core::registry`; DESIGN.md here says
//! why the pieces are shaped as they are.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod client;
#[cfg(feature = "server")]
pub mod index;
pub mod record;
pub mod replica;
#[cfg(feature = "server")]
pub mod server;

pub use record::{RecordError, check_record};
#[cfg(feature = "server")]
pub use server::{Registry, RegistryError, RegistryService};
