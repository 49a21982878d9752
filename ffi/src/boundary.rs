//! Crossing the boundary: pointers to slices, results to status codes,
//! and panics caught before they unwind into C.

use core::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::status::{KEYWAY_ERR_BUFFER_TOO_SMALL, KEYWAY_ERR_INTERNAL, KEYWAY_ERR_NULL, KEYWAY_OK};

/// A status other than OK.
pub(crate) type Fail = c_int;

/// Runs `body`, turning its result and any panic into a status.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Fail>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => KEYWAY_OK,
        Ok(Err(status)) => status,
        Err(_) => KEYWAY_ERR_INTERNAL,
    }
}

/// An input buffer. Null is allowed for an empty one.
///
/// # Safety
/// Unless null, `ptr` must point to `len` readable bytes that stay valid
/// and unmodified for `'a`.
pub(crate) unsafe fn input<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(KEYWAY_ERR_NULL);
    }
    // SAFETY: non-null, and the caller vouches for `len` readable bytes.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// A fixed-size input, such as a key.
///
/// # Safety
/// As [`input`].
pub(crate) unsafe fn input_array<const N: usize>(
    ptr: *const u8,
    len: usize,
    wrong_length: Fail,
) -> Result<[u8; N], Fail> {
    if ptr.is_null() {
        return Err(KEYWAY_ERR_NULL);
    }
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { input(ptr, len) }?;
    bytes.try_into().map_err(|_| wrong_length)
}

/// A reference to a caller's struct or handle.
///
/// # Safety
/// Unless null, `ptr` must point to a valid `T` for `'a`.
pub(crate) unsafe fn object<'a, T>(ptr: *const T) -> Result<&'a T, Fail> {
    // SAFETY: the caller vouches for validity; null is checked by `as_ref`.
    unsafe { ptr.as_ref() }.ok_or(KEYWAY_ERR_NULL)
}

/// Where a value goes.
///
/// # Safety
/// Unless null, `ptr` must be valid for writes of a `T`.
pub(crate) unsafe fn put<T>(ptr: *mut T, value: T) -> Result<(), Fail> {
    if ptr.is_null() {
        return Err(KEYWAY_ERR_NULL);
    }
    // SAFETY: non-null and writable, as the caller vouches.
    unsafe { ptr.write(value) };
    Ok(())
}

/// Copies `bytes` to the caller's (`out`, `cap`) and its length to
/// `*out_len`; when it does not fit, only the length needed is written.
///
/// # Safety
/// `out` must be valid for `cap` writable bytes (or null with `cap` 0),
/// `out_len` valid for a write.
pub(crate) unsafe fn output(
    bytes: &[u8],
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Fail> {
    // SAFETY: forwarded from the caller.
    unsafe { put(out_len, bytes.len()) }?;
    if bytes.len() > cap {
        return Err(KEYWAY_ERR_BUFFER_TOO_SMALL);
    }
    if bytes.is_empty() {
        return Ok(());
    }
    if out.is_null() {
        return Err(KEYWAY_ERR_NULL);
    }
    // SAFETY: `out` holds `cap` ≥ `bytes.len()` writable bytes, and a
    // caller's buffer cannot overlap our own `bytes`.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    Ok(())
}

/// Copies a fixed-size result into a buffer of at least `N` bytes.
///
/// # Safety
/// `out` must be valid for `cap` writable bytes.
pub(crate) unsafe fn output_array<const N: usize>(
    bytes: &[u8; N],
    out: *mut u8,
    cap: usize,
) -> Result<(), Fail> {
    if out.is_null() {
        return Err(KEYWAY_ERR_NULL);
    }
    if cap < N {
        return Err(KEYWAY_ERR_BUFFER_TOO_SMALL);
    }
    // SAFETY: `out` holds at least N writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), out, N) };
    Ok(())
}
