//! The firmware image whose size issue 14 budgets: the firmware side of
//! the namebump client and the sidewire node with three links, built for
//! thumbv7em-none-eabihf. Never run: its network is opaque memory
//! (`black_box`), so the compiler must keep every path a real network
//! could take, and only code size and `.data`/`.bss` are read from it.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::hint::black_box;
use core::panic::PanicInfo;

use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::{Keypair, PublicKey};
use keyway_embassy_budget::{Firmware, Network};

/// The state's sizes on this target, read from the image by
/// tests/bench-embassy-budget.sh (they stay in `.rodata`).
#[used]
static STATE_SIZES: [u32; 5] = keyway_embassy_budget::STATE_SIZES;

/// Bytes from nowhere the compiler can see.
struct Opaque;

impl Network for Opaque {
    fn namebump(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        black_box(request);
        black_box(&mut *reply);
        black_box(reply.len())
    }

    fn mqtt(&mut self, link: u64, written: &[u8], reply: &mut [u8]) -> usize {
        black_box((link, written));
        black_box(&mut *reply);
        black_box(reply.len())
    }
}

/// A device's hardware RNG stands here.
struct HardwareRng;

impl TryRng for HardwareRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(black_box(0x1234_5678))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(black_box(0x1234_5678_9abc_def0))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        black_box(dst);
        Ok(())
    }
}

impl TryCryptoRng for HardwareRng {}

// The linker's entry point must keep its name; nothing unsafe runs here.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let mut rng = HardwareRng;
    let mut net = Opaque;
    let mut fw = Firmware::new(Keypair::generate(&mut rng), &mut rng);
    let unix = black_box(1_765_000_000u64);
    loop {
        let Ok(server) = PublicKey::from_bytes(&black_box([2u8; 33])) else {
            continue;
        };
        let _ = black_box(fw.put(
            &mut net,
            &mut rng,
            server,
            b"device",
            b"10.77.0.2",
            unix as f64,
        ));
        let _ = black_box(fw.connect(&mut net, &mut rng, unix));
        let peer = black_box([3u8; 33]);
        let _ = black_box(fw.exchange_messages(&mut net, &mut rng, &peer, b"hello", unix));
    }
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
