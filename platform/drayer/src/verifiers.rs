//! Signature checks for a pull, on threads that live as long as the pull:
//! a page's records are checked on every core while the pulling thread
//! applies the page before it (starting threads per page cost ~6 % of the
//! applying thread).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;

use keyway_core::drayer::{Meta, RecordError, Verified, VerifyingKey};

/// Per record of a page, its signature check.
pub(crate) type Checks = Vec<Result<Verified, RecordError>>;

/// Worker threads, each taking every page handed to the pool.
pub(crate) struct Verifiers {
    workers: Vec<(mpsc::Sender<Arc<Job>>, JoinHandle<()>)>,
}

/// A page being checked: whoever is free takes the next unchecked record.
pub(crate) struct Checking {
    job: Arc<Job>,
}

struct Job {
    metas: Vec<Meta>,
    key: VerifyingKey,
    next: AtomicUsize,
    results: Mutex<Vec<Option<Result<Verified, RecordError>>>>,
    /// Records not yet checked (or given up on); `done` is signalled at 0.
    left: Mutex<usize>,
    done: Condvar,
}

/// Counts a claimed record as finished even if its check panicked, so
/// [`Checking::finish`] never waits for it forever.
struct Claim<'a>(&'a Job);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut left = self.0.left.lock().unwrap_or_else(|e| e.into_inner());
        *left -= 1;
        if *left == 0 {
            self.0.done.notify_all();
        }
    }
}

impl Job {
    /// Checks records until none is left to take.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(meta) = self.metas.get(i) else {
                return;
            };
            let _claim = Claim(self);
            let checked = Verified::check(meta, &self.key);
            self.results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(checked);
        }
    }
}

impl Verifiers {
    /// One worker per core beyond the caller's, which helps with each page
    /// it waits for (at least one, so the next page is checked while the
    /// caller applies the current one).
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = (0..cores.saturating_sub(1).max(1))
            .filter_map(|i| {
                let (tx, rx) = mpsc::channel::<Arc<Job>>();
                std::thread::Builder::new()
                    .name(format!("drayer-verify-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job.work();
                        }
                    })
                    // Without workers the caller checks every record itself.
                    .ok()
                    .map(|handle| (tx, handle))
            })
            .collect();
        Self { workers }
    }

    /// Starts checking `metas` against `key` on the workers.
    pub(crate) fn start(&self, metas: Vec<Meta>, key: VerifyingKey) -> Checking {
        let job = Arc::new(Job {
            results: Mutex::new(vec![None; metas.len()]),
            left: Mutex::new(metas.len()),
            metas,
            key,
            next: AtomicUsize::new(0),
            done: Condvar::new(),
        });
        for (tx, _) in &self.workers {
            // A worker that is gone leaves its share to the others.
            let _ = tx.send(job.clone());
        }
        Checking { job }
    }
}

impl Drop for Verifiers {
    fn drop(&mut self) {
        for (tx, handle) in self.workers.drain(..) {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for Checking {
    /// A page given up on (the pull failed) is not checked further.
    fn drop(&mut self) {
        self.job.next.store(self.job.metas.len(), Ordering::Relaxed);
    }
}

impl Checking {
    /// Per record, its check; this thread helps with what is left, then
    /// waits for the records the workers hold. A record whose check did
    /// not complete counts as unverified.
    pub(crate) fn finish(&self) -> Checks {
        self.job.work();
        let mut left = self.job.left.lock().unwrap_or_else(|e| e.into_inner());
        while *left > 0 {
            left = self.job.done.wait(left).unwrap_or_else(|e| e.into_inner());
        }
        drop(left);
        let results =
            std::mem::take(&mut *self.job.results.lock().unwrap_or_else(|e| e.into_inner()));
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(RecordError::Signature)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use keyway_core::drayer::{SigningKey, hash};

    use super::*;

    fn signed(n: u64, key: &SigningKey) -> Vec<Meta> {
        (1..=n)
            .map(|id| {
                let t = id as i64 * 1_000;
                let mut meta = Meta::new(id, t, t, id - 1, 0, "k", "obj", hash(b"v"));
                meta.sign(key);
                meta
            })
            .collect()
    }

    #[test]
    fn each_record_gets_its_own_verdict_page_after_page() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifiers = Verifiers::new();
        for page in 0..50 {
            let mut metas = signed(100, &key);
            let bad = (page * 7) % 100;
            metas[bad].signature[0] ^= 1;
            let checks = verifiers.start(metas, key.verifying_key()).finish();
            assert_eq!(checks.len(), 100);
            for (i, check) in checks.iter().enumerate() {
                assert_eq!(check.is_err(), i == bad, "page {page} record {i}");
            }
        }
        // Another key's records verify nowhere.
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let checks = verifiers.start(signed(10, &key), other).finish();
        assert!(checks.iter().all(Result::is_err));
        // An empty page finishes at once.
        assert!(verifiers.start(Vec::new(), other).finish().is_empty());
    }

    #[test]
    fn pages_given_up_on_do_not_keep_the_pool_busy() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifiers = Verifiers::new();
        for _ in 0..20 {
            drop(verifiers.start(signed(100, &key), key.verifying_key()));
        }
        let checks = verifiers
            .start(signed(3, &key), key.verifying_key())
            .finish();
        assert!(checks.iter().all(Result::is_ok));
        drop(verifiers);
    }
}
