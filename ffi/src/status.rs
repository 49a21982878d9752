//! Status codes and their messages.

use core::ffi::{c_char, c_int};

/// Success.
pub const KEYWAY_OK: c_int = 0;
/// A required pointer was null.
pub const KEYWAY_ERR_NULL: c_int = 1;
/// The output buffer is too small; `*out_len` holds the length needed.
pub const KEYWAY_ERR_BUFFER_TOO_SMALL: c_int = 2;
/// A key is not a valid key of its kind (length or curve point).
pub const KEYWAY_ERR_INVALID_KEY: c_int = 3;
/// An argument is out of range (a name or value too long, an unknown op,
/// text that is not UTF-8).
pub const KEYWAY_ERR_INVALID_INPUT: c_int = 4;
/// Input bytes are not a well-formed packet.
pub const KEYWAY_ERR_MALFORMED: c_int = 5;
/// A signature does not verify (or a packet carries none).
pub const KEYWAY_ERR_BAD_SIGNATURE: c_int = 6;
/// Sealed bytes do not open under this key (wrong key or tampered).
pub const KEYWAY_ERR_DECRYPT: c_int = 7;
/// The server could not be reached or did not answer in time.
pub const KEYWAY_ERR_NETWORK: c_int = 8;
/// The server refused a PUT: this address's quota of names is full.
pub const KEYWAY_ERR_QUOTA: c_int = 9;
/// The name belongs to another key.
pub const KEYWAY_ERR_NOT_OWNER: c_int = 10;
/// The server refused the request as expired: the clocks disagree.
pub const KEYWAY_ERR_CLOCK_SKEW: c_int = 11;
/// The server answered with an error it gives no reason for.
pub const KEYWAY_ERR_SERVER: c_int = 12;
/// A THROW_BUMP PUT would have bumped another name.
pub const KEYWAY_ERR_WOULD_BUMP: c_int = 13;
/// A bug in Keyway (a panic was caught at the boundary).
pub const KEYWAY_ERR_INTERNAL: c_int = 14;
/// A blocking call was made from a thread inside a tokio runtime (a worker,
/// a `block_on`, a `spawn_blocking` thread or under `Runtime::enter`):
/// blocking there could stall or deadlock that runtime, so nothing was
/// done. Call from a plain thread instead.
pub const KEYWAY_ERR_IN_ASYNC_CONTEXT: c_int = 15;

/// A static, NUL-terminated English description of `status`. Never null;
/// unknown codes get "unknown status". Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn keyway_error_message(status: c_int) -> *const c_char {
    let text: &'static core::ffi::CStr = match status {
        KEYWAY_OK => c"ok",
        KEYWAY_ERR_NULL => c"a required pointer is null",
        KEYWAY_ERR_BUFFER_TOO_SMALL => {
            c"the output buffer is too small (the needed length is in *out_len)"
        }
        KEYWAY_ERR_INVALID_KEY => c"not a valid key",
        KEYWAY_ERR_INVALID_INPUT => c"an argument is out of range",
        KEYWAY_ERR_MALFORMED => c"malformed packet",
        KEYWAY_ERR_BAD_SIGNATURE => c"the signature does not verify",
        KEYWAY_ERR_DECRYPT => c"cannot decrypt: wrong key or tampered bytes",
        KEYWAY_ERR_NETWORK => c"the server cannot be reached or did not answer",
        KEYWAY_ERR_QUOTA => c"rejected: this address's quota of names is full",
        KEYWAY_ERR_NOT_OWNER => c"the name belongs to another key",
        KEYWAY_ERR_CLOCK_SKEW => c"refused as expired: the server's clock disagrees",
        KEYWAY_ERR_SERVER => c"the server refused the request",
        KEYWAY_ERR_WOULD_BUMP => c"storing this would bump another name (THROW_BUMP)",
        KEYWAY_ERR_INTERNAL => c"internal error in Keyway (a bug: please report it)",
        KEYWAY_ERR_IN_ASYNC_CONTEXT => {
            c"a blocking call from a thread inside a tokio runtime: call it from a plain thread"
        }
        _ => c"unknown status",
    };
    text.as_ptr()
}
