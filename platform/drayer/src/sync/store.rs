//! A pull's own connection to the stream file, used on the blocking pool
//! (the caller's connection stays borrowed, and cannot move there).

use keyway_core::drayer::VerifyingKey;

use super::SyncError;
use crate::blocking;
use crate::stream::Stream;

pub(super) struct Store {
    stream: Option<Stream>,
    pub(super) public: VerifyingKey,
}

impl Store {
    /// Opens the pull's connection to `stream`'s file. (Takes `&mut`: a
    /// shared borrow held across an await would make the pull `!Send`.)
    pub(super) async fn open<E: std::error::Error + 'static>(
        stream: &mut Stream,
    ) -> Result<Self, SyncError<E>> {
        let reopen = stream.reopener().map_err(SyncError::Local)?;
        let stream = off_thread(reopen).await?.map_err(SyncError::Local)?;
        Ok(Self {
            public: *stream.public_key(),
            stream: Some(stream),
        })
    }

    /// Runs `f` on the connection, on a blocking thread.
    pub(super) async fn run<T: Send + 'static, E: std::error::Error + 'static>(
        &mut self,
        f: impl FnOnce(&mut Stream) -> T + Send + 'static,
    ) -> Result<T, SyncError<E>> {
        let mut stream = self.stream.take().ok_or(SyncError::Interrupted)?;
        let (stream, out) = off_thread(move || {
            let out = f(&mut stream);
            (stream, out)
        })
        .await?;
        self.stream = Some(stream);
        Ok(out)
    }
}

/// Runs `f` on the blocking pool (a panic there goes on here).
pub(super) async fn off_thread<T: Send + 'static, E: std::error::Error + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError<E>> {
    blocking::run(f).await.map_err(|_| SyncError::Interrupted)
}
