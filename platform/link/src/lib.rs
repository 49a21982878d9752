//! Secure node links (issue 16): the tokio shell around
//! `keyway_core::link`, and the files a node keeps.
//!
//! - [`identity_file`]: the node's secret keys sealed under its password
//!   (Argon2id + XChaCha20-Poly1305).
//! - [`sealed_file`]: other secrets sealed under the same key.
//! - [`sealing_key`]: that key.
//! - [`password`]: where the password comes from (file, environment, terminal).
//! - [`network_key`]: the 32-byte network secret (the Noise PSK).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod identity_file;
pub mod network_key;
pub mod password;
pub mod sealed_file;
mod sealed_text;
pub mod sealing_key;

pub use sealed_text::FileError;
