//! What a PUT may do when the address's quota is full.

use crate::namebump::{DO_BUMP, DONT_BUMP};

/// What a PUT may do when the address's quota is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Evict the oldest bumpable name of the same quota row (DO_BUMP).
    #[default]
    Bump,
    /// Fail with "rejected at quota" (DONT_BUMP).
    DontBump,
    /// Fail with "would bump" instead of bumping (THROW_BUMP: sent as
    /// DONT_BUMP, the rejection read as "would bump").
    Throw,
}

impl Behavior {
    /// The `behavior` byte on the wire.
    pub const fn wire(self) -> u8 {
        match self {
            Self::Bump => DO_BUMP,
            Self::DontBump | Self::Throw => DONT_BUMP,
        }
    }
}
