//! Awaitables backed by tokio tasks: cancelling one aborts its task, and
//! none touches Python while the interpreter shuts down.
//!
//! pyo3-async-runtimes' `future_into_py` completes the asyncio future from a
//! tokio thread with `loop.call_soon_threadsafe`, which releases the GIL
//! while it writes to the loop's wake-up socket. If the program's last
//! await returns in that window, the interpreter starts finalizing; the
//! tokio thread, taking the GIL back, is ended by `pthread_exit`, which
//! unwinds Rust frames that still hold Python objects: a segfault at exit
//! (seen one run in ten). Here every entry into Python from a tokio thread
//! is counted, and an `atexit` hook (registered by `keyway/__init__.py`)
//! stops new entries and waits, on a condition variable, until the counted
//! ones have left before the interpreter goes away. The tasks run on
//! pyo3-async-runtimes' runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::task::AbortHandle;

/// Threads inside Python on behalf of a tokio task, and whether the
/// interpreter is shutting down (then none may enter).
#[derive(Debug)]
struct Entries {
    inside: usize,
    closing: bool,
}

static ENTRIES: Mutex<Entries> = Mutex::new(Entries {
    inside: 0,
    closing: false,
});
/// Signalled when the last thread inside Python leaves.
static LEFT: Condvar = Condvar::new();

/// How long the exit hook waits for a thread still inside Python. Such a
/// thread runs a short hop (completing a future, handing over a message)
/// or a user's clock; only a clock that never returns meets this bound,
/// and then the exit goes on rather than hang (with a warning).
const EXIT_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Bridged tasks not yet finished or aborted (`_live_tasks()`).
static LIVE: AtomicUsize = AtomicUsize::new(0);

fn entries() -> MutexGuard<'static, Entries> {
    // The counts stay consistent even if a holder panicked: every change
    // is a single assignment.
    ENTRIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Leaves Python (even by a panic) and wakes the exit hook when last.
struct Inside;

impl Drop for Inside {
    fn drop(&mut self) {
        let mut entries = entries();
        entries.inside -= 1;
        if entries.inside == 0 {
            LEFT.notify_all();
        }
    }
}

/// Runs `f` with the GIL from a thread Python did not start; `None` once
/// the interpreter is shutting down.
pub(crate) fn with_python<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    let _inside = {
        let mut entries = entries();
        if entries.closing {
            return None;
        }
        entries.inside += 1;
        Inside
    };
    Some(Python::attach(f))
}

/// Counts a bridged task from its spawn until its work is done or it is
/// aborted.
struct Live;

impl Live {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Self
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Done-callback of a bridged asyncio future: when the future was
/// cancelled, the tokio task behind it is aborted (the Rust work stops at
/// its next await, dropping sockets and timers).
#[pyclass(module = "keyway._native", frozen)]
#[derive(Debug)]
struct AbortOnCancel {
    task: AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}

/// An asyncio future on the running loop, completed with `convert(value)`
/// (or the error) when `fut` finishes on the tokio runtime; cancelling it
/// aborts `fut`.
pub(crate) fn spawn<'py, F, T, C>(
    py: Python<'py>,
    fut: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let complete = py.import("keyway")?.getattr("_complete")?;
    let target = (
        event_loop.unbind(),
        future.clone().unbind(),
        complete.unbind(),
    );
    let live = Live::new();
    let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let result = fut.await;
        // Done before Python can see the result: a caller that reads the
        // count after an await never counts the task it awaited.
        drop(live);
        let (event_loop, future, complete) = target;
        with_python(move |py| {
            let (ok, value) = match result.and_then(|v| convert(py, v)) {
                Ok(value) => (true, value),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            // A closed loop means nobody waits for the answer any more.
            let _ =
                event_loop.call_method1(py, "call_soon_threadsafe", (complete, future, ok, value));
        });
    });
    let on_done = Py::new(
        py,
        AbortOnCancel {
            task: task.abort_handle(),
        },
    )?;
    future.call_method1("add_done_callback", (on_done,))?;
    Ok(future)
}

/// Called at interpreter exit (atexit): no new entries; waits until the
/// threads inside Python have left (at most `EXIT_WAIT_LIMIT`).
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    let waited = py.detach(|| {
        let mut entries = entries();
        entries.closing = true;
        LEFT.wait_timeout_while(entries, EXIT_WAIT_LIMIT, |e| e.inside > 0)
            .unwrap_or_else(PoisonError::into_inner)
            .1
    });
    if waited.timed_out() {
        eprintln!(
            "keyway: a callback called from a native thread (a clock?) did not return within {} s of exit; exiting anyway",
            EXIT_WAIT_LIMIT.as_secs()
        );
    }
}

/// How many awaitables' Rust tasks are still running (for tests).
#[pyfunction]
fn _live_tasks() -> usize {
    LIVE.load(Ordering::SeqCst)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AbortOnCancel>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(_live_tasks, m)?)?;
    Ok(())
}
