//! The namebump server's request handling end to end, without sockets:
//! sealed or plaintext requests, signed by one of four owners with fields
//! the fuzzer picks (op, behaviour, name, value, `updated`, ttl, source
//! address), or raw bytes, through decryption, decoding, freshness,
//! signature, the replay cache and the store's rules on a real SQLite
//! store in memory (a file on tmpfs: the store's readers and writer need
//! a file). The clock moves by the input's say. Property: no input
//! panics, overflows or hangs the handler, and every request that gets a
//! reply gets one no larger than the largest packet.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{Op, Packet};
use keyway_core::{Keypair, ecies};
use keyway_namebump::ManualClock;
use keyway_namebump::server::Responder;
use keyway_namebump::store::{Limits, SqlStore};
use libfuzzer_sys::fuzz_target;

const T0: f64 = 1_700_000_000.0;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    responder: Responder<SqlStore>,
    server: Keypair,
    owners: [Keypair; 4],
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("keyway-fuzz-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("temp dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Small quotas, so quota refusals and bumps are reached.
        let limits = Limits {
            v4_names: 3,
            v6_names: 4,
            ..Limits::default()
        };
        let url = format!("sqlite:{}", dir.path().join("names.db").display());
        let store = runtime
            .block_on(SqlStore::open(&url, limits))
            .expect("store");
        let clock = Arc::new(ManualClock::new(T0));
        let server = Keypair::from_secret_bytes(&[0x51; 32]).expect("valid scalar");
        let responder = Responder::new(server.clone(), store, clock.clone(), limits, 64);
        let owners =
            [1u8, 2, 3, 4].map(|i| Keypair::from_secret_bytes(&[i; 32]).expect("valid scalar"));
        Fixture {
            runtime,
            responder,
            server,
            owners,
            clock,
            _dir: dir,
        }
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|input: &[u8]| {
    let f = fixture();
    let mut data = input;
    let mut rng = keyway_core::rand_core::UnwrapErr(getrandom::SysRng);
    for _ in 0..8 {
        if data.is_empty() {
            break;
        }
        let control = byte(&mut data);
        let flags = byte(&mut data);
        let skew = byte(&mut data) as i8;
        f.clock.advance(f64::from(byte(&mut data)) * 0.5);
        let source = match flags & 3 {
            0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, flags >> 2)),
            1 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            2 => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                u16::from(flags >> 2),
                0,
                0,
                0,
                1,
            )),
            _ => IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                u16::from(flags),
                0,
                0,
                0,
                0,
                2,
            )),
        };
        let name_len = usize::from(byte(&mut data) & 0x3f);
        let name = take(&mut data, name_len);
        let value_len = usize::from(byte(&mut data));
        let value = take(&mut data, value_len);
        let mut plaintext = vec![0u8; MAX_PACKET_LEN];
        let plaintext_len = match control & 7 {
            // Raw bytes as the plaintext: the decoder and dispatch.
            6 | 7 => {
                let raw = [name, value].concat();
                plaintext[..raw.len().min(MAX_PACKET_LEN)]
                    .copy_from_slice(&raw[..raw.len().min(MAX_PACKET_LEN)]);
                raw.len().min(MAX_PACKET_LEN)
            }
            op => {
                let op = match op {
                    0 => Op::Get,
                    1 | 2 => Op::Put,
                    3 | 4 => Op::Del,
                    _ => Op::Usage,
                };
                let updated = f.clock_now() + f64::from(skew) * 0.25;
                let mut packet = Packet::new(op, u32::from(flags), updated, name, value);
                packet.behavior = (control >> 3) & 1;
                packet.ttl = f64::from(control >> 4) * 4.5;
                packet.reply_pk = Some(*f.owners[0].public().as_bytes());
                if control & 0x40 != 0 {
                    packet.vkc = Some(*f.owners[usize::from(flags >> 6)].public().as_bytes());
                }
                let owner = &f.owners[usize::from(flags >> 6)];
                if op != Op::Get && packet.sign(owner).is_err() {
                    continue;
                }
                match packet.encode(&mut plaintext) {
                    Ok(n) => n,
                    Err(_) => continue,
                }
            }
        };
        let plaintext = &plaintext[..plaintext_len];
        let reply = f.runtime.block_on(async {
            if control & 0x80 != 0 {
                let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
                let n = ecies::seal(f.server.public(), plaintext, &mut rng, &mut sealed)
                    .expect("a packet fits a sealed message");
                f.responder.respond_sealed(&sealed[..n], source).await
            } else {
                f.responder.respond(plaintext, source).await
            }
        });
        if let Some(reply) = reply {
            assert!(reply.len() <= ecies::sealed_len(MAX_PACKET_LEN));
        }
    }
});

trait ClockNow {
    fn clock_now(&self) -> f64;
}

impl ClockNow for Fixture {
    fn clock_now(&self) -> f64 {
        keyway_namebump::Clock::now(self.clock.as_ref())
    }
}
