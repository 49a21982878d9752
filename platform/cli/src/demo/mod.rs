//! `keyway demo`: the product working on loopback (issue 12): a namebump
//! server and client, a Drayer stream served and mirrored, two sidewire
//! nodes on a private broker; everything in a temporary directory that is
//! removed at the end. `keyway demo --packet` is the crypto walkthrough.

mod drayer;
mod mosquitto;
mod namebump;
pub(crate) mod packet;
mod sidewire;
mod steps;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use steps::StepLog;

pub(crate) fn run(out: &mut impl Write) -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("keyway-demo-")
        .tempdir()
        .context("creating the temporary directory")?;
    let shown = dir.path().display().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut log = StepLog::new(out);
    log.note(format_args!(
        "keyway demo: a namebump server and client, a Drayer server and mirror, two sidewire \
         nodes and their own mosquitto, all on 127.0.0.1 with the embedded defaults; \
         files in {shown} (removed at the end)"
    ))?;
    // Each part stops its own servers before returning, failed or not.
    let worked = runtime.block_on(async {
        namebump::run(&mut log, dir.path()).await?;
        drayer::run(&mut log, dir.path()).await?;
        sidewire::run(&mut log, dir.path()).await
    });
    // What the servers left running (connection tasks, blocking reads) ends
    // with the runtime, before the directory goes.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let removed = dir.close().with_context(|| format!("removing {shown}"));
    worked?;
    removed?;
    log.note(format_args!(
        "summary: {} steps ok in {:.1} ms; every server, node and broker stopped, {shown} removed",
        log.steps(),
        started.elapsed().as_secs_f64() * 1000.0
    ))
}
