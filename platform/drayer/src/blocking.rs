//! Work moved off the async runtime's threads (SQLite, decoding large
//! responses, waiting on signature checks) onto tokio's blocking pool,
//! with one panic policy for the crate: a panic there is a bug and goes on
//! in the calling task, exactly as if the work had run there.

/// The runtime shut down before the work could finish.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the runtime shut down")]
pub(crate) struct Interrupted;

/// Runs `f` on the blocking pool; a panic in `f` resumes here.
pub(crate) async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Interrupted> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => Ok(out),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(Interrupted),
        },
    }
}
