//! Keyway's C ABI. The header is `include/keyway.h` (cbindgen, committed;
//! a test fails when it is stale).
//!
//! Conventions, for every function:
//! - One `keyway_` prefix; opaque handles (`KeywayKeypair`,
//!   `KeywayNamebumpClient`) made by `*_new`/`*_generate` functions and
//!   released by their `*_free`.
//! - The return value is a status: `KEYWAY_OK` (0) or a `KEYWAY_ERR_*`
//!   code; `keyway_error_message` names it.
//! - Output goes to caller-provided buffers given as (pointer, capacity);
//!   the length written goes to `*out_len`. A buffer that is too small
//!   gives `KEYWAY_ERR_BUFFER_TOO_SMALL` with the needed length in
//!   `*out_len`, and nothing else written.
//! - A null pointer where one is required is `KEYWAY_ERR_NULL`; a null
//!   input pointer with length 0 is an empty input.
//! - No panic crosses the boundary: one would be `KEYWAY_ERR_INTERNAL`.
//!   Nothing aborts the process: the blocking client called from a thread
//!   inside a tokio runtime (where `block_on` panics) returns
//!   `KEYWAY_ERR_IN_ASYNC_CONTEXT` without trying.
//! - Thread safety is stated on each function.

// The boundary turns panics into `KEYWAY_ERR_INTERNAL` by unwinding to
// `catch_unwind`; with panic = "abort" a bug would end the C program.
#[cfg(panic = "abort")]
compile_error!(
    "keyway-ffi must be built with panic = \"unwind\": its boundary catches panics and returns KEYWAY_ERR_INTERNAL"
);

mod boundary;
pub mod drayer;
pub mod keypair;
pub mod namebump;
pub mod namebump_client;
pub mod sidewire;
pub mod status;

pub use status::*;
