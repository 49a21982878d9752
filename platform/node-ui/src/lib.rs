//! The node's local browser UI (issue 16, item 7).
//!
//! [`serve`] listens on a loopback address, serves a small status page
//! (HTML, script and style embedded in this crate; no other resource) and a
//! WebSocket, and returns a one-time URL `http://ADDR/#pair=TOKEN` for the
//! node to print as `ui=…`. The page reads the token from the fragment,
//! pairs with the node by an ephemeral P-256 ECDH in WebCrypto that both
//! sides authenticate with the token ([`pairing`], [`key_schedule`]), and
//! from then on every WebSocket message is an AES-256-GCM frame with a
//! per-direction counter ([`channel`]): a replayed, reordered or altered
//! frame closes the session ([`session`]).
//!
//! What it protects against: other machines (loopback only, refused at
//! bind); web pages in the owner's browser, including DNS rebinding
//! ([`origin`]: `Host` and `Origin` must name the listener); a local process
//! that connects to the port without the token (refused at pairing, and
//! the token stays valid for the owner); one that sees or injects frames
//! (sealed, numbered). What it cannot protect against: a process that can
//! read the node's output or the browser's memory, where the token is.
//!
//! The node supplies its status through [`StatusSource`], a trait that any
//! `Fn() -> Status` closure implements:
//!
//! ```no_run
//! # async fn demo() -> Result<(), keyway_node_ui::ServeError> {
//! use keyway_node_ui::{Status, serve};
//! let (url, handle) = serve("127.0.0.1:0".parse().unwrap(), || Status {
//!     identity: "02…".into(),
//!     ..Status::default()
//! })
//! .await?;
//! println!("ui={url}");
//! // The UI runs until `handle` is dropped.
//! # drop(handle); Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod channel;
pub mod key_schedule;
pub mod origin;
pub mod pairing;
pub mod rpc;
mod server;
pub mod session;
pub mod status;
pub mod token;

pub use origin::NotLoopback;
pub use server::{MAX_SESSIONS, ServeError, UiHandle, pairing_url, serve, serve_with_deadlines};
pub use session::Deadlines;
pub use status::{Direction, LinkInfo, PeerInfo, Status, StatusSource, StreamInfo};
pub use token::PairingToken;
