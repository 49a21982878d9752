//! keyway-embassy's namebump client and sidewire node (3 links) on
//! embassy-net, in a thumbv7em-none-eabihf image: what issue 14 budgets,
//! with embassy-net's own stack and sockets. Never run: the Ethernet
//! driver, the clocks and the RNG read opaque memory (`black_box`), so
//! every path a real device could take stays linked; only code size and
//! `.data`/`.bss` are read from it. As an embassy firmware does, the
//! memory whose size is fixed at build time is in statics
//! (`ConstStaticCell`, built by the compiler: no start-up copy on the
//! stack): the node's tables, the links' TCP buffers, embassy-net's
//! resources. The futures are polled by hand (no executor), so their
//! state lives in `_start`'s frame, not in a task pool in `.bss`: the
//! deepest stack from `_start` counts it.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::future::Future;
use core::hint::black_box;
use core::panic::PanicInfo;
use core::pin::pin;
use core::task::{Context, Waker};
use core::time::Duration;

use embassy_net::{Config, IpEndpoint, Ipv4Address, StackResources};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use keyway_core::mqtt::SessionConfig;
use keyway_core::namebump::client::Behavior;
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::{Node, NodeConfig, NodeTables, PoolSlice};
use keyway_core::sidewire::rendezvous::Ranking;
use keyway_core::sidewire::{Peer, Slot};
use keyway_core::time::{Clock, Instant};
use keyway_core::{Keypair, PublicKey};
use keyway_embassy::namebump::Client;
use keyway_embassy::sidewire::{Sidewire, SocketMemory};
use keyway_embassy_budget::{
    ACK_SOURCES, ACK_WALKS, BROKERS_TRACKED, LINK_BUFFER, LINKS, MAX_MESSAGE, OUTBOX, POOL, QUEUED,
    SENDS, TARGETS,
};
use static_cell::ConstStaticCell;

/// TCP buffers per link (each way): the receive window and what waits to
/// be sent. A stream needs no window as large as a message (the session
/// reads a packet into its own inbox as it arrives, and writes its outbox
/// in pieces), so a device keeps 1 KiB, as embassy's and smoltcp's
/// examples do (1536 B cost 3 KiB more over three links).
const SOCKET: usize = 1024;
/// embassy-net's socket slots: three links, the namebump client's UDP
/// and TCP legs, DNS.
const SOCKETS: usize = 6;

type Tables = NodeTables<
    &'static mut [Slot; 64],
    &'static mut [u64; 256],
    &'static mut [Peer; 16],
    &'static mut [SourceAcks; ACK_SOURCES],
>;

type Node3 = Sidewire<
    'static,
    PoolSlice<'static>,
    &'static mut [Slot; 64],
    &'static mut [u64; 256],
    &'static mut [Peer; 16],
    &'static mut [SourceAcks; ACK_SOURCES],
    Rtc,
    LINKS,
    SENDS,
    QUEUED,
    LINK_BUFFER,
    BROKERS_TRACKED,
    TARGETS,
    OUTBOX,
    ACK_WALKS,
>;

/// The state's sizes on this target, read from the image by
/// tests/bench-embassy-budget.sh (they stay in `.rodata`): the sidewire
/// shell (node, links, send packets; its tables apart), the node's
/// tables, the three links' TCP buffers, and embassy-net's resources and
/// runner.
#[used]
static EMBASSY_SIZES: [u32; 5] = [
    size_of::<Node3>() as u32,
    (size_of::<[Slot; 64]>()
        + size_of::<[u64; 256]>()
        + size_of::<[Peer; 16]>()
        + size_of::<[SourceAcks; ACK_SOURCES]>()) as u32,
    size_of::<[SocketMemory<SOCKET>; LINKS]>() as u32,
    size_of::<StackResources<SOCKETS>>() as u32,
    size_of::<embassy_net::Runner<'static, Opaque>>() as u32,
];

// Memory whose size is known at build time, in statics the compiler lays
// out (zeroed `.bss`, or `.data` for non-zero empty values).
static SLOTS: ConstStaticCell<[Slot; 64]> = ConstStaticCell::new([Slot::EMPTY; 64]);
static WATERMARKS: ConstStaticCell<[u64; 256]> = ConstStaticCell::new([0; 256]);
static PEERS: ConstStaticCell<[Peer; 16]> = ConstStaticCell::new([Peer::EMPTY; 16]);
static ACKS: ConstStaticCell<[SourceAcks; ACK_SOURCES]> =
    ConstStaticCell::new([SourceAcks::EMPTY; ACK_SOURCES]);
static LINK_SOCKETS: ConstStaticCell<[SocketMemory<SOCKET>; LINKS]> =
    ConstStaticCell::new([const { SocketMemory::new() }; LINKS]);
static RESOURCES: ConstStaticCell<StackResources<SOCKETS>> =
    ConstStaticCell::new(StackResources::new());

/// An Ethernet driver whose frames come from nowhere the compiler sees.
struct Opaque;

struct Token;

impl embassy_net_driver::RxToken for Token {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let mut frame = [0u8; 1514];
        black_box(&mut frame);
        let len = black_box(frame.len());
        f(&mut frame[..len])
    }
}

impl embassy_net_driver::TxToken for Token {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; 1514];
        let r = f(&mut frame[..len.min(1514)]);
        black_box(&frame);
        r
    }
}

impl embassy_net_driver::Driver for Opaque {
    type RxToken<'a> = Token;
    type TxToken<'a> = Token;
    fn receive(&mut self, _: &mut Context<'_>) -> Option<(Token, Token)> {
        black_box(true).then_some((Token, Token))
    }
    fn transmit(&mut self, _: &mut Context<'_>) -> Option<Token> {
        black_box(true).then_some(Token)
    }
    fn link_state(&mut self, _: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1514;
        caps
    }
    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([2, 0, 0, 0, 0, 2])
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

/// A device's real-time clock stands here.
#[derive(Clone, Copy)]
struct Rtc;

impl Clock for Rtc {
    fn now(&self) -> f64 {
        black_box(1.765e9)
    }
}

/// The monotonic timer stands here.
struct Ticks;

impl embassy_time_driver::Driver for Ticks {
    fn now(&self) -> u64 {
        black_box(0)
    }
    fn schedule_wake(&self, at: u64, waker: &Waker) {
        black_box((at, waker));
    }
}

// The driver's two entry points must keep their names (the macro marks
// them no_mangle); nothing unsafe runs in them.
#[allow(unsafe_code)]
mod timer {
    embassy_time_driver::time_driver_impl!(static TICKS: super::Ticks = super::Ticks);
}

/// One core, no interrupts touch this image's state: a critical section
/// has nothing to mask.
struct SingleCore;

#[allow(unsafe_code)]
mod single_core {
    critical_section::set_impl!(super::SingleCore);
    // SAFETY: never run with interrupts or a second core (a size image).
    unsafe impl critical_section::Impl for super::SingleCore {
        unsafe fn acquire() -> critical_section::RawRestoreState {}
        unsafe fn release(_: critical_section::RawRestoreState) {}
    }
}

/// Polls the network task and the application task in turn until the
/// application ends, with no executor (the image is never run), as an
/// executor runs two tasks: each polled on its own, so neither's frame
/// sits under the other's (one future joining both would nest them).
/// Takes them pinned where they were built: by value, they would be moved
/// into this frame, a second copy of the whole state.
fn block_on<N: Future, A: Future>(
    mut net: core::pin::Pin<&mut N>,
    mut app: core::pin::Pin<&mut A>,
) -> A::Output {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let _ = poll_task(net.as_mut(), &mut cx);
        if let core::task::Poll::Ready(out) = poll_task(app.as_mut(), &mut cx) {
            return out;
        }
    }
}

/// One task's poll, a function of its own as in an executor.
#[inline(never)]
fn poll_task<F: Future>(
    f: core::pin::Pin<&mut F>,
    cx: &mut Context<'_>,
) -> core::task::Poll<F::Output> {
    f.poll(cx)
}

// The linker's entry point must keep its name; nothing unsafe runs here.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let mut rng = HardwareRng;
    let resources = RESOURCES.take();
    let config = Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(Ipv4Address::new(10, 77, 0, 2), 24),
        gateway: Some(Ipv4Address::new(10, 77, 0, 1)),
        dns_servers: Default::default(),
    });
    let (stack, mut runner) = embassy_net::new(Opaque, config, resources, black_box(7));
    let key = Keypair::generate(&mut rng);
    let endpoints: [IpEndpoint; LINKS] = core::array::from_fn(|i| {
        IpEndpoint::new(Ipv4Address::new(10, 77, 0, 1).into(), 1883 + i as u16)
    });
    let tables: Tables = NodeTables {
        slots: SLOTS.take(),
        watermarks: WATERMARKS.take(),
        peers: PEERS.take(),
        acks: ACKS.take(),
    };
    let pool = PoolSlice {
        brokers: &POOL,
        ranking: Ranking::Compatible,
    };
    let config = NodeConfig {
        max_message: MAX_MESSAGE,
        ..NodeConfig::default()
    };
    // The node built in the call, not in a local: a moved-from local keeps
    // its place in this frame until the end of the scope.
    let mut sidewire: Sidewire<
        '_,
        _,
        _,
        _,
        _,
        _,
        Rtc,
        LINKS,
        SENDS,
        QUEUED,
        LINK_BUFFER,
        BROKERS_TRACKED,
        TARGETS,
        OUTBOX,
        ACK_WALKS,
    > = Sidewire::new(
        stack,
        Node::new(key.clone(), pool, config, tables, &mut rng, Instant::ZERO),
        &endpoints,
        LINK_SOCKETS.take(),
        SessionConfig::default(),
        Rtc,
    );
    let app = async {
        loop {
            let Ok(server_pk) = PublicKey::from_bytes(&black_box([2u8; 33])) else {
                continue;
            };
            let server = IpEndpoint::new(Ipv4Address::new(10, 77, 0, 1).into(), 5300);
            let client = Client::new(stack, server, server_pk, Rtc);
            let _ = black_box(
                client
                    .put(
                        b"device",
                        b"10.77.0.2",
                        &key,
                        Behavior::Bump,
                        None,
                        &mut rng,
                    )
                    .await,
            );
            let _ = black_box(client.get(b"device", &mut rng).await);
            let _ = black_box(client.delete(b"device", &key, None, &mut rng).await);
            let _ =
                black_box(sidewire.send(&server_pk, b"hello", Duration::from_secs(4), &mut rng));
            let until = embassy_time::Instant::from_ticks(black_box(1_000_000));
            sidewire
                .run_until(until, &mut rng, &mut |h| {
                    black_box(&h as *const _ as usize) == 0
                })
                .await;
        }
    };
    block_on(pin!(runner.run()), pin!(app));
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
