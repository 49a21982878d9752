//! Inbound packets: the checks that cost no signature work in arrival
//! order, the fair verify queues, the signature check on a bounded set of
//! verifier tasks, and what the receive rules then decide.

use std::sync::Arc;

use keyway_core::PublicKey;
use keyway_core::sidewire::node::precheck;
use keyway_core::sidewire::node::verify_queue::VerifyQueue;
use keyway_core::sidewire::screen::Class;
use keyway_core::sidewire::{AppPacket, MsgType, Verdict};

use super::{Inner, Message};
use crate::hint_cache;
use crate::link::Inbound;

impl Inner {
    /// Queues a screened packet for its signature check and makes sure a
    /// verifier runs. Never waits: a full queue drops a packet of the key
    /// with the most queued (see [`VerifyQueue`]).
    pub(super) fn enqueue(self: &Arc<Self>, inbound: Inbound, src: [u8; 33], class: Class) {
        let queued = self.to_verify.lock().unwrap_or_else(|e| e.into_inner())[class.rank()]
            .push(src, inbound);
        if queued.is_err() {
            return;
        }
        if let Ok(permit) = self.verifying.clone().try_acquire_owned() {
            let inner = self.clone();
            tokio::spawn(async move { inner.verify_queued(permit).await });
        }
    }

    /// The most urgent queued packet.
    pub(super) fn next_to_verify(&self) -> Option<Inbound> {
        let mut queues = self.to_verify.lock().unwrap_or_else(|e| e.into_inner());
        queues.iter_mut().find_map(VerifyQueue::pop)
    }

    /// A verifier: checks queued packets, most urgent first, until none is
    /// left. Releasing its permit and then looking again means a packet
    /// queued while every permit was held is never stranded.
    pub(super) async fn verify_queued(
        self: Arc<Self>,
        mut permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        loop {
            while let Some(inbound) = self.next_to_verify() {
                if self.closed.is_cancelled() {
                    return;
                }
                self.verify_and_handle(&inbound);
                tokio::task::yield_now().await;
            }
            drop(permit);
            let waiting = self
                .to_verify
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|q| !q.is_empty());
            match self.verifying.clone().try_acquire_owned() {
                Ok(again) if waiting => permit = again,
                _ => return,
            }
        }
    }

    /// `bytes` parsed as a key, from a small cache: peers' keys recur, and
    /// parsing one costs a square root.
    pub(super) fn public_key(&self, bytes: &[u8; 33]) -> Option<PublicKey> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(bytes) {
            return Some(*key);
        }
        let key = PublicKey::from_bytes(bytes).ok()?;
        // Only keys that signed something valid would be worth keeping,
        // but an invalid point is refused above and a valid one is cheap
        // to hold; the bound keeps a flood of fresh keys from growing it.
        if keys.len() >= 1024 {
            keys.clear();
        }
        keys.insert(*bytes, key);
        Some(key)
    }

    /// The checks that cost no signature work, in arrival order. Returns
    /// the packets that still need [`Self::verify_and_handle`], with how
    /// urgently.
    pub(super) fn screen(self: &Arc<Self>, inbound: Inbound) -> Option<(Inbound, [u8; 33], Class)> {
        // Cheapest first, before any budget is charged (see `precheck`).
        let Ok(packet) = precheck(
            self.topic.as_bytes(),
            self.config.max_message,
            self.now(),
            &inbound.topic,
            &inbound.payload,
        ) else {
            return None;
        };
        let expected = packet.msg_type == MsgType::Ack;
        if !expected && self.reack(&packet, inbound.link) {
            return None;
        }
        if expected {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = pending
                .get(&(packet.queue_id, packet.seq_no))
                .is_some_and(|(dest, _)| *dest == packet.src_pk);
            if !waiting {
                // Completed already (fan-out copies) or never ours.
                return None;
            }
        }
        let known = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .known_copy(&packet, self.now());
        if let Some(ack) = known {
            // Delivered, but its signed ACK was forgotten: sign it again.
            if let Some(from) = self.public_key(&packet.src_pk) {
                self.sign_and_ack(&packet, ack, from, inbound.link, false);
            }
            return None;
        }
        let mut screen = self.screen.lock().unwrap_or_else(|e| e.into_inner());
        let class = if expected {
            // Only an ACK for a pending send gets this far.
            screen.admit_expected(&packet.src_pk, self.elapsed())
        } else {
            screen.admit(&packet.src_pk, self.elapsed())
        }?;
        let src = packet.src_pk;
        Some((inbound, src, class))
    }

    /// The signature check and what follows; runs concurrently for
    /// different packets (bounded by [`Inner::verifying`]).
    pub(super) fn verify_and_handle(self: &Arc<Self>, inbound: &Inbound) {
        let Ok(packet) = AppPacket::decode(&inbound.payload) else {
            return;
        };
        let valid = self
            .public_key(&packet.src_pk)
            .filter(|from| packet.verify_as(from).is_ok());
        {
            let mut screen = self.screen.lock().unwrap_or_else(|e| e.into_inner());
            match valid {
                Some(_) => screen.verified(&packet.src_pk, self.elapsed()),
                None => screen.failed(&packet.src_pk, self.elapsed()),
            }
        }
        let Some(from) = valid else {
            return;
        };
        let verdict = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_packet(&packet, self.now());
        match verdict {
            Verdict::Deliver { ack } => {
                // ACK first: the send is tracked before the application
                // sees the message (and may close the router).
                self.sign_and_ack(&packet, ack, from, inbound.link, true);
                let message = Message {
                    from,
                    data: packet.msg.to_vec(),
                    queue_id: packet.queue_id,
                };
                let handlers = self
                    .handlers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for handler in handlers {
                    handler(&message);
                }
            }
            Verdict::Duplicate { ack } => {
                if !self.reack(&packet, inbound.link) {
                    self.sign_and_ack(&packet, ack, from, inbound.link, false);
                }
            }
            Verdict::Acked { queue_id, seq_no } => {
                tracing::debug!(link = inbound.link, seq_no, "ACK received");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending
                    .get(&(queue_id, seq_no))
                    .is_some_and(|(dest, _)| *dest == packet.src_pk)
                    && let Some((_, done)) = pending.remove(&(queue_id, seq_no))
                {
                    drop(pending);
                    // Before the sender learns of it (and may close the router).
                    self.remember_hint(&from, inbound.link);
                    let _ = done.send(());
                }
            }
            Verdict::TooOld => {
                // A copy of a MSG delivered before a flood evicted it:
                // its kept ACK is the sender's only way to learn of it.
                if !self.reack(&packet, inbound.link) {
                    tracing::debug!("MSG older than the replay table covers");
                }
            }
            Verdict::Stale { .. } | Verdict::Conflict | Verdict::Ignored => {}
        }
    }

    /// Remembers that `dest` answered through the link numbered `link`.
    pub(super) fn remember_hint(&self, dest: &PublicKey, link: usize) {
        let address = {
            let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            links
                .iter()
                .find(|(_, l)| l.id() == link)
                .map(|(a, _)| a.clone())
        };
        let Some((host, port)) = address.as_deref().and_then(|a| a.rsplit_once(':')) else {
            return;
        };
        let (host, Ok(port)) = (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse(),
        ) else {
            return;
        };
        let mut hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        if hints.remember(&dest.to_string(), host, port, self.now())
            && let Some((path, bytes)) = hints.snapshot()
        {
            // Off the inbound path; a failed write only loses a hint.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = hint_cache::save(&path, &bytes) {
                    tracing::warn!(error = %e, path = %path.display(), "cannot save broker hints");
                }
            });
        }
    }
}
