//! Secure node links (issue 16): `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`
//! behind a network key, identity proofs bound to the channel, request and
//! response frames, capabilities and limits, as a sans-I/O machine.
//!
//! - [`Link`] ([`machine`]): one connection, dialer or acceptor; feed it
//!   bytes with `handle_input`, take frames from `poll_transmit`, events
//!   from `poll_event`, and drive its timer with `poll_timeout` /
//!   `handle_timeout`.
//! - [`noise`]: the Noise layer (snow) with the caller's randomness.
//! - [`proof`]: the identity proof over the handshake hash.
//! - [`wire`] and [`frame`]: the 2-byte length prefix, and the application
//!   frames inside Noise transport messages.
//! - [`capability`]: capabilities and the allow-list.
//! - [`limits`], [`blocklist`]: per-link bounds and the exponential blocklist.
//!
//! `core/DESIGN-link.md` describes the protocol and the API.

pub mod blocklist;
pub mod capability;
pub mod close_reason;
pub mod frame;
pub mod limits;
pub mod machine;
pub mod network_key;
pub mod noise;
pub mod proof;
pub mod refusal;
pub mod seen_messages;
pub mod service;
pub mod stream_key_b64;
pub mod wire;

pub use blocklist::{BlockKey, Blocklist, BlocklistPolicy};
pub use capability::{Access, AllowList, Capability, CapabilityError};
pub use close_reason::{CloseReason, Limit};
pub use limits::Limits;
pub use machine::{Event, Link, LinkConfig, MIN_TRANSMIT_BUF, RequestId, SendError};
pub use network_key::{NETWORK_KEY_LEN, NetworkKey};
pub use refusal::Refusal;
pub use seen_messages::{MESSAGE_ID_LEN, MessageId, SeenMessages};
pub use service::Service;
/// The Noise library underneath, for [`noise::handshake_with`]'s callers.
pub use snow;
pub use wire::MAX_WIRE_FRAME;
