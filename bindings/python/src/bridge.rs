//! Awaitables backed by tokio tasks, finished without ever touching Python
//! while the interpreter shuts down.
//!
//! pyo3-async-runtimes' `future_into_py` completes the asyncio future from a
//! tokio thread with `loop.call_soon_threadsafe`, which releases the GIL
//! while it writes to the loop's wake-up socket. If the program's last
//! await returns in that window, the interpreter starts finalizing; the
//! tokio thread, taking the GIL back, is ended by `pthread_exit`, which
//! unwinds Rust frames that still hold Python objects: a segfault at exit
//! (seen one run in ten). Here every entry into Python from a tokio thread
//! is counted, and an `atexit` hook (registered by `keyway/__init__.py`)
//! stops new entries and waits for the counted ones to leave before the
//! interpreter goes away. The tasks run on pyo3-async-runtimes' runtime.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

static INSIDE: AtomicUsize = AtomicUsize::new(0);
static CLOSING: AtomicBool = AtomicBool::new(false);

/// Runs `f` with the GIL from a thread Python did not start; `None` once
/// the interpreter is shutting down.
pub(crate) fn with_python<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let out = if CLOSING.load(Ordering::SeqCst) {
        None
    } else {
        Some(Python::attach(f))
    };
    INSIDE.fetch_sub(1, Ordering::SeqCst);
    out
}

/// An asyncio future on the running loop, completed with `convert(value)`
/// (or the error) when `fut` finishes on the tokio runtime.
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
    pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let result = fut.await;
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
    Ok(future)
}

/// Called at interpreter exit (atexit): no new entries; waits up to two
/// seconds for threads inside Python to leave.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    CLOSING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(2);
    py.detach(|| {
        while INSIDE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    Ok(())
}
