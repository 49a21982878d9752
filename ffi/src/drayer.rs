//! Drayer record signatures: Ed25519 over the original's 136-byte signing
//! string, with BLAKE2b-256 hashes of key, value and type (Drayer, 2019).

use core::ffi::c_int;

use keyway_core::drayer::{Meta, SigningKey, VerifyingKey, hash};

use crate::boundary::{Fail, guard, input, input_array, object, output_array};
use crate::status::{KEYWAY_ERR_BAD_SIGNATURE, KEYWAY_ERR_INVALID_INPUT, KEYWAY_ERR_INVALID_KEY};

/// Bytes of a stream's Ed25519 secret seed.
pub const KEYWAY_DRAYER_SEED_LEN: usize = 32;
/// Bytes of a stream's public key.
pub const KEYWAY_DRAYER_PUBLIC_KEY_LEN: usize = 32;
/// Bytes of a record's signature.
pub const KEYWAY_DRAYER_SIGNATURE_LEN: usize = 64;

/// The signed fields of a record. `key`, `type` and `value` are hashed;
/// the pointers are borrowed for the call only.
#[repr(C)]
#[derive(Debug)]
pub struct KeywayDrayerRecord {
    pub id: u64,
    pub timestamp: i64,
    pub modified: i64,
    pub prev: u64,
    pub prevchange: i64,
    pub key: *const u8,
    pub key_len: usize,
    pub type_: *const u8,
    pub type_len: usize,
    pub value: *const u8,
    pub value_len: usize,
}

/// # Safety
/// `record` valid, its pointers valid for their lengths.
unsafe fn meta(record: *const KeywayDrayerRecord) -> Result<Meta, Fail> {
    // SAFETY: the caller vouches for the struct and its buffers.
    let record = unsafe { object(record) }?;
    // SAFETY: as above.
    let (key, kind, value) = unsafe {
        (
            input(record.key, record.key_len)?,
            input(record.type_, record.type_len)?,
            input(record.value, record.value_len)?,
        )
    };
    let text = |b: &[u8]| core::str::from_utf8(b).map(str::to_owned);
    let (key, kind) = (
        text(key).map_err(|_| KEYWAY_ERR_INVALID_INPUT)?,
        text(kind).map_err(|_| KEYWAY_ERR_INVALID_INPUT)?,
    );
    let meta = Meta::new(
        record.id,
        record.timestamp,
        record.modified,
        record.prev,
        record.prevchange,
        &key,
        &kind,
        hash(value),
    );
    meta.check_ranges().map_err(|_| KEYWAY_ERR_INVALID_INPUT)?;
    Ok(meta)
}

/// The 32-byte public key of a 32-byte secret seed. Thread-safe.
///
/// # Safety
/// Buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_drayer_public_key(
    seed: *const u8,
    seed_len: usize,
    out: *mut u8,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffers.
        let seed: [u8; 32] = unsafe { input_array(seed, seed_len, KEYWAY_ERR_INVALID_KEY) }?;
        let public = SigningKey::from_bytes(&seed).verifying_key();
        // SAFETY: as above.
        unsafe { output_array(public.as_bytes(), out, cap) }
    })
}

/// Signs `record` with the stream's secret seed; the 64-byte signature
/// goes to `sig_out`. Ids and pointers out of range (over 2^63 − 1, or not
/// pointing backwards) are `KEYWAY_ERR_INVALID_INPUT`; key and type must
/// be UTF-8. Thread-safe.
///
/// # Safety
/// `record` valid; buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_drayer_record_sign(
    seed: *const u8,
    seed_len: usize,
    record: *const KeywayDrayerRecord,
    sig_out: *mut u8,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffers and the record.
        let seed: [u8; 32] = unsafe { input_array(seed, seed_len, KEYWAY_ERR_INVALID_KEY) }?;
        // SAFETY: as above.
        let mut meta = unsafe { meta(record) }?;
        meta.sign(&SigningKey::from_bytes(&seed));
        // SAFETY: as above.
        unsafe { output_array(&meta.signature, sig_out, cap) }
    })
}

/// Checks `sig` (64 bytes) on `record` under the stream's 32-byte public
/// key: `KEYWAY_OK` or `KEYWAY_ERR_BAD_SIGNATURE`. Thread-safe.
///
/// # Safety
/// `record` valid; buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_drayer_record_verify(
    public_key: *const u8,
    public_key_len: usize,
    record: *const KeywayDrayerRecord,
    sig: *const u8,
    sig_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffers and the record.
        let public: [u8; 32] =
            unsafe { input_array(public_key, public_key_len, KEYWAY_ERR_INVALID_KEY) }?;
        let public = VerifyingKey::from_bytes(&public).map_err(|_| KEYWAY_ERR_INVALID_KEY)?;
        // SAFETY: as above.
        let signature: [u8; 64] = unsafe { input_array(sig, sig_len, KEYWAY_ERR_BAD_SIGNATURE) }?;
        // SAFETY: as above.
        let mut meta = unsafe { meta(record) }?;
        meta.signature = signature;
        meta.verify(&public).map_err(|_| KEYWAY_ERR_BAD_SIGNATURE)
    })
}
