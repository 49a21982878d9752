//! Signalling for a phone app: a sidewire node on a broker pool, with
//! inbound messages handed to a listener the app implements.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::PublicKey;
use keyway_sidewire::{Message, Pool, Router, system_time};

use crate::error::KeywayError;
use crate::keypair::Keypair;
use crate::runtime::{run, runtime};

/// The longest wait a `send` may ask for (a longer timeout waits this long).
const MAX_SEND_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a dropped node lets the ACKs of delivered messages go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Receives the node's inbound messages, on one of the library's threads:
/// return quickly (hand the message to the app's own dispatcher).
#[uniffi::export(callback_interface)]
pub trait MessageListener: Send + Sync {
    fn on_message(&self, from_pk_hex: String, message: Vec<u8>);
}

/// A node: sends acknowledged messages to public keys and receives theirs.
/// Dropping it (Kotlin's `close()`, Swift's deinit) leaves the pool.
#[derive(uniffi::Object)]
pub struct SidewireNode {
    router: Router,
}

impl std::fmt::Debug for SidewireNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidewireNode")
            .field("public_key", self.router.public_key())
            .finish_non_exhaustive()
    }
}

impl Drop for SidewireNode {
    fn drop(&mut self) {
        // `close` is async (it lets ACKs in flight go out); a drop cannot
        // wait, so the runtime finishes it.
        if let Ok(rt) = runtime() {
            let router = self.router.clone();
            rt.spawn(async move { router.close(CLOSE_GRACE).await });
        }
    }
}

#[uniffi::export]
impl SidewireNode {
    /// A node for `keypair` on the brokers of `pool_toml` (a pool file's
    /// text: `[[broker]]` tables with `host` and `port`), not yet connected.
    #[uniffi::constructor]
    pub fn new(
        keypair: Arc<Keypair>,
        pool_toml: String,
        listener: Box<dyn MessageListener>,
    ) -> Result<Arc<Self>, KeywayError> {
        let pool = Pool::from_toml(&pool_toml)
            .map_err(|e| KeywayError::InvalidInput(format!("broker pool: {e}")))?;
        let handler = Arc::new(move |m: &Message| {
            // An exception thrown by the app's listener reaches Rust as a
            // panic (uniffi); it loses that one message and must not end
            // the node's inbound task.
            let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                listener.on_message(m.from.to_string(), m.data.to_vec());
            }));
            drop(delivered);
        });
        let _context = runtime()?.enter();
        let router = Router::new(keypair.inner.clone(), Some(handler), system_time, pool);
        Ok(Arc::new(Self { router }))
    }

    /// Joins the pool; fails with `Network` when no broker can be reached.
    pub async fn start(&self) -> Result<(), KeywayError> {
        let router = self.router.clone();
        run(async move { Ok(router.start().await?) }).await
    }

    /// Sends `message` to `dest_pk_hex` and returns once the destination
    /// acknowledged it; `Timeout` when it did not within `timeout_ms`.
    /// Cancelling the caller stops the sending.
    pub async fn send(
        &self,
        dest_pk_hex: String,
        message: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<(), KeywayError> {
        let dest = dest_pk_hex
            .trim()
            .parse::<PublicKey>()
            .map_err(|e| KeywayError::InvalidInput(format!("destination public key: {e}")))?;
        let timeout = Duration::from_millis(timeout_ms).min(MAX_SEND_TIMEOUT);
        let pipe = self.router.pipe(dest);
        run(async move { Ok(pipe.send(&message, timeout).await?) }).await
    }

    /// This node's public key, 66 hex digits.
    pub fn public_key_hex(&self) -> String {
        self.router.public_key().to_string()
    }

    /// Sends waiting for their acknowledgement right now (a cancelled send
    /// leaves this count).
    pub fn pending_sends(&self) -> u64 {
        u64::try_from(self.router.pending_sends()).unwrap_or(u64::MAX)
    }
}
