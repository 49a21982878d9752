//! sidewire application packets (signed messages to a public key) and the
//! rendezvous ranking that picks a destination's brokers (sidewire 0.1.9).

use core::ffi::{c_char, c_int};
use std::ffi::CStr;

use keyway_core::sidewire::app_packet::HEADER_LEN;
use keyway_core::sidewire::rendezvous::{Broker, Ranked, Ranking, rank};
use keyway_core::sidewire::{AppPacket, MsgType};

use crate::boundary::{guard, input, input_array, object, output, output_array, put};
use crate::keypair::{KEYWAY_PUBLIC_KEY_LEN, KeywayKeypair};
use crate::status::{
    KEYWAY_ERR_BAD_SIGNATURE, KEYWAY_ERR_BUFFER_TOO_SMALL, KEYWAY_ERR_INVALID_INPUT,
    KEYWAY_ERR_INVALID_KEY, KEYWAY_ERR_MALFORMED, KEYWAY_ERR_NULL,
};

/// Bytes of a packet before its message.
pub const KEYWAY_SIDEWIRE_HEADER_LEN: usize = 142;
const _: () = assert!(KEYWAY_SIDEWIRE_HEADER_LEN == HEADER_LEN);
/// msg_type: application data.
pub const KEYWAY_SIDEWIRE_MSG: u8 = 1;
/// msg_type: acknowledgement.
pub const KEYWAY_SIDEWIRE_ACK: u8 = 2;
/// Address family of IPv4 brokers, as the ranking hashes it.
pub const KEYWAY_AF_INET: u8 = 2;
/// Address family of IPv6 brokers, as the ranking hashes it.
pub const KEYWAY_AF_INET6: u8 = 10;
// Literals for cbindgen; the one definition is the core's (issue 13).
const _: () = assert!(KEYWAY_AF_INET == keyway_core::address_family::AF_INET);
const _: () = assert!(KEYWAY_AF_INET6 == keyway_core::address_family::AF_INET6);

/// Builds a packet of `msg` on queue `queue_id` (32 bytes) with sequence
/// number `seq_no`, `timestamp` (Unix seconds) and `msg_type`, signed by
/// `signer`; it goes to `out` (`KEYWAY_SIDEWIRE_HEADER_LEN + msg_len`
/// bytes). Thread-safe.
///
/// # Safety
/// `signer` a live handle; buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_sidewire_packet_sign(
    signer: *const KeywayKeypair,
    queue_id: *const u8,
    queue_id_len: usize,
    seq_no: u32,
    timestamp: u64,
    msg_type: u8,
    msg: *const u8,
    msg_len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handle and buffers.
        let signer = unsafe { object(signer) }?;
        // SAFETY: as above.
        let queue: [u8; 32] =
            unsafe { input_array(queue_id, queue_id_len, KEYWAY_ERR_INVALID_INPUT) }?;
        // SAFETY: as above.
        let msg = unsafe { input(msg, msg_len) }?;
        let mut packet = AppPacket::new(queue, seq_no, timestamp, MsgType::from(msg_type), msg);
        packet.sign(&signer.0);
        let mut buf = vec![0u8; packet.encoded_len()];
        let n = packet
            .encode(&mut buf)
            .map_err(|_| KEYWAY_ERR_INVALID_INPUT)?;
        // SAFETY: as above.
        unsafe { output(&buf[..n], out, cap, out_len) }
    })
}

/// Checks a packet's signature under the key it names. On success, if
/// `src_pk_out` is not null, the sender's 33-byte key goes there.
/// `KEYWAY_ERR_MALFORMED` for bytes too short to be a packet,
/// `KEYWAY_ERR_BAD_SIGNATURE` for anything that does not verify.
/// Thread-safe.
///
/// # Safety
/// `buf` valid for `len` bytes; `src_pk_out` null or valid for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_sidewire_packet_verify(
    buf: *const u8,
    len: usize,
    src_pk_out: *mut u8,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffer.
        let bytes = unsafe { input(buf, len) }?;
        let packet = AppPacket::decode(bytes).map_err(|_| KEYWAY_ERR_MALFORMED)?;
        let key = packet.verify().map_err(|_| KEYWAY_ERR_BAD_SIGNATURE)?;
        if src_pk_out.is_null() {
            return Ok(());
        }
        // SAFETY: as above.
        unsafe { output_array(key.as_bytes(), src_pk_out, cap) }
    })
}

/// Ranks `hosts` (an array of `count` NUL-terminated broker host names of
/// one address family `af`) for the destination key `dest_pk`, best
/// first, as sidewire 0.1.9 does: `order_out` receives `count` indices
/// into `hosts`. A sender publishes to, and a node subscribes at, the
/// first `keyway_sidewire_set_size(count)`. Thread-safe.
///
/// # Safety
/// `hosts` valid for `count` pointers to NUL-terminated strings;
/// `dest_pk` for `dest_pk_len` bytes; `order_out` for `cap` `size_t`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_sidewire_rank(
    af: u8,
    dest_pk: *const u8,
    dest_pk_len: usize,
    hosts: *const *const c_char,
    count: usize,
    order_out: *mut usize,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the key buffer.
        let dest: [u8; KEYWAY_PUBLIC_KEY_LEN] =
            unsafe { input_array(dest_pk, dest_pk_len, KEYWAY_ERR_INVALID_KEY) }?;
        if count > 0 && (hosts.is_null() || order_out.is_null()) {
            return Err(KEYWAY_ERR_NULL);
        }
        if cap < count {
            return Err(KEYWAY_ERR_BUFFER_TOO_SMALL);
        }
        let mut names = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: `hosts` holds `count` pointers, as the caller vouches.
            let host = unsafe { *hosts.add(i) };
            if host.is_null() {
                return Err(KEYWAY_ERR_NULL);
            }
            // SAFETY: non-null and NUL-terminated, as the caller vouches.
            let host = unsafe { CStr::from_ptr(host) }
                .to_str()
                .map_err(|_| KEYWAY_ERR_INVALID_INPUT)?;
            names.push(Broker { host, weight: 1.0 });
        }
        let mut scratch = vec![Ranked::default(); count];
        let ranked = rank(af, &dest, &names, Ranking::Compatible, &mut scratch);
        for (i, r) in ranked.iter().enumerate() {
            // SAFETY: i < count ≤ cap, within the caller's buffer.
            unsafe { put(order_out.add(i), r.index) }?;
        }
        Ok(())
    })
}

/// How many of a family's `count` top-ranked brokers a message goes to
/// (`min(3, ⌊log2 count⌋)`, at least 1 for a non-empty family).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn keyway_sidewire_set_size(count: usize) -> usize {
    keyway_core::sidewire::rendezvous::set_size(count)
}
