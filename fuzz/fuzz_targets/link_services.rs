//! What an authorized peer can send a node's services over a link (issue
//! 16): message bodies into the inbox and sync request bodies into the
//! stream server (with the served stream's key spliced in, so the fuzzer
//! reaches the page and `crdr` code), and any text as a node address.
//! Nothing panics; an answer with data comes only for a well-formed request
//! of the stream served; a message is acknowledged with its own id.
#![no_main]

use std::sync::{Arc, OnceLock};

use getrandom::SysRng;
use keyway_core::PublicKey;
use keyway_core::rand_core::UnwrapErr;
use keyway_drayer::Stream;
use keyway_link::PeerAddress;
use keyway_link::messages::Inbox;
use keyway_link::stream_sync::StreamServer;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    streams: Arc<StreamServer>,
    inbox: Arc<Inbox>,
    key: [u8; 32],
    from: PublicKey,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fuzz.stream");
        let mut stream = Stream::create(&path).expect("stream");
        for i in 0..5u8 {
            stream.set(&format!("k{i}"), "obj", &[i; 40]).expect("write");
        }
        let key = stream.public_key().to_bytes();
        drop(stream);
        let streams = Arc::new(StreamServer::open(&[path]).expect("serve"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let (inbox, mut deliveries) = Inbox::new(16);
        // The application: takes and acks every message.
        runtime.spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                delivery.ack();
            }
        });
        let from = *keyway_core::Keypair::generate(&mut UnwrapErr(SysRng)).public();
        Fixture {
            runtime,
            streams,
            inbox,
            key,
            from,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<PeerAddress>();
    }
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut body = rest.to_vec();
    if which & 1 == 0 {
        if which & 2 == 0 && body.len() >= 32 {
            body[..32].copy_from_slice(&f.key);
        }
        let answer = f.runtime.block_on(f.streams.handle(body.clone()));
        if answer.is_ok() {
            assert_eq!(body.len(), 45);
            assert_eq!(body[..32], f.key);
        }
    } else {
        let answer = f.runtime.block_on(f.inbox.handle(f.from, body.clone()));
        if let Ok(ack) = answer {
            assert_eq!(ack[..], body[..16]);
        }
    }
});
