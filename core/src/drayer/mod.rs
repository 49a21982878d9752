//! Drayer (2019): a stream is a set of mutable records published by one
//! Ed25519 key, each in two signed linked lists — the ID chain (`prev`)
//! and the modification chain (`prevchange`) — so that mirrors can sync by
//! "everything after my tip" and still learn of deletions
//! (`../shared/specs/drayer.md`, Part A, with the fixes of Part C).
//!
//! - [`record`]: the signed fields and the exact 136-byte signing string.
//! - [`chain`]: what the algorithms need from a store.
//! - [`apply`](mod@apply): the receiver's rules, for mirrors and the owner alike.
//! - [`owner`]: set and delete.
//! - [`pull`](mod@pull): the pull from a peer, as a sans-I/O machine.
//! - `memory` (feature `alloc`): a chain in memory.

pub mod apply;
pub mod chain;
#[cfg(feature = "alloc")]
pub mod memory;
pub mod owner;
pub mod pull;
pub mod record;

pub use apply::{Applied, ApplyError, Mender, Repair, Verified, apply, apply_verified};
pub use chain::Chain;
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use owner::{
    PLACEHOLDER_KEY, PLACEHOLDER_TYPE, WriteError, delete, is_placeholder, is_reserved, seal, set,
    set_unsigned,
};
pub use record::{Hash, Meta, RecordError, hash};
