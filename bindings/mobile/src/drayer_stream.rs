//! Streams for a phone app: a Drayer stream file the app owns or mirrors,
//! and pulling a mirror up to date from a Drayer HTTP server. Values are
//! records of type `obj` holding the bytes as given (what `keyway drayer
//! set --raw` writes); the app picks their encoding (msgpack, for the
//! original's dict API).

use std::path::PathBuf;
use std::sync::Arc;

use keyway_drayer::http::HttpSource;
use keyway_drayer::sync::pull;
use keyway_drayer::{Stream, parse_public_key};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::KeywayError;
use crate::runtime::run;

/// The record type the key-value calls use.
const KIND: &str = "obj";

/// One stream file. Calls are serialised on the file.
#[derive(Debug, uniffi::Object)]
pub struct DrayerStream {
    stream: Arc<Mutex<Stream>>,
}

impl DrayerStream {
    fn new(stream: Stream) -> Arc<Self> {
        Arc::new(Self {
            stream: Arc::new(Mutex::new(stream)),
        })
    }

    /// The file, waiting for a `sync` in progress. Called from the app's
    /// threads, or from one of the runtime's (a message listener that
    /// writes a stream), where blocking must be announced to tokio.
    fn lock(&self) -> MutexGuard<'_, Stream> {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| self.stream.blocking_lock())
        } else {
            self.stream.blocking_lock()
        }
    }
}

#[uniffi::export]
impl DrayerStream {
    /// Creates a stream file at `path`, with a new key (its private key
    /// beside it, `path` + ".privatekey").
    #[uniffi::constructor]
    pub fn create(path: String) -> Result<Arc<Self>, KeywayError> {
        Ok(Self::new(Stream::create(&PathBuf::from(path))?))
    }

    /// Opens the stream file at `path` (owned or mirrored).
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<Self>, KeywayError> {
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(KeywayError::InvalidInput(format!(
                "{} does not exist",
                path.display()
            )));
        }
        Ok(Self::new(Stream::open(&path)?))
    }

    /// Creates an empty mirror at `path` of the stream whose Ed25519 public
    /// key is `public_key_b64`; `sync` fills it.
    #[uniffi::constructor]
    pub fn mirror(path: String, public_key_b64: String) -> Result<Arc<Self>, KeywayError> {
        let key = parse_public_key(public_key_b64.trim())?;
        Ok(Self::new(Stream::mirror(&PathBuf::from(path), key)?))
    }

    /// The stream's public key, base64.
    pub fn public_key_b64(&self) -> String {
        self.lock().public_key_base64()
    }

    /// Sets `key` to `value` (signed; owner only, else `NotOwner`).
    pub fn set(&self, key: String, value: Vec<u8>) -> Result<(), KeywayError> {
        self.lock().set(&key, KIND, &value)?;
        Ok(())
    }

    /// The value of `key`, verified; null when absent.
    pub fn get(&self, key: String) -> Result<Option<Vec<u8>>, KeywayError> {
        Ok(self.lock().get(&key, KIND)?)
    }

    /// Deletes `key` (owner only); deleting a missing key does nothing.
    pub fn delete(&self, key: String) -> Result<(), KeywayError> {
        match self.lock().delete(&key, KIND) {
            Err(keyway_drayer::StreamError::Write(keyway_core::drayer::WriteError::NotFound)) => {
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// The keys held, in record order.
    pub fn keys(&self) -> Result<Vec<String>, KeywayError> {
        let entries = self.lock().list(Some(KIND))?;
        Ok(entries.into_iter().map(|e| e.key).collect())
    }

    /// Pulls everything newer from the Drayer HTTP server at `url` (e.g.
    /// "http://host:33125/"), verifying every record.
    pub async fn sync(&self, url: String) -> Result<(), KeywayError> {
        let stream = self.stream.clone();
        run(async move {
            let mut stream = stream.lock().await;
            let mut source = HttpSource::new(&url, *stream.public_key());
            pull(&mut stream, &mut source).await?;
            Ok(())
        })
        .await
    }
}
