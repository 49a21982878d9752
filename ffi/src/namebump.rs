//! namebump packets: build and sign a request, seal it to the server's key,
//! open a sealed packet and parse and verify it (spec §2–§3 of namebump
//! 0.0.16; the bytes are the reference's).

use core::ffi::c_int;

use keyway_core::PublicKey;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{EncodeError, Op, Packet};
use keyway_core::rand_core::UnwrapErr;

use crate::boundary::{Fail, guard, input, input_array, object, output, put};
use crate::keypair::{KEYWAY_PUBLIC_KEY_LEN, KeywayKeypair};
use crate::status::{
    KEYWAY_ERR_BAD_SIGNATURE, KEYWAY_ERR_DECRYPT, KEYWAY_ERR_INVALID_INPUT, KEYWAY_ERR_INVALID_KEY,
    KEYWAY_ERR_MALFORMED, KEYWAY_ERR_NULL,
};

/// op: read a name.
pub const KEYWAY_NAMEBUMP_OP_GET: u8 = 0;
/// op: claim or update a name.
pub const KEYWAY_NAMEBUMP_OP_PUT: u8 = 1;
/// op: delete a name.
pub const KEYWAY_NAMEBUMP_OP_DEL: u8 = 2;
/// op: the server's error reply.
pub const KEYWAY_NAMEBUMP_OP_ERROR: u8 = 3;
/// op: the quota of the requesting address.
pub const KEYWAY_NAMEBUMP_OP_USAGE: u8 = 4;
/// behavior: fail at quota.
pub const KEYWAY_NAMEBUMP_DONT_BUMP: u8 = 0;
/// behavior: bump at quota (the default).
pub const KEYWAY_NAMEBUMP_DO_BUMP: u8 = 1;
/// behavior: report that a bump would happen.
pub const KEYWAY_NAMEBUMP_THROW_BUMP: u8 = 2;
/// Longest name, in bytes.
pub const KEYWAY_NAMEBUMP_MAX_NAME: usize = 50;
/// Longest value, in bytes.
pub const KEYWAY_NAMEBUMP_MAX_VALUE: usize = 1024;
/// Longest plaintext packet, in bytes (a buffer this big always fits).
pub const KEYWAY_NAMEBUMP_MAX_PACKET: usize = 1230;
/// Sealing a plaintext of `n` bytes gives at most
/// `n + KEYWAY_NAMEBUMP_SEAL_OVERHEAD` bytes (key, IV, tag and padding).
pub const KEYWAY_NAMEBUMP_SEAL_OVERHEAD: usize = 97;

// Literals for the header; the core's values are the truth.
const _: () = assert!(KEYWAY_NAMEBUMP_MAX_PACKET == MAX_PACKET_LEN);
// Padding adds 1–16 bytes: the most at a multiple of the block.
const _: () = assert!(ecies::sealed_len(0) == KEYWAY_NAMEBUMP_SEAL_OVERHEAD);
const _: () = assert!(ecies::sealed_len(1024) == 1024 + KEYWAY_NAMEBUMP_SEAL_OVERHEAD);

/// A request to build. Pointers are borrowed for the call only.
#[repr(C)]
#[derive(Debug)]
pub struct KeywayNamebumpRequest {
    /// One of `KEYWAY_NAMEBUMP_OP_*`.
    pub op: u8,
    /// Request id, echoed in the reply (0 is replaced by a random one).
    pub pkid: u32,
    /// Request time, Unix seconds.
    pub updated: f64,
    /// Seconds the request stays valid (the server caps it at 60).
    pub ttl: f64,
    /// One of `KEYWAY_NAMEBUMP_*_BUMP`.
    pub behavior: u8,
    pub name: *const u8,
    pub name_len: usize,
    pub value: *const u8,
    pub value_len: usize,
    /// 33 bytes the reply is sealed to, or null for none.
    pub reply_pk: *const u8,
}

/// A parsed packet. `name` and `value` point into the parsed buffer and
/// are valid as long as it is.
#[repr(C)]
#[derive(Debug)]
pub struct KeywayNamebumpPacket {
    pub op: u8,
    pub pkid: u32,
    pub behavior: u8,
    pub updated: f64,
    pub ttl: f64,
    pub name: *const u8,
    pub name_len: usize,
    pub value: *const u8,
    pub value_len: usize,
    pub has_reply_pk: bool,
    pub reply_pk: [u8; 33],
    pub has_vkc: bool,
    pub vkc: [u8; 33],
    pub has_sig: bool,
    pub sig: [u8; 64],
}

fn encode_error(_: EncodeError) -> Fail {
    KEYWAY_ERR_INVALID_INPUT
}

/// Builds the plaintext packet of `request`, signed by `signer` (its key
/// becomes the packet's vkc). `signer` may be null for a GET, which the
/// reference sends unsigned. Thread-safe.
///
/// # Safety
/// `request` must point to a valid struct whose pointers are valid for
/// their lengths; `signer` null or a live handle; `out` valid for `cap`
/// bytes; `out_len` for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_request(
    signer: *const KeywayKeypair,
    request: *const KeywayNamebumpRequest,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the struct and its pointers.
        let request = unsafe { object(request) }?;
        // SAFETY: as above.
        let name = unsafe { input(request.name, request.name_len) }?;
        // SAFETY: as above.
        let value = unsafe { input(request.value, request.value_len) }?;
        let reply_pk = if request.reply_pk.is_null() {
            None
        } else {
            // SAFETY: non-null; the caller vouches for 33 bytes.
            let key: [u8; KEYWAY_PUBLIC_KEY_LEN] = unsafe {
                input_array(
                    request.reply_pk,
                    KEYWAY_PUBLIC_KEY_LEN,
                    KEYWAY_ERR_INVALID_KEY,
                )
            }?;
            Some(key)
        };
        let op = match request.op {
            0..=4 => Op::from(request.op),
            _ => return Err(KEYWAY_ERR_INVALID_INPUT),
        };
        if !request.updated.is_finite() || !request.ttl.is_finite() {
            return Err(KEYWAY_ERR_INVALID_INPUT);
        }
        let pkid = match request.pkid {
            0 => keyway_namebump::client::random_pkid(),
            pkid => pkid,
        };
        let mut packet = Packet::new(op, pkid, request.updated, name, value);
        packet.ttl = request.ttl;
        packet.behavior = request.behavior;
        packet.reply_pk = reply_pk;
        if signer.is_null() {
            if op != Op::Get {
                return Err(KEYWAY_ERR_NULL);
            }
            packet.vkc = reply_pk;
        } else {
            // SAFETY: the caller vouches for the handle.
            let signer = unsafe { object(signer) }?;
            packet.sign(&signer.0).map_err(encode_error)?;
        }
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = packet.encode(&mut buf).map_err(encode_error)?;
        // SAFETY: the caller vouches for the output buffer.
        unsafe { output(&buf[..n], out, cap, out_len) }
    })
}

/// Seals `plaintext` to the server's 33-byte public key (aionetiface ECIES:
/// a fresh ephemeral key and IV each call). Thread-safe.
///
/// # Safety
/// Buffers valid for their lengths; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_seal(
    server_pk: *const u8,
    server_pk_len: usize,
    plaintext: *const u8,
    plaintext_len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for every buffer.
        let key: [u8; KEYWAY_PUBLIC_KEY_LEN] =
            unsafe { input_array(server_pk, server_pk_len, KEYWAY_ERR_INVALID_KEY) }?;
        let key = PublicKey::from_bytes(&key).map_err(|_| KEYWAY_ERR_INVALID_KEY)?;
        // SAFETY: as above.
        let plaintext = unsafe { input(plaintext, plaintext_len) }?;
        if plaintext.len() > MAX_PACKET_LEN {
            return Err(KEYWAY_ERR_INVALID_INPUT);
        }
        let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
        let n = ecies::seal(
            &key,
            plaintext,
            &mut UnwrapErr(getrandom::SysRng),
            &mut sealed,
        )
        .map_err(|_| KEYWAY_ERR_INVALID_INPUT)?;
        // SAFETY: as above.
        unsafe { output(&sealed[..n], out, cap, out_len) }
    })
}

/// Opens bytes sealed to `receiver`'s public key: the plaintext goes to
/// `out` (it is never longer than the sealed bytes). Thread-safe.
///
/// # Safety
/// `receiver` a live handle; buffers valid for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_open(
    receiver: *const KeywayKeypair,
    sealed: *const u8,
    sealed_len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the handle and buffers.
        let receiver = unsafe { object(receiver) }?;
        // SAFETY: as above.
        let sealed = unsafe { input(sealed, sealed_len) }?;
        let mut plain = vec![0u8; sealed.len()];
        let plaintext =
            ecies::open(&receiver.0, sealed, &mut plain).map_err(|_| KEYWAY_ERR_DECRYPT)?;
        // SAFETY: as above.
        unsafe { output(plaintext, out, cap, out_len) }
    })
}

/// Parses a plaintext packet into `*out` (name and value point into
/// `buf`). Strict: lengths over the limits, a partial key or a signature
/// of the wrong length are `KEYWAY_ERR_MALFORMED`. Thread-safe.
///
/// # Safety
/// `buf` valid for `len` bytes (and for as long as `*out` is used); `out`
/// valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_packet_parse(
    buf: *const u8,
    len: usize,
    out: *mut KeywayNamebumpPacket,
) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffer.
        let bytes = unsafe { input(buf, len) }?;
        let packet = Packet::decode(bytes).map_err(|_| KEYWAY_ERR_MALFORMED)?;
        let parsed = KeywayNamebumpPacket {
            op: packet.op.into(),
            pkid: packet.pkid,
            behavior: packet.behavior,
            updated: packet.updated,
            ttl: packet.ttl,
            name: packet.name.as_ptr(),
            name_len: packet.name.len(),
            value: packet.value.as_ptr(),
            value_len: packet.value.len(),
            has_reply_pk: packet.reply_pk.is_some(),
            reply_pk: packet.reply_pk.unwrap_or([0; 33]),
            has_vkc: packet.vkc.is_some(),
            vkc: packet.vkc.unwrap_or([0; 33]),
            has_sig: packet.sig.is_some(),
            sig: packet.sig.unwrap_or([0; 64]),
        };
        // SAFETY: the caller vouches for `out`.
        unsafe { put(out, parsed) }
    })
}

/// Checks that a plaintext packet is signed by the key it carries (its
/// vkc): `KEYWAY_OK`, `KEYWAY_ERR_BAD_SIGNATURE` (also for an unsigned
/// packet) or `KEYWAY_ERR_MALFORMED`. Thread-safe.
///
/// # Safety
/// `buf` valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn keyway_namebump_packet_verify(buf: *const u8, len: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller vouches for the buffer.
        let bytes = unsafe { input(buf, len) }?;
        let packet = Packet::decode(bytes).map_err(|_| KEYWAY_ERR_MALFORMED)?;
        packet
            .verify_self_signed()
            .map(drop)
            .map_err(|_| KEYWAY_ERR_BAD_SIGNATURE)
    })
}
