//! The demo's output: one line per step with its timing, and the bound on
//! every network wait (issue 12: every wait bounded, each step timed).

use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};

/// The longest any single network wait of the demo may take.
pub(super) const WAIT: Duration = Duration::from_secs(10);

/// Prints the steps that worked, and counts them for the summary.
pub(super) struct StepLog<'w, W: Write> {
    out: &'w mut W,
    steps: usize,
}

impl<'w, W: Write> StepLog<'w, W> {
    pub(super) fn new(out: &'w mut W) -> Self {
        Self { out, steps: 0 }
    }

    /// `area  step  detail  ok  N.N ms`: the step took `took`.
    pub(super) fn ok(
        &mut self,
        area: &str,
        step: &str,
        detail: impl Display,
        took: Duration,
    ) -> Result<()> {
        let ms = took.as_secs_f64() * 1000.0;
        let detail = detail.to_string();
        writeln!(self.out, "{area:<9} {step:<8} {detail:<64} ok {ms:>7.1} ms")?;
        // Flushed per line: a reader of a slow step sees the ones before.
        self.out.flush()?;
        self.steps += 1;
        Ok(())
    }

    /// A line that is not a step: the header, a skipped part, the summary.
    pub(super) fn note(&mut self, text: impl Display) -> Result<()> {
        writeln!(self.out, "{text}")?;
        self.out.flush()?;
        Ok(())
    }

    pub(super) fn steps(&self) -> usize {
        self.steps
    }
}

/// `work`, failing with `what` in the reason if it fails or takes longer
/// than [`WAIT`].
pub(super) async fn bounded<T, E>(what: &str, work: impl Future<Output = Result<T, E>>) -> Result<T>
where
    anyhow::Error: From<E>,
{
    match tokio::time::timeout(WAIT, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow::Error::from(e).context(what.to_owned())),
        Err(_) => bail!("{what}: nothing within {} s", WAIT.as_secs()),
    }
}
