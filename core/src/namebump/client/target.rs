//! The server an exchange talks to: its key and its address families.

use crate::identity::PublicKey;

/// The server: the key requests are sealed to, and the families its name
/// resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub key: PublicKey,
    pub families: Families,
}

/// The address families the server's name resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const V4: Self = Self {
        v4: true,
        v6: false,
    };
    pub const V6: Self = Self {
        v4: false,
        v6: true,
    };
    pub const BOTH: Self = Self { v4: true, v6: true };
}
