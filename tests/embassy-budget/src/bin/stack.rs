//! The stack high-water mark of the firmware task (issue 14's budget),
//! measured on the host: the firmware side (its whole state on its own
//! stack, as `src/bin/firmware.rs` keeps it) runs on a thread of a known
//! stack size, against a namebump server, three brokers and a peer node
//! that answer from the main thread. `stack --run BYTES` runs once with the
//! state kept outside the thread's stack, as a firmware keeps it in a
//! static, and prints the work's high-water mark, painted (see
//! `high_water`); `--run-on-stack BYTES` builds the state on that stack by
//! value (what constructing it costs when it is not built in place). Exit
//! 0: every step succeeded; a stack overflow kills the process. Plain
//! `stack` prints the first's mark (on a 1 MiB stack) and, for the second,
//! the smallest stack in pages on which the run succeeds.
#![forbid(unsafe_code)]
// A benchmark: its fixtures are known good, and a failed step is a failed
// measurement (as in the workspace's tests and benches, unwrap is fine here).

use std::process::{Command, ExitCode};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use keyway_core::ecies;
use keyway_core::mqtt::{self, Packet as Mqtt, QoS};
use keyway_core::namebump::packet::{MAX_PACKET_LEN, Packet};
use keyway_core::namebump::reply;
use keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST;
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::node::{Screened, Transmit};
use keyway_core::time::Instant;
use keyway_core::{Keypair, PublicKey};
use keyway_embassy_budget::{Firmware, FirmwareNode, MAX_MESSAGE, Network, node};

const UNIX: u64 = 1_765_000_000;
const PAGE: usize = 4096;

/// Deterministic, so every run takes the same path.
struct CounterRng(u64);

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

enum Request {
    Namebump(Vec<u8>),
    /// The bytes a link wrote (every link reaches the same broker model).
    Mqtt(Vec<u8>),
}

/// The firmware thread's side of the network: each write waits for the
/// main thread's answer.
struct Wire {
    to: Sender<Request>,
    from: Receiver<Vec<u8>>,
}

impl Wire {
    fn ask(&mut self, request: Request, reply: &mut [u8]) -> usize {
        if self.to.send(request).is_err() {
            return 0;
        }
        let Ok(answer) = self.from.recv_timeout(Duration::from_secs(30)) else {
            return 0;
        };
        let n = answer.len().min(reply.len());
        reply[..n].copy_from_slice(&answer[..n]);
        n
    }
}

impl Network for Wire {
    fn namebump(&mut self, request: &[u8], reply: &mut [u8]) -> usize {
        self.ask(Request::Namebump(request.to_vec()), reply)
    }
    fn mqtt(&mut self, _link: u64, written: &[u8], reply: &mut [u8]) -> usize {
        self.ask(Request::Mqtt(written.to_vec()), reply)
    }
}

/// The namebump server, the brokers and the peer node, on the main thread.
struct World {
    rng: CounterRng,
    server: Keypair,
    peer: Box<FirmwareNode>,
    peer_sending: Vec<u8>,
    device: [u8; 33],
    sent_to_device: bool,
    next_id: u16,
}

impl World {
    fn answer(&mut self, request: Request) -> Vec<u8> {
        match request {
            Request::Namebump(sealed) => self.namebump(&sealed),
            Request::Mqtt(written) => self.broker(&written),
        }
    }

    /// Opens the PUT and seals the server's echo to the request's reply key.
    fn namebump(&mut self, sealed: &[u8]) -> Vec<u8> {
        let mut plain = [0u8; MAX_SEALED_REQUEST];
        let request = ecies::open(&self.server, sealed, &mut plain).expect("open");
        let request = Packet::decode(request).expect("decode");
        let reply_pk = PublicKey::from_bytes(&request.reply_pk.expect("reply key")).unwrap();
        let mut encoded = [0u8; MAX_PACKET_LEN];
        let n = reply::echo(&request, self.server.public())
            .encode(&mut encoded)
            .unwrap();
        let mut out = vec![0u8; MAX_SEALED_REQUEST];
        let m = ecies::seal(&reply_pk, &encoded[..n], &mut self.rng, &mut out).unwrap();
        out.truncate(m);
        out
    }

    /// A broker: answers the handshake and hands what is published to the
    /// peer's topic to the peer node, then publishes back to the device
    /// what the peer sends (its ACK, and once a message of its own).
    fn broker(&mut self, mut written: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let peer_topic = self.peer.topic().to_vec();
        while let Ok(Some((packet, used))) = mqtt::decode(written, 4096) {
            let mut buf = vec![0u8; 2 * MAX_MESSAGE];
            let n = match packet {
                Mqtt::Connect { .. } => mqtt::encode_connack(false, 0, &mut buf).unwrap(),
                Mqtt::Subscribe { packet_id, .. } => {
                    mqtt::encode_suback(packet_id, &[1], &mut buf).unwrap()
                }
                Mqtt::Pingreq => mqtt::encode_pingresp(&mut buf).unwrap(),
                Mqtt::Publish {
                    topic,
                    packet_id,
                    payload,
                    ..
                } => {
                    let n = packet_id.map_or(0, |id| mqtt::encode_puback(id, &mut buf).unwrap());
                    if topic == peer_topic.as_slice() {
                        self.deliver_to_peer(payload);
                    }
                    n
                }
                _ => 0,
            };
            out.extend_from_slice(&buf[..n]);
            written = &written[used..];
        }
        self.publish_peer_output(&mut out);
        out
    }

    fn deliver_to_peer(&mut self, payload: &[u8]) {
        let now = Instant::ZERO;
        let Some((link, _)) = self.peer.links_up().next() else {
            return;
        };
        let topic = self.peer.topic().to_vec();
        if let Screened::Queued { .. } = self.peer.handle_message(now, UNIX, link, &topic, payload)
        {
            while let Some((_, link)) = self.peer.poll_verify() {
                let valid = AppPacket::decode(payload).is_ok_and(|p| p.verify().is_ok());
                self.peer.handle_verified(now, UNIX, link, payload, valid);
            }
        }
        if !self.sent_to_device {
            self.sent_to_device = true;
            let (_, len) = self
                .peer
                .send(
                    now,
                    UNIX,
                    &self.device,
                    b"hello device",
                    &[],
                    Duration::from_secs(4),
                    &mut self.rng,
                    &mut self.peer_sending,
                )
                .unwrap();
            self.peer_sending.truncate(len);
        }
    }

    /// What the peer publishes to the device, as PUBLISH packets.
    fn publish_peer_output(&mut self, out: &mut Vec<u8>) {
        let mut hex = [0u8; 66];
        let device_topic = base16ct::lower::encode_str(&self.device, &mut hex).unwrap_or_default();
        let mut scratch = vec![0u8; MAX_MESSAGE];
        while let Some(t) = self.peer.poll_transmit(Instant::ZERO, &mut scratch) {
            let payload = match t {
                Transmit::PublishAck { len, .. } => scratch[..len].to_vec(),
                Transmit::PublishSend { .. } => self.peer_sending.clone(),
                _ => continue,
            };
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let mut buf = vec![0u8; 2 * MAX_MESSAGE];
            let n = mqtt::encode_publish(
                device_topic.as_bytes(),
                QoS::AtLeastOnce,
                self.next_id,
                &payload,
                &mut buf,
            )
            .unwrap();
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// Brings up every link the peer node asks for.
fn connect_all(n: &mut FirmwareNode) {
    let mut buf = [0u8; 256];
    n.handle_timeout(Instant::ZERO, UNIX);
    for _ in 0..16 {
        match n.poll_transmit(Instant::ZERO, &mut buf) {
            Some(Transmit::Connect { link, .. }) => n.handle_link_up(Instant::ZERO, UNIX, link),
            Some(_) => {}
            None => return,
        }
    }
}

/// The firmware's work on a state it is given: a PUT, the three links,
/// a message each way.
#[inline(never)]
fn work(
    fw: &mut Firmware,
    net: &mut Wire,
    rng: &mut CounterRng,
    server: PublicKey,
    peer: &[u8; 33],
) -> Result<usize, String> {
    fw.put(net, rng, server, b"device", b"10.77.0.2", UNIX as f64)
        .map_err(|s| format!("{s:?}"))?;
    fw.connect(net, rng, UNIX).map_err(|s| format!("{s:?}"))?;
    fw.exchange_messages(net, rng, peer, b"hello peer", UNIX)
        .map_err(|s| format!("{s:?}"))
}

/// The same work on a state built here, by value.
#[inline(never)]
fn build_and_work(
    key: Keypair,
    net: &mut Wire,
    rng: &mut CounterRng,
    server: PublicKey,
    peer: &[u8; 33],
) -> Result<usize, String> {
    let mut fw = Firmware::new(key, rng);
    work(&mut fw, net, rng, server, peer)
}

/// One run of the firmware side on a `stack`-byte thread; `on_stack`:
/// the state is built there too.
fn run(stack: usize, on_stack: bool) -> Result<(), String> {
    let mut rng = CounterRng(7);
    let device_key = Keypair::generate(&mut rng);
    let device = *device_key.public().as_bytes();
    let mut peer = Box::new(node(Keypair::generate(&mut rng), &mut rng));
    connect_all(&mut peer);
    let peer_pk = *peer.topic().first_chunk::<66>().ok_or("topic")?;
    let mut peer_key = [0u8; 33];
    base16ct::lower::decode(peer_pk, &mut peer_key).map_err(|e| e.to_string())?;
    let peer_pk = peer_key;
    let server = Keypair::generate(&mut rng);
    let server_pk = *server.public();
    let mut world = World {
        rng: CounterRng(11),
        server,
        peer,
        peer_sending: vec![0u8; MAX_MESSAGE],
        device,
        sent_to_device: false,
        next_id: 0,
    };
    // Built before the thread starts, off its stack.
    let mut outside =
        (!on_stack).then(|| Box::new(Firmware::new(device_key.clone(), &mut CounterRng(13))));
    let (to_world, requests) = channel();
    let (answers, from_world) = channel();
    let firmware = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || -> Result<usize, String> {
            let mut rng = CounterRng(13);
            let mut net = Wire {
                to: to_world,
                from: from_world,
            };
            match outside.take() {
                Some(mut boxed) => {
                    let top = high_water::here();
                    let painted = high_water::paint(top).map_err(|e| e.to_string())?;
                    let delivered = work(&mut boxed, &mut net, &mut rng, server_pk, &peer_pk)?;
                    let deepest = high_water::deepest(painted, top).map_err(|e| e.to_string())?;
                    println!("painted_stack_bytes={}", top - deepest);
                    Ok(delivered)
                }
                None => build_and_work(device_key, &mut net, &mut rng, server_pk, &peer_pk),
            }
        })
        .map_err(|e| e.to_string())?;
    while let Ok(request) = requests.recv_timeout(Duration::from_secs(60)) {
        if answers.send(world.answer(request)).is_err() {
            break;
        }
    }
    let delivered = firmware
        .join()
        .map_err(|_| "the firmware thread panicked")??;
    if delivered != 1 {
        return Err(format!("{delivered} messages delivered, expected 1"));
    }
    Ok(())
}

/// The stack high-water mark by painting, with no unsafe code: the
/// thread's stack below a margin is filled with a pattern through
/// `/proc/self/mem` before the work and read back after it; the deepest
/// byte that changed is how far the work reached. Exact to the byte,
/// where the smallest passing stack size is only a page-granular bound
/// (and Rust clamps a thread's stack to glibc's minimum, about 16 KiB,
/// which the work fits in).
mod high_water {
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom, Write};

    const PAINT: u8 = 0xA5;
    /// Left unpainted below the caller's frame: the frames of `paint`
    /// itself (opening the file, the write). The work reaches far deeper.
    pub const MARGIN: usize = 8 * 1024;

    /// An address in the caller's stack frame.
    #[inline(never)]
    pub fn here() -> usize {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }

    /// The start of the mapping holding `addr` (`/proc/self/maps`).
    fn mapping_start(addr: usize) -> std::io::Result<usize> {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        maps.lines()
            .filter_map(|line| {
                let (range, _) = line.split_once(' ')?;
                let (a, b) = range.split_once('-')?;
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            })
            .find(|&(a, b)| a <= addr && addr < b)
            .map(|(a, _)| a)
            .ok_or_else(|| std::io::Error::other("no mapping holds the stack"))
    }

    /// Paints the stack from its lowest address to `MARGIN` below `top`;
    /// returns where the paint starts.
    pub fn paint(top: usize) -> std::io::Result<usize> {
        let start = mapping_start(top)?;
        let end = top - MARGIN;
        let mut mem = File::options().write(true).open("/proc/self/mem")?;
        mem.seek(SeekFrom::Start(start as u64))?;
        mem.write_all(&vec![PAINT; end - start])?;
        Ok(start)
    }

    /// The lowest address between `start` and `top` whose paint changed.
    pub fn deepest(start: usize, top: usize) -> std::io::Result<usize> {
        let mut mem = File::open("/proc/self/mem")?;
        mem.seek(SeekFrom::Start(start as u64))?;
        let mut bytes = vec![0u8; top - start];
        mem.read_exact(&mut bytes)?;
        Ok(start
            + bytes
                .iter()
                .position(|&b| b != PAINT)
                .unwrap_or(bytes.len()))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, bytes] = args.as_slice() {
        let Ok(bytes) = bytes.parse() else {
            eprintln!("{flag} BYTES");
            return ExitCode::from(2);
        };
        return match run(bytes, flag == "--run-on-stack") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let Ok(me) = std::env::current_exe() else {
        return ExitCode::FAILURE;
    };
    let [state, node, link, exchange, tables] = keyway_embassy_budget::STATE_SIZES;
    println!("host_state_bytes={state}");
    println!("host_node_bytes={node}");
    println!("host_link_bytes={link}");
    println!("host_exchange_bytes={exchange}");
    println!("host_tables_bytes={tables}");
    // The work's own high-water mark, painted, on a 1 MiB stack.
    match Command::new(&me)
        .args(["--run", &(256 * PAGE).to_string()])
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(bytes) = text
                .lines()
                .find_map(|l| l.strip_prefix("painted_stack_bytes="))
            else {
                eprintln!("--run printed no high-water mark");
                return ExitCode::FAILURE;
            };
            println!("stack_bytes={bytes}");
        }
        _ => {
            eprintln!("--run on a 1 MiB stack failed");
            return ExitCode::FAILURE;
        }
    }
    // Built on the stack by value, the state dwarfs the work: the
    // smallest passing stack in pages is a fair measure there.
    for (flag, key) in [("--run-on-stack", "stack_with_state_bytes")] {
        match smallest_stack(&me, flag) {
            Ok(bytes) => println!("{key}={bytes}"),
            Err(e) => {
                eprintln!("{flag}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The smallest stack, in pages between 4 KiB and 1 MiB, on which `me
/// flag BYTES` succeeds (each probe is a process of its own: an overflow
/// kills it). Bounded: a binary search over 256 pages.
fn smallest_stack(me: &std::path::Path, flag: &str) -> Result<usize, String> {
    let passes = |pages: usize| {
        Command::new(me)
            .args([flag, &(pages * PAGE).to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (mut lo, mut hi) = (1usize, 256usize);
    if !passes(hi) {
        return Err(format!(
            "fails even on a 1 MiB stack: {:?}",
            run(hi * PAGE, flag == "--run-on-stack")
        ));
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi * PAGE)
}
