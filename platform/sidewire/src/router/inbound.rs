//! Inbound packets: the checks that cost no signature work in arrival
//! order, the fair verify queues, the signature check on a bounded set of
//! verifier tasks, and what the receive rules then decide.

use std::sync::Arc;

use keyway_core::PublicKey;
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::node::arrival::{InboundRules, after_check, screen_arrival};
use keyway_core::sidewire::node::verify_queue::VerifyQueue;
use keyway_core::sidewire::screen::Class;

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
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bytes)
    }

    /// The checks that cost no signature work, in arrival order. Returns
    /// the packets that still need [`Self::verify_and_handle`], with how
    /// urgently.
    pub(super) fn screen(self: &Arc<Self>, inbound: Inbound) -> Option<(Inbound, [u8; 33], Class)> {
        let unix = self.now();
        let mut rules = Rules {
            inner: self,
            link: inbound.link,
            unix,
        };
        let (packet, class) = screen_arrival(
            &mut rules,
            self.topic.as_bytes(),
            self.config.max_message,
            unix,
            &inbound.topic,
            &inbound.payload,
        )
        .ok()?;
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
        let unix = self.now();
        let verdict = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_packet(&packet, unix);
        let mut rules = Rules {
            inner: self,
            link: inbound.link,
            unix,
        };
        if after_check(&mut rules, &packet, verdict) {
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

/// The Router's shared tables seen by the core's inbound rules, for one
/// packet on one link.
struct Rules<'a> {
    inner: &'a Arc<Inner>,
    link: usize,
    unix: u64,
}

impl InboundRules for Rules<'_> {
    fn reack(&mut self, packet: &AppPacket<'_>) -> bool {
        self.inner.reack(packet, self.link)
    }

    fn expects(&self, ack: &AppPacket<'_>) -> bool {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ack.queue_id, ack.seq_no))
            .is_some_and(|(dest, _)| *dest == ack.src_pk)
    }

    fn known_copy(&self, packet: &AppPacket<'_>) -> Option<AppPacket<'static>> {
        self.inner
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .known_copy(packet, self.unix)
    }

    fn admit(&mut self, src: &[u8; 33], expected: bool) -> Option<Class> {
        let mut screen = self.inner.screen.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.inner.elapsed();
        if expected {
            screen.admit_expected(src, now)
        } else {
            screen.admit(src, now)
        }
    }

    fn sign_and_ack(&mut self, msg: &AppPacket<'_>, ack: AppPacket<'static>, first: bool) {
        if let Some(to) = self.inner.public_key(&msg.src_pk) {
            self.inner.sign_and_ack(msg, ack, to, self.link, first);
        }
    }

    fn complete(&mut self, ack: &AppPacket<'_>, queue_id: [u8; 32], seq_no: u32) {
        tracing::debug!(link = self.link, seq_no, "ACK received");
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending
            .get(&(queue_id, seq_no))
            .is_some_and(|(dest, _)| *dest == ack.src_pk)
            && let Some((_, done)) = pending.remove(&(queue_id, seq_no))
        {
            drop(pending);
            // Before the sender learns of it (and may close the router).
            if let Some(from) = self.inner.public_key(&ack.src_pk) {
                self.inner.remember_hint(&from, self.link);
            }
            let _ = done.send(());
        }
    }
}
