//! The client's link to the registry server: dialed when first needed,
//! dialed again when it closed (an idle timeout, a server restart), every
//! attempt within the caller's time.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::link::{LinkConfig, Service};
use keyway_link::LinkError;
use keyway_link::PeerAddress;
use keyway_link::connection::{LinkHandle, NoService};
use keyway_link::dial::{dial, with_retries};
use tokio::sync::Mutex;

/// A link to one server, kept while it lasts.
#[derive(Debug)]
pub struct Connector {
    config: Arc<LinkConfig>,
    server: PeerAddress,
    link: Mutex<Option<LinkHandle>>,
}

impl Connector {
    /// Links to `server` (proving the key it names) as `config`'s identity.
    pub fn new(config: Arc<LinkConfig>, server: PeerAddress) -> Self {
        Self {
            config,
            server,
            link: Mutex::new(None),
        }
    }

    /// The server's address.
    pub fn server(&self) -> &PeerAddress {
        &self.server
    }

    /// The link, dialed (with retries) if there is none, within `timeout`.
    pub async fn link(&self, timeout: Duration) -> Result<LinkHandle, LinkError> {
        let mut held = self.link.lock().await;
        if let Some(link) = held.as_ref() {
            return Ok(link.clone());
        }
        let link = with_retries(timeout, |left| {
            dial(self.config.clone(), &self.server, Arc::new(NoService), left)
        })
        .await?;
        *held = Some(link.clone());
        Ok(link)
    }

    /// Forgets the link (it closed): the next [`Self::link`] dials again.
    pub async fn reset(&self) {
        *self.link.lock().await = None;
    }

    /// Sends one request (`body()` makes it) and waits for its answer,
    /// within `timeout`; a link found closed is dialed again once and
    /// `body()` asked again. A write sent twice is still one write: a
    /// second `register` by the owner answers `IDEMPOTENT`, a second
    /// `delete` `ERR:Username not found`, and nothing changes.
    pub async fn request(
        &self,
        service: Service,
        mut body: impl FnMut() -> Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        // At most two attempts: the held link, then a fresh one.
        for attempt in 0..2 {
            let link = self.link(left()).await?;
            match tokio::time::timeout(left(), link.request(service, body())).await {
                Err(_) => return Err(LinkError::Timeout),
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => {
                    let e = LinkError::from(e);
                    if attempt == 1 || !matches!(e, LinkError::Closed(_)) {
                        return Err(e);
                    }
                    self.reset().await;
                }
            }
        }
        Err(LinkError::Timeout)
    }
}
