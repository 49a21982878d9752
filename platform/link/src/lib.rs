//! Secure node links (issue 16): the tokio shell around
//! `keyway_core::link`, and the files a node keeps.
//!
//! Files:
//! - [`identity_file`]: the node's secret keys sealed under its password
//!   (Argon2id + XChaCha20-Poly1305).
//! - [`sealed_file`]: other secrets sealed under the same key.
//! - [`sealing_key`]: that key.
//! - [`password`]: where the password comes from (file, environment, terminal).
//! - [`network_key`]: the 32-byte network secret (the Noise PSK).
//!
//! Links:
//! - [`address`]: node addresses, `PUBKEY_HEX@HOST:PORT`.
//! - [`connection`]: one link over one socket (the loop around the core's
//!   machine).
//! - [`node`]: the listener — connection cap, blocklist, status.
//! - [`dial`]: dialing, with retries that keep the last real reason.
//! - [`messages`]: acknowledged, replay-safe messages.
//! - [`stream_sync`]: Drayer streams served and pulled over links.
//! - [`services`]: what a node serves; [`config`]: its link configuration.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod address;
pub mod clock;
pub mod config;
pub mod connection;
pub mod dial;
pub mod error;
pub mod identity_file;
pub mod messages;
pub mod network_key;
pub mod node;
pub mod password;
pub mod sealed_file;
mod sealed_text;
pub mod sealing_key;
pub mod services;
pub mod stream_sync;

pub use address::PeerAddress;
pub use error::LinkError;
pub use sealed_text::FileError;
