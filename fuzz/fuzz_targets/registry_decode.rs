//! Any bytes as a registry write request (a link request body, and a
//! record in the registry's stream), as a write reply and as an info
//! answer: decoding must not panic, and whatever decodes must re-encode to
//! the same bytes (issue 17).
#![no_main]

use keyway_core::registry::info::RegistryInfo;
use keyway_core::registry::reply::{MAX_REPLY_LEN, WriteReply};
use keyway_core::registry::request::{MAX_REQUEST_LEN, SignedRequest};
use keyway_core::registry::username::Username;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SignedRequest::decode(data) {
        let mut out = [0u8; MAX_REQUEST_LEN];
        let n = request
            .encode(&mut out)
            .expect("a decoded request re-encodes");
        assert_eq!(&out[..n], data);
        let _ = request.verify();
    }
    if let Ok(reply) = WriteReply::decode(data) {
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = reply.encode(&mut out).expect("a decoded reply re-encodes");
        assert_eq!(&out[..n], data);
    }
    if let Ok(info) = RegistryInfo::decode(data) {
        assert_eq!(&info.encode()[..], data);
    }
    if let Ok(text) = core::str::from_utf8(data)
        && let Ok(name) = Username::fold(text)
    {
        assert_eq!(Username::fold(name.as_str()), Ok(name));
    }
});
