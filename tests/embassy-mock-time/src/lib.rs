//! What the timing tests share: an IP device that records every packet
//! the stack sends (with the mock time it was sent at) and delivers
//! nothing, and a loop that polls a future while advancing embassy-time's
//! mock clock step by step.
//!
//! The mock driver is one global clock: [`serial`] hands it to one test
//! at a time and resets it to zero.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use embassy_net::{Config, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_time::{Duration, MockDriver};
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::time::Clock;

/// The device's address; the servers it talks to are on the same /24.
pub const DEVICE: Ipv4Address = Ipv4Address::new(10, 78, 0, 2);

static CLOCK: Mutex<()> = Mutex::new(());

/// The mock clock for one test, reset to zero.
pub fn serial() -> MutexGuard<'static, ()> {
    let guard = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    guard
}

/// One packet the stack sent, at mock time `at_us`.
#[derive(Clone, Debug)]
pub struct Sent {
    pub at_us: u64,
    pub packet: Vec<u8>,
}

impl Sent {
    fn ihl(&self) -> usize {
        usize::from(self.packet.first().copied().unwrap_or(0) & 0x0f) * 4
    }

    fn protocol(&self) -> u8 {
        self.packet.get(9).copied().unwrap_or(0)
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([
            *self.packet.get(at)?,
            *self.packet.get(at + 1)?,
        ]))
    }

    /// A UDP datagram to `port`.
    pub fn is_udp_to(&self, port: u16) -> bool {
        self.protocol() == 17 && self.u16_at(self.ihl() + 2) == Some(port)
    }

    /// A TCP SYN to `port`: `(source port, initial sequence number)`,
    /// the same for each retransmission of one connect.
    pub fn syn_to(&self, port: u16) -> Option<(u16, u32)> {
        let ihl = self.ihl();
        let flags = *self.packet.get(ihl + 13)?;
        if self.protocol() != 6 || self.u16_at(ihl + 2) != Some(port) || flags & 0x12 != 0x02 {
            return None;
        }
        let seq = self.packet.get(ihl + 4..ihl + 8)?;
        Some((self.u16_at(ihl)?, u32::from_be_bytes(seq.try_into().ok()?)))
    }
}

/// Packets sent so far, shared with the test.
pub type Wire = Arc<Mutex<Vec<Sent>>>;

/// An IP device on which nothing ever answers.
pub struct Silent {
    wire: Wire,
}

pub struct Rx;

impl embassy_net_driver::RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(&mut [])
    }
}

pub struct Tx(Wire);

impl embassy_net_driver::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let r = f(&mut packet);
        let at_us = embassy_time::Instant::now().as_micros();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Sent { at_us, packet });
        r
    }
}

impl embassy_net_driver::Driver for Silent {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: &mut Context<'_>) -> Option<(Rx, Tx)> {
        None
    }

    fn transmit(&mut self, _: &mut Context<'_>) -> Option<Tx> {
        Some(Tx(self.wire.clone()))
    }

    fn link_state(&mut self, _: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1500;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

/// A stack on a [`Silent`] device at [`DEVICE`]/24; its resources are
/// leaked (a test's lifetime).
pub fn stack() -> (Stack<'static>, Runner<'static, Silent>, Wire) {
    let wire = Wire::default();
    let resources = Box::leak(Box::new(StackResources::<8>::new()));
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(DEVICE, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let device = Silent { wire: wire.clone() };
    let (stack, runner) = embassy_net::new(device, config, resources, 7);
    (stack, runner, wire)
}

/// Polls `future` next to `runner` until it is ready, advancing the mock
/// clock by `step` whenever neither can move; gives up after `limit` of
/// mock time. Returns the output and the mock time it came at.
pub fn run<F: Future>(
    runner: &mut Runner<'static, Silent>,
    future: F,
    step: Duration,
    limit: Duration,
) -> Option<(F::Output, embassy_time::Instant)> {
    let mut future = pin!(future);
    let mut net = pin!(runner.run());
    let mut cx = Context::from_waker(Waker::noop());
    let steps = limit.as_ticks() / step.as_ticks().max(1);
    for _ in 0..=steps {
        // A few polls per instant: what one side queues, the other moves.
        for _ in 0..8 {
            let _ = net.as_mut().poll(&mut cx);
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return Some((out, embassy_time::Instant::now()));
            }
        }
        MockDriver::get().advance(step);
    }
    None
}

/// Times (mock µs) at which each new connect began: the first SYN of each
/// `(source port, initial sequence)` to `port`.
pub fn connects(wire: &Wire, port: u16) -> Vec<u64> {
    let sent = wire.lock().unwrap_or_else(|e| e.into_inner());
    let mut seen = VecDeque::new();
    let mut starts = Vec::new();
    for s in sent.iter() {
        if let Some(id) = s.syn_to(port)
            && !seen.contains(&id)
        {
            seen.push_back(id);
            starts.push(s.at_us);
        }
    }
    starts
}

/// Times (mock µs) of the UDP datagrams to `port`.
pub fn datagrams(wire: &Wire, port: u16) -> Vec<u64> {
    let sent = wire.lock().unwrap_or_else(|e| e.into_inner());
    sent.iter()
        .filter(|s| s.is_udp_to(port))
        .map(|s| s.at_us)
        .collect()
}

/// Deterministic randomness (the tests check timing, not secrecy).
pub struct CounterRng(pub u64);

impl TryRng for CounterRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Ok(self.0 >> 11)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}

impl TryCryptoRng for CounterRng {}

/// Wall-clock seconds that follow the mock clock from a fixed date.
#[derive(Clone, Copy, Debug)]
pub struct MockWall;

impl Clock for MockWall {
    fn now(&self) -> f64 {
        1_800_000_000.0 + embassy_time::Instant::now().as_micros() as f64 / 1e6
    }
}
