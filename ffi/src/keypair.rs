//! secp256k1 keypairs: the identity of namebump owners and sidewire peers.

use core::ffi::c_int;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;

use crate::boundary::{guard, input_array, object, output_array, put};
use crate::status::{KEYWAY_ERR_INVALID_KEY, KEYWAY_ERR_NULL};

/// Bytes of a compressed public key.
pub const KEYWAY_PUBLIC_KEY_LEN: usize = 33;
/// Bytes of a secret key.
pub const KEYWAY_SECRET_KEY_LEN: usize = 32;

/// A secp256k1 keypair (opaque). Immutable once made: any number of
/// threads may use one at a time; free it once, when none does.
#[derive(Debug)]
pub struct KeywayKeypair(pub(crate) Keypair);

/// A fresh random keypair from the operating system's generator, stored in
/// `*out`; free it with `keyway_keypair_free`. Thread-safe.
///
/// # Safety
/// `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_keypair_generate(out: *mut *mut KeywayKeypair) -> c_int {
    guard(|| {
        let keypair = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
        let handle = Box::into_raw(Box::new(KeywayKeypair(keypair)));
        // SAFETY: the caller vouches for `out`.
        unsafe { put(out, handle) }.inspect_err(|_| {
            // SAFETY: made just above and never shared.
            drop(unsafe { Box::from_raw(handle) });
        })
    })
}

/// The keypair of a 32-byte secret key (big-endian scalar, as python-ecdsa
/// `to_string()` gives it), stored in `*out`. Thread-safe.
///
/// # Safety
/// `secret` must point to `secret_len` readable bytes; `out` valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_keypair_from_secret(
    secret: *const u8,
    secret_len: usize,
    out: *mut *mut KeywayKeypair,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(KEYWAY_ERR_NULL);
        }
        // SAFETY: the caller vouches for the buffer.
        let bytes: [u8; KEYWAY_SECRET_KEY_LEN] =
            unsafe { input_array(secret, secret_len, KEYWAY_ERR_INVALID_KEY) }?;
        let keypair = Keypair::from_secret_bytes(&bytes).map_err(|_| KEYWAY_ERR_INVALID_KEY)?;
        // SAFETY: checked non-null above; the caller vouches it is writable.
        unsafe { put(out, Box::into_raw(Box::new(KeywayKeypair(keypair)))) }
    })
}

/// Writes the 33-byte compressed public key to `out` (capacity `cap`).
/// Thread-safe.
///
/// # Safety
/// `keypair` must be a live handle; `out` valid for `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_keypair_public(
    keypair: *const KeywayKeypair,
    out: *mut u8,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handle and the buffer.
        let keypair = unsafe { object(keypair) }?;
        // SAFETY: as above.
        unsafe { output_array(keypair.0.public().as_bytes(), out, cap) }
    })
}

/// Writes the 32-byte secret key to `out` (capacity `cap`). Thread-safe.
///
/// # Safety
/// As `keyway_keypair_public`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_keypair_secret(
    keypair: *const KeywayKeypair,
    out: *mut u8,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handle and the buffer.
        let keypair = unsafe { object(keypair) }?;
        // SAFETY: as above.
        unsafe { output_array(&keypair.0.secret_bytes(), out, cap) }
    })
}

/// Releases a keypair. Null is ignored. Not concurrently with any other
/// use of the same handle.
///
/// # Safety
/// `keypair` must be null or a handle from this library, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_keypair_free(keypair: *mut KeywayKeypair) {
    if !keypair.is_null() {
        // SAFETY: made by Box::into_raw here, and the caller frees it once.
        drop(unsafe { Box::from_raw(keypair) });
    }
}
