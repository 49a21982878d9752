//! What a peer or a file can feed the shell's parsers: node addresses, sync
//! request bodies (a remote peer's bytes) and identity files never panic,
//! and what is valid round-trips.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_link::PeerAddress;
use keyway_link::stream_sync::StreamServer;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_parses_to_an_address_or_an_error(text in ".{0,120}") {
        if let Ok(addr) = text.parse::<PeerAddress>() {
            // What parses prints back to something that parses the same.
            let again: PeerAddress = addr.to_string().parse().unwrap();
            prop_assert_eq!(again, addr);
        }
    }

    #[test]
    fn valid_addresses_round_trip(
        host in "[a-z0-9.-]{1,30}|\\[[0-9a-f]{0,4}(:[0-9a-f]{0,4}){1,7}\\]",
        port in 1u16..,
    ) {
        let key = *Keypair::generate(&mut UnwrapErr(getrandom::SysRng)).public();
        let text = format!("{key}@{host}:{port}");
        let addr: PeerAddress = text.parse().unwrap();
        prop_assert_eq!(addr.port, port);
        prop_assert_eq!(addr.key, key);
        prop_assert_eq!(addr.to_string(), text);
    }

    #[test]
    fn any_identity_file_text_is_refused_without_panic(text in "(?s).{0,400}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, &text).unwrap();
        prop_assert!(keyway_link::identity_file::unlock(&path, b"pw").is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_sync_request_body_is_answered_or_refused(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        real_key in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.stream");
        let mut stream = keyway_drayer::Stream::create(&path).unwrap();
        stream.set("k", "obj", b"v").unwrap();
        let mut body = body;
        if real_key && body.len() >= 32 {
            body[..32].copy_from_slice(stream.public_key().as_bytes());
        }
        drop(stream);
        let server = Arc::new(StreamServer::open(&[path]).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let answer = runtime.block_on(server.handle(body.clone()));
        // Only a well-formed request for the stream served gets data.
        if answer.is_ok() {
            prop_assert_eq!(body.len(), 45);
            prop_assert!(real_key);
            prop_assert!(body[32] == 1 || body[32] == 2);
        }
    }
}
