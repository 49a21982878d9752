//! Any bytes as a link's byte stream: the 2-byte length prefixes and the
//! application frames inside must decode without panicking, and whatever
//! decodes must re-encode to the same bytes (issue 16).
#![no_main]

use keyway_core::link::frame::Frame;
use keyway_core::link::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bytes as one application frame.
    if let Ok(frame) = Frame::decode(data) {
        let mut out = vec![0u8; data.len()];
        let n = frame.encode(&mut out).expect("a decoded frame re-encodes");
        assert_eq!(&out[..n], data);
    }
    // The bytes as a stream of length-prefixed messages.
    let mut rest = data;
    for _ in 0..data.len() {
        match wire::split_frame(rest, 65_535) {
            Ok(Some((message, used))) => {
                assert_eq!(used, message.len() + 2);
                let _ = Frame::decode(message);
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
