//! The HTTP sync API (spec §8): the client (always) and the server
//! (feature `server`).
//!
//! Routes are `/<PK>/<operation>/<rest…>` with the public key
//! percent-encoded inside its segment (`%2F` stays in the segment) and
//! read leniently (padded or not, standard or URL-safe). Unknown streams
//! and an empty `crdr` are 404, not the original's 500 (O14). `newRecords`
//! pages at [`PAGE`](crate::sync::PAGE) records (O4). Reads never modify a
//! stream (O15).
//!
//! The server holds no response whole: records and files are sized from
//! their metadata, then streamed from SQLite (values through incremental
//! blob reads) in `CHUNK`-byte pieces under a `Content-Length`, each
//! from its own read-only connection and read transaction (one snapshot,
//! no lock shared with other requests or with writers), on a blocking
//! thread. At most `Limits::max_requests` requests are served at once.

mod client;
#[cfg(feature = "server")]
mod server;

pub use client::*;
#[cfg(feature = "server")]
pub use server::*;
