//! The name registry's wire formats (issue 17): usernames, the write
//! request an owner signs (which the registry's Drayer stream then records
//! unchanged), the registry's reply, and the rules a write is judged by.
//!
//! - [`username`]: folding (NFC, case folding) and validation.
//! - [`request`]: [`WriteRequest`] / [`SignedRequest`], also the record.
//! - [`reply`]: [`WriteReply`] (`OK`, `IDEMPOTENT`, `ERR:<text>` + position).
//! - [`decide`](mod@decide): freshness and the register/delete table.
//! - [`info`]: the stream key and position a client asks for first, and
//!   the waiting form a follower long-polls with.
//!
//! A write travels as the body of a link request on service
//! `registry-write`; the reply is that request's response body. Each
//! accepted write is one record of the registry's stream, with Drayer key
//! = the canonical name and type [`RECORD_KIND`], and the encoded
//! [`SignedRequest`] as its value: a delete is a record too (op 2), so
//! the stream always shows who last asked what for each name.

pub mod decide;
pub mod info;
pub mod reply;
pub mod request;
pub mod username;

pub use decide::{Outcome, check_fresh, decide};
pub use info::{INFO_REQUEST, MAX_WAIT_MS, RegistryInfo, parse_info_request, wait_request};
pub use reply::{MAX_REPLY_LEN, Status, WriteReply};
pub use request::{MAX_REQUEST_LEN, Op, SignedRequest, WriteRequest};
pub use username::{Username, UsernameError};

/// The Drayer record type of registry records.
pub const RECORD_KIND: &str = "keyway-registry/1";
