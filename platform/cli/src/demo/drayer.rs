//! The demo's Drayer part: a stream created and written, served over HTTP
//! on a loopback port, and mirrored into a second file that syncs from it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use keyway_core::drayer::VerifyingKey;
use keyway_drayer::http::{DeadlineListener, HttpSource, Limits, router_with, serve};
use keyway_drayer::sync::{PullLimits, pull_with};
use keyway_drayer::{Entry, Stream, obj};

use super::steps::{StepLog, WAIT, bounded};

const AREA: &str = "drayer";
const RECORDS: [(&str, &str); 3] = [
    ("greeting", "hello from keyway demo"),
    ("colour", "teal"),
    ("answer", "42"),
];

pub(super) async fn run<W: Write>(log: &mut StepLog<'_, W>, dir: &Path) -> Result<()> {
    let since = Instant::now();
    let path = dir.join("demo.stream");
    let mut stream = Stream::create(&path).context("creating demo.stream")?;
    log.ok(
        AREA,
        "create",
        format_args!("demo.stream, key {}", stream.public_key_base64()),
        since.elapsed(),
    )?;

    let since = Instant::now();
    for (key, value) in RECORDS {
        stream
            .set(key, "obj", &obj::encode_str(value))
            .with_context(|| format!("setting {key}"))?;
    }
    let keys: Vec<&str> = RECORDS.iter().map(|(key, _)| *key).collect();
    log.ok(
        AREA,
        "set",
        format_args!("{} signed records: {}", RECORDS.len(), keys.join(", ")),
        since.elapsed(),
    )?;
    let original = stream.list(None).context("listing demo.stream")?;
    let public = *stream.public_key();

    let since = Instant::now();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the Drayer HTTP server")?;
    let addr = listener.local_addr()?;
    let limits = Limits::default();
    let listener = DeadlineListener::with_limits(listener, &limits);
    let server = tokio::spawn(serve(listener, router_with(vec![stream], limits)));
    log.ok(
        AREA,
        "serve",
        format_args!("demo.stream on http://{addr}/"),
        since.elapsed(),
    )?;

    let mirrored = mirror(log, dir, addr, public, &original).await;
    // The connections it spawned end with the runtime, at the demo's end.
    server.abort();
    let _ = server.await;
    mirrored
}

/// Clones the stream into `mirror.stream` from the server at `addr` and
/// checks it holds what the owner wrote, every signature verified.
async fn mirror<W: Write>(
    log: &mut StepLog<'_, W>,
    dir: &Path,
    addr: SocketAddr,
    public: VerifyingKey,
    original: &[Entry],
) -> Result<()> {
    let since = Instant::now();
    let mut mirror =
        Stream::mirror(&dir.join("mirror.stream"), public).context("creating mirror.stream")?;
    let mut source = HttpSource::new(&format!("http://{addr}/"), public).with_timeouts(WAIT, WAIT);
    let limits = PullLimits {
        max_time: WAIT,
        ..PullLimits::default()
    };
    let pulled = bounded(
        "drayer mirror",
        pull_with(&mut mirror, &mut source, &limits),
    )
    .await?;
    let held = mirror.list(None).context("listing mirror.stream")?;
    if !same_records(original, &held) {
        bail!(
            "drayer mirror: mirror.stream holds {} records unlike the {} served",
            held.len(),
            original.len()
        );
    }
    let report = mirror.verify().context("verifying mirror.stream")?;
    if let Some(problem) = report.problems.first() {
        bail!("drayer mirror: mirror.stream does not verify: {problem}");
    }
    log.ok(
        AREA,
        "mirror",
        format_args!(
            "mirror.stream pulled {} over HTTP: the same {} records, verified",
            pulled.inserted,
            held.len()
        ),
        since.elapsed(),
    )
}

/// The same records: kind, key, times and value, in the same order.
fn same_records(a: &[Entry], b: &[Entry]) -> bool {
    fn content(e: &Entry) -> (&str, &str, i64, i64, Option<&[u8]>) {
        (&e.kind, &e.key, e.timestamp, e.modified, e.value.as_deref())
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| content(x) == content(y))
}
