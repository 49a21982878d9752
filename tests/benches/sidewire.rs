//! sidewire between two Keyway routers through three private mosquitto
//! brokers on loopback: delivery latency (send → the receiver's handler,
//! one clock), ACK round trip, and sustained throughput. Not a test:
//! `cargo bench -p keyway-tests --bench sidewire [-- SECONDS] [--keyway-only]`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_sidewire::{Pool, Router, RouterConfig, system_time};
use keyway_tests::mosquitto::{Mosquitto, sidewire_pool};

async fn join(key: Keypair, pool: Pool, config: RouterConfig) -> Router {
    let router = Router::with_config(key, None, system_time, pool, config);
    router.start().await.unwrap();
    router
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    let secs: f64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(10.0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let brokers: Vec<Mosquitto> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let pool = sidewire_pool(&brokers);
    let brokers_for_reference: Vec<(String, u16)> = brokers
        .iter()
        .map(|b| (b.addr().ip().to_string(), b.addr().port()))
        .collect();
    rt.block_on(async move {
        let key = || Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
        let (a, b) = (key(), key());
        let b_pk = *b.public();
        let config = RouterConfig {
            per_source: keyway_core::rate::RateLimit { rate: 1e9, burst: 1e9 },
            ..RouterConfig::default()
        };
        let ra = join(a, pool.clone(), config.clone()).await;
        let rb = join(b, pool, config).await;
        // The receiver stamps arrival; payloads carry the send instant's offset.
        let origin = Instant::now();
        let delivered = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let (count, lat) = (delivered.clone(), latencies.clone());
        rb.add_msg_handler(move |m| {
            count.fetch_add(1, Ordering::Relaxed);
            if let Ok(sent) = <[u8; 8]>::try_from(&m.data[..8]) {
                let sent = Duration::from_nanos(u64::from_le_bytes(sent));
                lat.lock().unwrap().push(origin.elapsed() - sent);
            }
        });
        let pipe = ra.pipe(b_pk);
        let message = |pad: u8| {
            let mut m = (origin.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
            m.resize(64, pad);
            m
        };
        // Warm up the links.
        pipe.send(&message(0), Duration::from_secs(5)).await.unwrap();

        // 1. One message at a time.
        latencies.lock().unwrap().clear();
        let mut round_trips = Vec::new();
        let end = Instant::now() + Duration::from_secs_f64(secs / 2.0);
        while Instant::now() < end {
            let t = Instant::now();
            pipe.send(&message(1), Duration::from_secs(5)).await.unwrap();
            round_trips.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut one = latencies.lock().unwrap().clone();
        one.sort_unstable();
        round_trips.sort_unstable();

        // 2. Sustained: concurrent senders, each waiting for its ACKs.
        let senders: usize = std::env::var("SENDERS").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
        let before = delivered.load(Ordering::Relaxed);
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(secs / 2.0);
        let mut tasks = Vec::new();
        for _ in 0..senders {
            let pipe = pipe.clone();
            tasks.push(tokio::spawn(async move {
                let mut failed = 0u64;
                while Instant::now() < end {
                    let mut m = (origin.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
                    m.resize(64, 2);
                    if pipe.send(&m, Duration::from_secs(5)).await.is_err() {
                        failed += 1;
                    }
                }
                failed
            }));
        }
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap();
        }
        let rate = (delivered.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
            .unwrap_or_default();
        println!("Machine: {cpu}, {} cores; 3 mosquitto brokers on 127.0.0.2-4, 64-byte messages, {secs} s", std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!();
        println!("| peers | delivery p50 / p99 (one at a time) | send→ACK p50 / p99 | sustained delivered/s (64 senders) | failed sends |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| Keyway → Keyway | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.0} | {failed} |",
            ms(percentile(&one, 0.5)),
            ms(percentile(&one, 0.99)),
            ms(percentile(&round_trips, 0.5)),
            ms(percentile(&round_trips, 0.99)),
            rate
        );
        drop((ra, rb));
        // For profiling Keyway alone.
        if !std::env::args().any(|a| a == "--keyway-only") {
            reference(&brokers_for_reference, secs);
        }
    });
}

/// The same measurements between two sidewire 0.1.9 routers, through the
/// same brokers (`tests/interop/sidewire_ref_bench.py`).
fn reference(brokers: &[(String, u16)], secs: f64) {
    use std::io::Write;
    let venv = keyway_tests::reference::Venv::namebump().unwrap();
    let script = keyway_tests::reference::interop_dir().join("sidewire_ref_bench.py");
    let request = serde_json::json!({ "brokers": brokers, "seconds": secs, "senders": 64 });
    let mut child = std::process::Command::new(venv.python())
        .arg(script)
        .env("PYTHONNOUSERSITE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{request}").unwrap();
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let Ok(r) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
        println!(
            "| reference → reference | (did not complete: {}) | | | |",
            line.trim()
        );
        return;
    };
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "| reference → reference | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.0} | {} |",
        f("delivery_p50_ms"),
        f("delivery_p99_ms"),
        f("ack_p50_ms"),
        f("ack_p99_ms"),
        f("rate"),
        r["failed"]
    );
}
