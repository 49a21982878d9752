//! The ABI's promises checked from Rust: null pointers, wrong lengths,
//! short buffers and malformed or truncated input give their status codes,
//! never a crash, and nothing is written where the contract says not.

use std::ffi::CStr;
use std::ptr;

use keyway_ffi::drayer::*;
use keyway_ffi::keypair::*;
use keyway_ffi::namebump::*;
use keyway_ffi::sidewire::*;
use keyway_ffi::*;

fn keypair() -> *mut KeywayKeypair {
    let mut kp = ptr::null_mut();
    // SAFETY: `kp` is a valid place for the handle.
    assert_eq!(unsafe { keyway_keypair_generate(&mut kp) }, KEYWAY_OK);
    kp
}

fn signed_put(kp: *const KeywayKeypair) -> Vec<u8> {
    let request = KeywayNamebumpRequest {
        op: KEYWAY_NAMEBUMP_OP_PUT,
        pkid: 7,
        updated: 1_700_000_000.0,
        ttl: 10.0,
        behavior: KEYWAY_NAMEBUMP_DO_BUMP,
        name: b"name".as_ptr(),
        name_len: 4,
        value: b"value".as_ptr(),
        value_len: 5,
        reply_pk: ptr::null(),
    };
    let mut out = vec![0u8; KEYWAY_NAMEBUMP_MAX_PACKET];
    let mut len = 0;
    // SAFETY: all pointers valid for their lengths.
    let status =
        unsafe { keyway_namebump_request(kp, &request, out.as_mut_ptr(), out.len(), &mut len) };
    assert_eq!(status, KEYWAY_OK);
    out.truncate(len);
    out
}

#[test]
fn every_status_has_a_message() {
    for status in 0..=KEYWAY_ERR_IN_ASYNC_CONTEXT {
        // SAFETY: the function returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(keyway_error_message(status)) };
        assert_ne!(text.to_str().unwrap_or(""), "unknown status", "{status}");
    }
    // SAFETY: as above.
    let unknown = unsafe { CStr::from_ptr(keyway_error_message(999)) };
    assert_eq!(unknown.to_str().ok(), Some("unknown status"));
}

#[test]
fn nulls_and_wrong_lengths_are_refused() {
    // SAFETY: every call below passes null or short buffers on purpose;
    // the functions must check them.
    unsafe {
        assert_eq!(keyway_keypair_generate(ptr::null_mut()), KEYWAY_ERR_NULL);
        let mut kp = ptr::null_mut();
        assert_eq!(
            keyway_keypair_from_secret([1u8; 31].as_ptr(), 31, &mut kp),
            KEYWAY_ERR_INVALID_KEY
        );
        assert_eq!(
            keyway_keypair_from_secret([0u8; 32].as_ptr(), 32, &mut kp),
            KEYWAY_ERR_INVALID_KEY,
            "zero is not a secret key"
        );
        assert!(kp.is_null(), "nothing stored on failure");
        let mut out = [0u8; 33];
        assert_eq!(
            keyway_keypair_public(ptr::null(), out.as_mut_ptr(), 33),
            KEYWAY_ERR_NULL
        );
        let kp = keypair();
        assert_eq!(
            keyway_keypair_public(kp, out.as_mut_ptr(), 32),
            KEYWAY_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(out, [0u8; 33], "nothing written to a short buffer");
        let mut len = 0;
        assert_eq!(
            keyway_namebump_seal(
                [5u8; 33].as_ptr(),
                33,
                b"x".as_ptr(),
                1,
                out.as_mut_ptr(),
                33,
                &mut len
            ),
            KEYWAY_ERR_INVALID_KEY,
            "not a curve point"
        );
        assert_eq!(
            keyway_namebump_request(kp, ptr::null(), out.as_mut_ptr(), 33, &mut len),
            KEYWAY_ERR_NULL
        );
        let long_name = [b'x'; 51];
        let request = KeywayNamebumpRequest {
            op: KEYWAY_NAMEBUMP_OP_PUT,
            pkid: 1,
            updated: 1.0,
            ttl: 10.0,
            behavior: 1,
            name: long_name.as_ptr(),
            name_len: long_name.len(),
            value: ptr::null(),
            value_len: 0,
            reply_pk: ptr::null(),
        };
        let mut buf = [0u8; KEYWAY_NAMEBUMP_MAX_PACKET];
        assert_eq!(
            keyway_namebump_request(kp, &request, buf.as_mut_ptr(), buf.len(), &mut len),
            KEYWAY_ERR_INVALID_INPUT,
            "a 51-byte name"
        );
        let unsigned_put = KeywayNamebumpRequest {
            name_len: 4,
            ..request
        };
        assert_eq!(
            keyway_namebump_request(
                ptr::null(),
                &unsigned_put,
                buf.as_mut_ptr(),
                buf.len(),
                &mut len
            ),
            KEYWAY_ERR_NULL,
            "a PUT needs a signer"
        );
        let hosts = [c"a".as_ptr(), ptr::null()];
        let mut order = [0usize; 2];
        assert_eq!(
            keyway_sidewire_rank(
                2,
                [3u8; 33].as_ptr(),
                33,
                hosts.as_ptr(),
                2,
                order.as_mut_ptr(),
                2
            ),
            KEYWAY_ERR_NULL
        );
        assert_eq!(
            keyway_sidewire_rank(
                2,
                [3u8; 33].as_ptr(),
                33,
                hosts.as_ptr(),
                2,
                order.as_mut_ptr(),
                1
            ),
            KEYWAY_ERR_BUFFER_TOO_SMALL
        );
        keyway_keypair_free(kp);
        keyway_keypair_free(ptr::null_mut());
    }
}

#[test]
fn truncated_and_altered_packets_are_malformed_or_unsigned_never_a_crash() {
    let kp = keypair();
    let packet = signed_put(kp);
    // SAFETY: valid buffers throughout; `parsed` is a valid place.
    unsafe {
        assert_eq!(
            keyway_namebump_packet_verify(packet.as_ptr(), packet.len()),
            KEYWAY_OK
        );
        for len in 0..packet.len() {
            let mut parsed = std::mem::MaybeUninit::<KeywayNamebumpPacket>::uninit();
            let status = keyway_namebump_packet_parse(packet.as_ptr(), len, parsed.as_mut_ptr());
            let verified = keyway_namebump_packet_verify(packet.as_ptr(), len);
            assert!(
                matches!(status, KEYWAY_OK | KEYWAY_ERR_MALFORMED),
                "{len}: {status}"
            );
            // A prefix is never a validly signed packet.
            assert!(
                matches!(verified, KEYWAY_ERR_MALFORMED | KEYWAY_ERR_BAD_SIGNATURE),
                "{len}: {verified}"
            );
        }
        for i in 0..packet.len() {
            let mut altered = packet.clone();
            altered[i] ^= 0x40;
            let status = keyway_namebump_packet_verify(altered.as_ptr(), altered.len());
            assert_ne!(status, KEYWAY_OK, "byte {i} altered still verifies");
        }
        let mut sealed = vec![0u8; packet.len() + KEYWAY_NAMEBUMP_SEAL_OVERHEAD];
        let mut public = [0u8; 33];
        let mut len = 0;
        assert_eq!(
            keyway_keypair_public(kp, public.as_mut_ptr(), 33),
            KEYWAY_OK
        );
        assert_eq!(
            keyway_namebump_seal(
                public.as_ptr(),
                33,
                packet.as_ptr(),
                packet.len(),
                sealed.as_mut_ptr(),
                sealed.len(),
                &mut len
            ),
            KEYWAY_OK
        );
        sealed.truncate(len);
        let mut opened = vec![0u8; sealed.len()];
        for cut in [0, 1, 80, sealed.len() - 1] {
            let status = keyway_namebump_open(
                kp,
                sealed.as_ptr(),
                cut,
                opened.as_mut_ptr(),
                opened.len(),
                &mut len,
            );
            assert_eq!(status, KEYWAY_ERR_DECRYPT, "cut at {cut}");
        }
        keyway_keypair_free(kp);
    }
}

#[test]
fn drayer_records_out_of_range_are_refused() {
    let record = KeywayDrayerRecord {
        id: 1,
        timestamp: 0,
        modified: 5,
        prev: 1, // must point backwards
        prevchange: 0,
        key: b"k".as_ptr(),
        key_len: 1,
        type_: b"obj".as_ptr(),
        type_len: 3,
        value: ptr::null(),
        value_len: 0,
    };
    let mut sig = [0u8; 64];
    // SAFETY: valid buffers.
    let status =
        unsafe { keyway_drayer_record_sign([1u8; 32].as_ptr(), 32, &record, sig.as_mut_ptr(), 64) };
    assert_eq!(status, KEYWAY_ERR_INVALID_INPUT);
    let bad_utf8 = KeywayDrayerRecord {
        prev: 0,
        key: [0xffu8].as_ptr(),
        ..record
    };
    // SAFETY: valid buffers.
    let status = unsafe {
        keyway_drayer_record_sign([1u8; 32].as_ptr(), 32, &bad_utf8, sig.as_mut_ptr(), 64)
    };
    assert_eq!(status, KEYWAY_ERR_INVALID_INPUT);
}
