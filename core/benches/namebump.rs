//! A PUT carrying a 1 KiB value through every core step.
//! Run with `tests/bench-core.sh`, which also times the reference.
#![allow(clippy::unwrap_used)]

use core::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use getrandom::SysRng;
use keyway_core::Keypair;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{Op, Packet};
use keyway_core::rand_core::UnwrapErr;

/// A PUT of `value`, signed by a fresh owner, encoded and sealed to a
/// fresh server key: the input of every benchmark here.
struct Signed<'v> {
    owner: Keypair,
    server: Keypair,
    put: Packet<'v>,
    plain: [u8; MAX_PACKET_LEN],
    n: usize,
    sealed: [u8; ecies::sealed_len(MAX_PACKET_LEN)],
    m: usize,
}

fn signed<'v>(value: &'v [u8], rng: &mut UnwrapErr<SysRng>) -> Signed<'v> {
    let owner = Keypair::generate(rng);
    let server = Keypair::generate(rng);
    let reply = Keypair::generate(rng);
    let mut put = Packet::new(Op::Put, 0x1234_5678, 1_795_000_000.5, b"bench-name", value);
    put.reply_pk = Some(*reply.public().as_bytes());
    put.sign(&owner).unwrap();
    let mut plain = [0u8; MAX_PACKET_LEN];
    let n = put.encode(&mut plain).unwrap();
    let mut sealed = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
    let m = ecies::seal(server.public(), &plain[..n], rng, &mut sealed).unwrap();
    Signed {
        owner,
        server,
        put,
        plain,
        n,
        sealed,
        m,
    }
}

fn put_1kib(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let value = [0x5au8; 1024];
    let Signed {
        owner,
        server,
        put,
        plain,
        n,
        sealed,
        m,
    } = signed(&value, &mut rng);

    let mut g = c.benchmark_group("namebump_put_1KiB");
    g.bench_function("pack", |b| {
        let mut out = [0u8; MAX_PACKET_LEN];
        b.iter(|| black_box(&put).encode(&mut out).unwrap())
    });
    g.bench_function("unpack", |b| {
        b.iter(|| Packet::decode(black_box(&plain[..n])).unwrap())
    });
    g.bench_function("sign", |b| {
        let mut p = put;
        b.iter(|| p.sign(black_box(&owner)).unwrap())
    });
    g.bench_function("verify", |b| {
        b.iter(|| black_box(&put).verify_self_signed().unwrap())
    });
    g.bench_function("encrypt", |b| {
        let mut out = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
        b.iter(|| ecies::seal(server.public(), black_box(&plain[..n]), &mut rng, &mut out).unwrap())
    });
    g.bench_function("decrypt", |b| {
        let mut out = [0u8; MAX_PACKET_LEN + ecies::BLOCK_LEN];
        b.iter(|| {
            ecies::open(&server, black_box(&sealed[..m]), &mut out)
                .map(<[u8]>::len)
                .unwrap()
        })
    });
    g.finish();
}

/// What a server cannot avoid for one PUT (issue 12's "crypto floor"):
/// open the sealed request, decode it, verify its signature, encode the
/// echo reply and seal it to the request's reply key. 100-byte value, as
/// `keyway namebump bench` writes. The server's measured CPU per PUT is
/// compared with this in BENCHMARKS.md.
fn server_put_floor(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let value = [0x5au8; 100];
    let Signed {
        server, sealed, m, ..
    } = signed(&value, &mut rng);

    let mut g = c.benchmark_group("namebump_server");
    g.bench_function("put_floor", |b| {
        let mut bufs = FloorBuffers::new();
        b.iter(|| bufs.serve_put(&server, black_box(&sealed[..m]), &mut rng))
    });
    g.finish();
}

/// A server's buffers for one PUT.
struct FloorBuffers {
    opened: [u8; MAX_PACKET_LEN + ecies::BLOCK_LEN],
    reply_plain: [u8; MAX_PACKET_LEN],
    reply_sealed: [u8; ecies::sealed_len(MAX_PACKET_LEN)],
}

impl FloorBuffers {
    fn new() -> Self {
        Self {
            opened: [0; MAX_PACKET_LEN + ecies::BLOCK_LEN],
            reply_plain: [0; MAX_PACKET_LEN],
            reply_sealed: [0; ecies::sealed_len(MAX_PACKET_LEN)],
        }
    }

    /// The floor's steps for one sealed PUT; the sealed reply's length.
    fn serve_put(&mut self, server: &Keypair, sealed: &[u8], rng: &mut UnwrapErr<SysRng>) -> usize {
        let request = ecies::open(server, sealed, &mut self.opened).unwrap();
        let p = Packet::decode(request).unwrap();
        p.verify_self_signed().unwrap();
        let echo = Packet::new(Op::Put, p.pkid, p.updated, p.name, p.value);
        let k = echo.encode(&mut self.reply_plain).unwrap();
        let to = keyway_core::PublicKey::from_bytes(&p.reply_pk.unwrap()).unwrap();
        ecies::seal(&to, &self.reply_plain[..k], rng, &mut self.reply_sealed).unwrap()
    }
}

/// Requests in the varied floor's round: more than a core's branch
/// predictor and caches can learn, as the server sees them.
const VARIED: usize = 512;

/// The same floor over [`VARIED`] distinct requests (each its own owner,
/// reply key, name and sealing), taken in turn, as a server receives them:
/// the curve arithmetic is variable-time, so one request repeated lets the
/// CPU learn its branches and measures less than a stream of requests.
fn server_put_floor_varied(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let value = [0x5au8; 100];
    let server = Keypair::generate(&mut rng);
    let names: Vec<String> = (0..VARIED).map(|i| format!("bench-name-{i}")).collect();
    let requests: Vec<([u8; ecies::sealed_len(MAX_PACKET_LEN)], usize)> = names
        .iter()
        .map(|name| {
            let owner = Keypair::generate(&mut rng);
            let reply = Keypair::generate(&mut rng);
            let mut put = Packet::new(
                Op::Put,
                0x1234_5678,
                1_795_000_000.5,
                name.as_bytes(),
                &value,
            );
            put.reply_pk = Some(*reply.public().as_bytes());
            put.sign(&owner).unwrap();
            let mut plain = [0u8; MAX_PACKET_LEN];
            let n = put.encode(&mut plain).unwrap();
            let mut sealed = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
            let m = ecies::seal(server.public(), &plain[..n], &mut rng, &mut sealed).unwrap();
            (sealed, m)
        })
        .collect();

    let mut g = c.benchmark_group("namebump_server");
    g.bench_function("put_floor_varied", |b| {
        let mut bufs = FloorBuffers::new();
        let mut next = 0;
        b.iter(|| {
            let (sealed, m) = &requests[next];
            next = (next + 1) % VARIED;
            bufs.serve_put(&server, black_box(&sealed[..*m]), &mut rng)
        })
    });
    g.finish();
}

criterion_group!(benches, put_1kib, server_put_floor, server_put_floor_varied);
criterion_main!(benches);
