//! Any bytes addressed to a fixed server key: open must not panic and must
//! reject everything (forging a tag needs the shared secret). Inputs that
//! start with a valid point reach the ECDH and the MAC.
#![no_main]

use std::sync::LazyLock;

use keyway_core::Keypair;
use keyway_core::ecies;
use libfuzzer_sys::fuzz_target;

static SERVER: LazyLock<Keypair> =
    LazyLock::new(|| Keypair::from_secret_bytes(&[0x42; 32]).expect("valid scalar"));

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 2048];
    assert!(ecies::open(&SERVER, data, &mut out).is_err());
});
