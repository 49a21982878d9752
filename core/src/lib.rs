//! Keyway's core: everything that decides bytes, and nothing that does I/O.
//!
//! `#![no_std]` and allocation-free on every codec and crypto path: callers
//! pass buffers, the current time and a random number generator. The same
//! code therefore runs in the tokio server, in firmware and behind the C ABI.
//!
//! - [`identity`]: secp256k1 keypairs and 33-byte compressed public keys.
//! - [`signature`]: ECDSA over SHA-1 with raw `r‖s`, as namebump and sidewire sign.
//! - [`ecies`]: aionetiface's hybrid encryption (raw ECDH, RC6-CBC, HMAC-SHA256).
//! - [`namebump`]: the namebump packet, request freshness and quota address helpers.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(test)]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod ecies;
pub mod identity;
pub mod namebump;
pub mod signature;

pub use identity::{KeyError, Keypair, PublicKey};
/// The RNG traits the core takes randomness through.
pub use rand_core;
