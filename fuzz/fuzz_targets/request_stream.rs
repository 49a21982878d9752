//! Any bytes, cut into arbitrary chunks, fed to the TCP request reader:
//! no panic, bounded buffer, and it stops (garbage or unframeable) or
//! waits; it never yields a request it did not authenticate.
#![no_main]

use std::sync::LazyLock;

use keyway_core::Keypair;
use keyway_core::namebump::tcp_framing::{MAX_SEALED_REQUEST, SealedStream};
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Keypair> =
    LazyLock::new(|| Keypair::from_secret_bytes(&[0x42; 32]).expect("valid scalar"));

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    let mut stream = SealedStream::new();
    let mut out = [0u8; MAX_SEALED_REQUEST];
    let mut rest = &data[..];
    for cut in cuts.iter().chain(std::iter::repeat(&255u8)) {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(usize::from(*cut).clamp(1, rest.len()));
        rest = tail;
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let taken = stream.push(chunk);
            chunk = &chunk[taken..];
            match stream.next_message(&SERVER, &mut out) {
                Ok(Some(_)) => panic!("forged a request without the key"),
                Ok(None) => {}
                Err(_) => return,
            }
            assert!(stream.buffered() <= MAX_SEALED_REQUEST);
            if taken == 0 {
                return;
            }
        }
    }
});
