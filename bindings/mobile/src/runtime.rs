//! The one tokio runtime the library owns: every async call's work runs
//! on it, whatever thread or executor the app calls from (a Kotlin
//! coroutine's dispatcher, a Swift task). The future handed to uniffi only
//! waits for the spawned task, so it needs no runtime of its own; dropping
//! it (the coroutine or task was cancelled) aborts the task, which drops
//! the Rust work at its next await (sockets, timers, a pending send).

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use crate::error::KeywayError;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The library's runtime, started on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, KeywayError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                // A phone has few cores and the work is I/O: two threads.
                .worker_threads(2)
                .thread_name("keyway")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| KeywayError::Network(format!("cannot start the runtime: {e}")))
}

/// Aborts the task when the awaiting future is dropped before it ends.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the library's runtime and waits for it; cancelling the
/// wait (dropping this future) aborts the work.
pub(crate) async fn run<T, F>(work: F) -> Result<T, KeywayError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, KeywayError>> + Send + 'static,
{
    let task = runtime()?.spawn(work);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(result) => result,
        // A panic in the work stays on this side: the caller sees an
        // exception, never a crash.
        Err(e) if e.is_panic() => Err(KeywayError::ServerError(
            "internal error: the call panicked".into(),
        )),
        Err(_) => Err(KeywayError::Network(
            "the call was cancelled: the runtime is shutting down".into(),
        )),
    }
}
