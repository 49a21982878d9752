//! The server's request handling without sockets, for the fuzz targets
//! (`fuzz/`, issue 11): the same [`Handler`] the UDP and TCP listeners
//! call, so a fuzzer reaches decryption, decoding, freshness, signatures,
//! the replay cache and the store's rules exactly as a remote party does.
//! Only with the `fuzzing` feature: servers have no use for it.

use std::net::IpAddr;
use std::sync::Arc;

use keyway_core::Keypair;

use super::Metrics;
use super::handler::Handler;
use super::replay::ReplayCache;
use crate::clock::Clock;
use crate::store::{Limits, NameStore};

/// One server's request handling over `store`, answering as `key`.
pub struct Responder<S>(Arc<Handler<S>>);

impl<S> std::fmt::Debug for Responder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl<S: NameStore> Responder<S> {
    /// A responder as `Server::start` builds one.
    pub fn new(
        key: Keypair,
        store: S,
        clock: Arc<dyn Clock>,
        limits: Limits,
        replay_capacity: usize,
    ) -> Self {
        Self(Arc::new(Handler {
            key,
            store,
            clock,
            limits,
            replay: ReplayCache::new(replay_capacity),
            metrics: Metrics::new(),
        }))
    }

    /// A sealed request as a UDP datagram brings it, through the UDP
    /// listener's path; the sealed reply, if any.
    pub async fn respond_sealed(&self, sealed: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let send = move |reply| drop(tx.send(reply));
        self.0.handle_sealed_then(sealed, source, send).await;
        rx.await.ok()
    }

    /// A request already decrypted; the sealed reply, if any.
    pub async fn respond(&self, plaintext: &[u8], source: IpAddr) -> Option<Vec<u8>> {
        self.0.handle(plaintext, source).await
    }
}
