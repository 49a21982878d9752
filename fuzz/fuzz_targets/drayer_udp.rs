//! DrayerUDP datagrams from any source, at any pace, through the decisions
//! discovery takes for each (`discovery::Discovery::run`): attached subnet
//! or loopback, the per-source budget in its bounded table, decoding, and
//! where a tip announcement may go. Properties: nothing panics; a unicast
//! reply is never larger than the datagram that caused it (no
//! amplification); the group hears a stream's announcement at most once
//! per `GROUP_REPLY_INTERVAL`; no source gets more than its budget.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keyway_drayer::Stream;
use keyway_drayer::discovery::{
    self, Datagram, GROUP_REPLY_INTERVAL, Gate, Route, SOURCE_LIMIT, Subnets,
};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    /// The stream this node holds, and its tip announcements for a short
    /// and a long key (the long one is larger than any request).
    chain: [u8; 32],
    replies: [Vec<u8>; 2],
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut stream = Stream::create(&dir.path().join("udp.drayer")).expect("stream");
        let mut replies = Vec::new();
        for key in ["k".to_owned(), "k".repeat(300)] {
            let meta = stream.set(&key, "msgpack", b"v").expect("write");
            replies.push(discovery::encode_record(
                &meta,
                &key,
                33125,
                stream.public_key(),
            ));
        }
        Fixture {
            chain: *stream.public_key().as_bytes(),
            replies: replies.try_into().expect("two replies"),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let start = Instant::now();
    let mut now = start;
    let subnets = Subnets::new([(
        Ipv4Addr::new(192, 168, 1, 7),
        Ipv4Addr::new(255, 255, 255, 0),
    )]);
    let mut gate = Gate::new(now);
    let mut admitted: HashMap<IpAddr, u32> = HashMap::new();
    let mut told_group: Option<Instant> = None;
    let mut rest = data;
    // Each datagram: source byte, pause byte, length byte, that many bytes.
    while let [source, pause, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (datagram, after) = tail.split_at(take);
        rest = after;
        now += Duration::from_millis(u64::from(*pause) * 8);
        let from = match source & 3 {
            0 => IpAddr::V4(Ipv4Addr::new(192, 168, 1, source >> 2)),
            1 => IpAddr::V4(Ipv4Addr::new(10, 9, *source, 1)),
            2 => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(*source))),
        };
        if !subnets.attached(from) || !gate.admit(from, now) {
            continue;
        }
        let count = admitted.entry(from).or_default();
        *count += 1;
        let elapsed = now.duration_since(start).as_secs_f64();
        assert!(
            f64::from(*count) <= SOURCE_LIMIT.burst + SOURCE_LIMIT.rate * elapsed + 1.0,
            "a source got more than its budget"
        );
        let Ok(Some(Datagram::GetRecordsSince { chain, .. })) = discovery::decode(datagram) else {
            continue;
        };
        // Asked about our stream (or, when the fuzzer cannot name it, as
        // if it had): the reply is a tip announcement.
        let chain = if source & 4 != 0 { f.chain } else { chain };
        let reply = &f.replies[usize::from(source >> 3 & 1)];
        match gate.route(chain, reply.len(), datagram.len(), now) {
            Route::Unicast => assert!(reply.len() <= datagram.len(), "amplified"),
            Route::Group if chain == f.chain => {
                if let Some(at) = told_group {
                    assert!(now.duration_since(at) >= GROUP_REPLY_INTERVAL);
                }
                told_group = Some(now);
            }
            Route::Group | Route::Nowhere => {}
        }
    }
});
