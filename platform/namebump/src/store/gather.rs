//! Group commit for a store that writes in batches (issue 12, CPU per
//! PUT): the writes of a batch share one transaction and one fsync, which
//! on SQLite is most of a write's cost in the kernel (the fsync, the WAL
//! writes, the file locks, the writer's wake-ups). A writer that commits as
//! soon as it has anything commits batches of ~3 at 5,000 PUTs/s; one that
//! waits for the writes already on their way commits several times fewer
//! batches for the same writes.
//!
//! The writer keeps a batch open for at most [`GATHER_WINDOW`] after its
//! first write, and only while more writes are coming: while a request
//! that announced its write is still being checked (it announces itself
//! once decoded as a PUT, before its signature is checked, and the
//! announcement ends when its write is queued or it is refused), or while
//! writes arrive faster than batches commit (the previous batch held more
//! than one). A write with none beside it is committed at once, as before.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Longest a batch's first write waits for others on their way. About five
/// times the checks a request still has to pass when it announces itself
/// (its signature and the reply's key agreement, ~0.2 ms on the machine of
/// BENCHMARKS.md), so a busy server gathers what is in flight, while the
/// latency it adds stays far below a UDP client's retry interval.
pub(crate) const GATHER_WINDOW: Duration = Duration::from_millis(1);

/// Writes on their way to a batching writer, and the writer to wake when
/// none is left.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    coming: AtomicUsize,
    /// The writer waits for announced writes only: the last one to be
    /// queued wakes it. Otherwise it sleeps to the end of the window, and
    /// waking it for each write would only cost switches.
    wake_me: AtomicBool,
    writer: OnceLock<Thread>,
}

impl Gather {
    /// Called by the writer thread before it first waits.
    pub(crate) fn set_writer(&self) {
        let _ = self.writer.set(std::thread::current());
    }

    pub(crate) fn announce(self: &Arc<Self>) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(Some(self.clone()))
    }

    /// Waits, on the writer thread, while more writes are coming (see the
    /// module) and `until` has not passed; `busy`: the previous batch held
    /// more than one write. `false`: commit now; `true`: look at the queue
    /// again.
    pub(crate) fn wait(&self, until: Instant, busy: bool) -> bool {
        let now = Instant::now();
        if now >= until {
            return false;
        }
        if busy {
            std::thread::sleep(until - now);
            return true;
        }
        self.wake_me.store(true, Ordering::SeqCst);
        if self.coming.load(Ordering::SeqCst) == 0 {
            self.wake_me.store(false, Ordering::Relaxed);
            return false;
        }
        // An unpark between the load above and this park is not lost: it
        // makes the park return at once.
        std::thread::park_timeout(until - now);
        self.wake_me.store(false, Ordering::Relaxed);
        true
    }
}

/// A write announced to its store; dropping it ends the announcement (the
/// write is queued, or will never come). Stores that do not batch hand out
/// [`Coming::none`].
#[derive(Debug)]
pub struct Coming(Option<Arc<Gather>>);

impl Coming {
    pub fn none() -> Self {
        Self(None)
    }
}

impl Drop for Coming {
    fn drop(&mut self) {
        if let Some(gather) = self.0.take()
            && gather.coming.fetch_sub(1, Ordering::SeqCst) == 1
            && gather.wake_me.load(Ordering::SeqCst)
            && let Some(writer) = gather.writer.get()
        {
            writer.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_with_nothing_announced_does_not_wait() {
        let gather = Arc::new(Gather::default());
        gather.set_writer();
        assert!(!gather.wait(Instant::now() + Duration::from_secs(60), false));
    }

    #[test]
    fn a_writer_waits_until_the_last_announced_write_is_queued() {
        let gather = Arc::new(Gather::default());
        gather.set_writer();
        let coming = gather.announce();
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(coming);
        });
        let started = Instant::now();
        let until = started + Duration::from_secs(60);
        while gather.wait(until, false) {}
        let waited = started.elapsed();
        dropper.join().expect("dropper");
        // Woken by the drop (about 20 ms), not by the 60 s deadline.
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
    }

    #[test]
    fn a_writer_stops_waiting_at_its_deadline() {
        let gather = Arc::new(Gather::default());
        gather.set_writer();
        let _never_queued = gather.announce();
        let started = Instant::now();
        let until = started + Duration::from_millis(30);
        while gather.wait(until, false) {}
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_busy_writer_waits_out_its_window_with_nothing_announced() {
        let gather = Arc::new(Gather::default());
        gather.set_writer();
        let started = Instant::now();
        let until = started + Duration::from_millis(30);
        while gather.wait(until, true) {}
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
