//! namebump 0.0.16: the registrationless name → value registry's wire format.
//!
//! Constants are the reference's `defs.py` (spec §1). The packet travels
//! inside [`crate::ecies`], signed with [`crate::signature`].

pub mod address;
pub mod client;
pub mod freshness;
pub mod packet;
pub mod published;
pub mod reply;
pub mod tcp_framing;
pub mod usage;

pub use packet::{DecodeError, EncodeError, Op, Packet};

/// TCP and UDP port of the reference server.
pub const NB_PORT: u16 = 5300;
/// Maximum name length on the wire, in bytes.
pub const MAX_NAME_LEN: usize = 50;
/// Maximum value length on the wire, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;
/// Names per IPv4 address.
pub const V4_NAME_LIMIT: u32 = 20;
/// Names per IPv6 address (a full /128).
pub const V6_NAME_LIMIT: u32 = 5;
/// Distinct IPv6 addresses holding names, per /64.
pub const V6_IFACE_LIMIT: u32 = 20;
/// Distinct /64s holding names, per /48.
pub const V6_SUBNET_LIMIT: u32 = 15_000;
/// Age in seconds at which a name expires and becomes bumpable (30 days).
pub const MIN_NAME_DURATION: u64 = 2_592_000;

/// `behavior`: at quota, reject the PUT.
pub const DONT_BUMP: u8 = 0;
/// `behavior`: at quota, evict the oldest bumpable name of the same quota row.
pub const DO_BUMP: u8 = 1;
/// Client-side only: sent as [`DONT_BUMP`], and a rejection is raised as
/// "would bump". Never appears on the wire.
pub const THROW_BUMP: u8 = 2;

/// The reference client's default request ttl, seconds.
pub const DEFAULT_REQUEST_TTL: f64 = 10.0;
