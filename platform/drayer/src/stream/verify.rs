//! Checking a whole stream file: every record's ranges, value hash and
//! signature, and both linked lists (spec §6.1).

use keyway_core::drayer::{Chain, Meta};

use super::{Stream, StreamError};
use crate::sqlite::{Body, SqliteChain};

/// What [`Stream::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: usize,
    /// Each problem, naming the record.
    pub problems: Vec<String>,
}

impl Stream {
    /// Checks every record (ranges, value hash, signature) and both
    /// chains (spec §6.1), naming each problem.
    pub fn verify(&self) -> Result<VerifyReport, StreamError> {
        let chain = SqliteChain::new(&self.conn);
        let mut report = VerifyReport::default();
        let mut by_id = Vec::new();
        let rows = chain.all(None)?;
        // Each record on its own: spread over the machine's cores.
        let public = self.public;
        let check = move |(meta, body): &(Meta, Body)| -> Vec<String> {
            let name = format!("record {} ({} {:?})", meta.id, body.kind, body.key);
            let mut problems = Vec::new();
            if let Err(e) = meta.verify(&public) {
                problems.push(format!("{name}: {e}"));
            }
            // A metadata-only row has no value to check.
            if let Some(value) = &body.value
                && let Err(e) = meta.check_value(value)
            {
                problems.push(format!("{name}: {e}"));
            }
            problems
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = rows.len().div_ceil(threads).max(64);
        let found: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = rows
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().flat_map(check).collect()))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| vec!["a verification thread failed".to_owned()])
                })
                .collect()
        });
        report.problems.extend(found.into_iter().flatten());
        report.records = rows.len();
        by_id.extend(rows.iter().map(|(meta, _)| *meta));
        let back = chain.back()?;
        let mut previous = 0;
        // A partial mirror holds an arbitrary set of ids: only its
        // modification chain, from the back pointer, can be checked.
        for meta in by_id.iter().filter(|_| back == 0) {
            if meta.prev != previous {
                report.problems.push(format!(
                    "ID chain: record {} points at id {}, expected {previous}",
                    meta.id, meta.prev
                ));
            }
            previous = meta.id;
        }
        let mut by_modified = by_id;
        by_modified.sort_by_key(|m| m.modified);
        let mut previous = back;
        for meta in &by_modified {
            if meta.prevchange != previous {
                report.problems.push(format!(
                    "modification chain: record {} follows {}, expected {previous}",
                    meta.id, meta.prevchange
                ));
            }
            previous = meta.modified;
        }
        let foreign = chain.foreign_rows()?;
        if foreign > 0 {
            tracing::info!(foreign, "rows of sibling chains left unchecked");
        }
        Ok(report)
    }
}
