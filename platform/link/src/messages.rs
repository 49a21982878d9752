//! Direct messages between nodes (issue 16, item 5): acknowledged and
//! replay-safe.
//!
//! A message request's body is `id (16 random bytes) ‖ payload`; the
//! answer (the acknowledgement) is the same 16-byte id, sent once the
//! receiving application took the message.
//!
//! - Authenticity: the link proves the sender's secp256k1 identity over
//!   the Noise handshake hash, and every later byte is AEAD-sealed under
//!   that handshake's keys, so a message is as signed as the proof that
//!   opened its link; the receiver learns `from` from the link, never from
//!   the message.
//! - Replay: Noise's nonces refuse a frame replayed within a link, and a
//!   new link has new keys. A sender that did not see an ack sends again
//!   with the same id; the receiver remembers the last [`REMEMBERED_IDS`]
//!   ids of each sender and acknowledges a repeat without delivering it
//!   twice.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use getrandom::SysRng;
use keyway_core::PublicKey;
use keyway_core::link::{Refusal, SeenMessages, Service};
use keyway_core::rand_core::{Rng, UnwrapErr};
use tokio::sync::{mpsc, oneshot};

use crate::connection::LinkHandle;
use crate::error::LinkError;

pub use keyway_core::link::{MESSAGE_ID_LEN, MessageId};
/// Ids remembered per sender for deduplication.
pub const REMEMBERED_IDS: usize = 1024;
/// Senders remembered (the allow-list bounds them anyway; this bounds the
/// memory if it is large).
pub const REMEMBERED_SENDERS: usize = 4096;
/// How long a message may wait for the application before the sender is
/// told `busy` (and tries again).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A new random message id.
pub fn new_id() -> MessageId {
    let mut id = [0u8; MESSAGE_ID_LEN];
    UnwrapErr(SysRng).fill_bytes(&mut id);
    id
}

/// Sends `payload` as message `id` over `link` and waits for the ack.
/// Retrying with the same `id` (on another link) never delivers twice.
pub async fn send(link: &LinkHandle, id: MessageId, payload: &[u8]) -> Result<(), LinkError> {
    let mut body = Vec::with_capacity(MESSAGE_ID_LEN + payload.len());
    body.extend_from_slice(&id);
    body.extend_from_slice(payload);
    let ack = link.request(Service::Message, body).await?;
    if ack != id {
        return Err(LinkError::Refused(Refusal::Failed));
    }
    Ok(())
}

/// A message handed to the application. Call [`Delivery::ack`] once it is
/// taken care of (printed, stored): only then does the sender hear of it.
#[derive(Debug)]
pub struct Delivery {
    /// The proven identity of the sender.
    pub from: PublicKey,
    /// The payload.
    pub payload: Vec<u8>,
    ack: oneshot::Sender<()>,
}

impl Delivery {
    /// Acknowledges the message to its sender.
    pub fn ack(self) {
        let _ = self.ack.send(());
    }
}

/// The receiving end: deduplicates and hands messages to the application.
pub struct Inbox {
    seen: Mutex<SeenMessages>,
    deliveries: mpsc::Sender<Delivery>,
}

impl core::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

impl Inbox {
    /// An inbox and the queue the application reads (at most `depth`
    /// messages waiting).
    pub fn new(depth: usize) -> (Arc<Self>, mpsc::Receiver<Delivery>) {
        let (deliveries, rx) = mpsc::channel(depth.max(1));
        (
            Arc::new(Self {
                seen: Mutex::new(SeenMessages::new(REMEMBERED_SENDERS, REMEMBERED_IDS)),
                deliveries,
            }),
            rx,
        )
    }

    /// Marks `id` from `from` as seen (the core's rule); false if it
    /// already was.
    fn first_time(&self, from: &PublicKey, id: MessageId) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first_time(from.as_bytes(), id)
    }

    fn forget(&self, from: &PublicKey, id: &MessageId) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(from.as_bytes(), id);
    }

    /// Handles one message request from `from`.
    pub fn handle(
        self: &Arc<Self>,
        from: PublicKey,
        body: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        let inbox = self.clone();
        Box::pin(async move {
            let Some(id) = body.get(..MESSAGE_ID_LEN) else {
                return Err(Refusal::Failed);
            };
            let id: MessageId = id.try_into().map_err(|_| Refusal::Failed)?;
            if !inbox.first_time(&from, id) {
                // Delivered before (or being delivered): ack, never twice.
                return Ok(id.to_vec());
            }
            let (ack, acked) = oneshot::channel();
            let delivery = Delivery {
                from,
                payload: body[MESSAGE_ID_LEN..].to_vec(),
                ack,
            };
            let delivered = tokio::time::timeout(DELIVERY_TIMEOUT, async {
                inbox.deliveries.send(delivery).await.ok()?;
                acked.await.ok()
            })
            .await;
            match delivered {
                Ok(Some(())) => Ok(id.to_vec()),
                _ => {
                    inbox.forget(&from, &id);
                    Err(Refusal::Busy)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk() -> PublicKey {
        *keyway_core::Keypair::generate(&mut UnwrapErr(SysRng)).public()
    }

    #[tokio::test]
    async fn a_repeated_id_is_acked_but_delivered_once() {
        let (inbox, mut rx) = Inbox::new(4);
        let from = pk();
        let id = new_id();
        let mut body = id.to_vec();
        body.extend_from_slice(b"hello");
        let first = tokio::spawn(inbox.handle(from, body.clone()));
        let delivery = rx.recv().await.unwrap();
        assert_eq!(delivery.payload, b"hello");
        assert_eq!(delivery.from, from);
        delivery.ack();
        assert_eq!(first.await.unwrap(), Ok(id.to_vec()));
        assert_eq!(inbox.handle(from, body.clone()).await, Ok(id.to_vec()));
        assert!(rx.try_recv().is_err(), "not delivered twice");
        // The same id from another sender is another message.
        let other = tokio::spawn(inbox.handle(pk(), body));
        rx.recv().await.unwrap().ack();
        assert_eq!(other.await.unwrap(), Ok(id.to_vec()));
    }

    #[tokio::test]
    async fn short_bodies_are_refused() {
        let (inbox, _rx) = Inbox::new(1);
        assert_eq!(inbox.handle(pk(), vec![0; 15]).await, Err(Refusal::Failed));
    }

    #[test]
    fn memory_per_sender_is_bounded() {
        let (inbox, _rx) = Inbox::new(1);
        let from = pk();
        let first = new_id();
        assert!(inbox.first_time(&from, first));
        for _ in 0..REMEMBERED_IDS {
            assert!(inbox.first_time(&from, new_id()));
        }
        let remembered = inbox.seen.lock().unwrap().remembered(from.as_bytes());
        assert_eq!(remembered, REMEMBERED_IDS);
        assert!(inbox.first_time(&from, first), "the oldest is forgotten");
    }
}
