//! ACKs: signed once per delivered MSG, kept for copies, published back
//! the way the MSG came and through the sender's own brokers, on a
//! bounded number of tasks.

use std::sync::Arc;

use keyway_core::PublicKey;
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::node::LinkId;
use keyway_core::sidewire::node::ack_budget::{AckWork, ack_work};
use keyway_core::sidewire::node::ack_cache::{ACK_LEN, Reack};

use super::Inner;
use crate::link::BrokerLink;

impl Inner {
    /// Re-sends the kept signed ACK for an exact copy of a delivered MSG
    /// back the way the copy came, at most once per half `resend_every`
    /// per link (copies replayed at line rate cost a few publishes), with
    /// no task, permit or signature. Returns whether an ACK is kept for
    /// it (re-sent or suppressed).
    pub(super) fn reack(&self, packet: &AppPacket<'_>, link: usize) -> bool {
        let bytes = {
            let mut acks = self.signed_acks.lock().unwrap_or_else(|e| e.into_inner());
            match acks.reack(
                &packet.src_pk,
                (packet.queue_id, packet.seq_no),
                &packet.digest(),
                LinkId(link as u64),
                self.mono(),
                self.config.resend_every / 2,
            ) {
                Reack::Send(bytes) => *bytes,
                Reack::Suppressed => return true,
                Reack::Unknown => return false,
            }
        };
        let topic = self.public_key(&packet.src_pk).map(|k| k.to_string());
        if let (Some(topic), Some(link)) = (topic, self.live_link(link)) {
            let result = link.try_publish(topic.as_bytes(), &bytes);
            tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK re-sent");
        }
        true
    }

    pub(super) fn live_link(&self, id: usize) -> Option<BrokerLink> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, l)| l.is_alive() && l.id() == id)
            .map(|(_, l)| l.clone())
    }

    /// Signs the ACK for `msg`, keeps it (for later copies) and publishes
    /// it on the link the MSG arrived on. For a first copy (`first`) it
    /// also goes through the sender's own brokers, off the inbound path.
    /// A first ACK is signed here, on the verifier (one signature per
    /// delivered MSG, within the verification budget), so it is kept even
    /// when no ACK task is free; a later copy's ACK is signed in a task,
    /// which may only use the permits not reserved for first ACKs.
    pub(super) fn sign_and_ack(
        self: &Arc<Self>,
        msg: &AppPacket<'_>,
        ack: AppPacket<'static>,
        to: PublicKey,
        arrived_on: usize,
        first: bool,
    ) {
        let id = (msg.queue_id, msg.seq_no);
        let (src, digest) = (msg.src_pk, msg.digest());
        let max = self.config.max_ack_tasks;
        let work = ack_work(first, self.ack_permits.available_permits(), max);
        if work == AckWork::Drop {
            tracing::debug!("ACK dropped: ACK tasks reserved for first copies");
            return;
        }
        if work == AckWork::InTask {
            let Ok(permit) = self.ack_permits.clone().try_acquire_owned() else {
                return;
            };
            let inner = self.clone();
            self.acks.spawn(async move {
                let _permit = permit;
                if let Some(bytes) = inner.keep(src, id, digest, ack, arrived_on) {
                    inner.publish_on(arrived_on, &to, &bytes);
                }
            });
            return;
        }
        let Some(bytes) = self.keep(src, id, digest, ack, arrived_on) else {
            return;
        };
        let permit = match work {
            AckWork::Walk => self.ack_permits.clone().try_acquire_owned().ok(),
            _ => None,
        };
        let Some(permit) = permit else {
            tracing::debug!("ACK walk dropped: too many ACKs under way");
            self.publish_on(arrived_on, &to, &bytes);
            return;
        };
        let inner = self.clone();
        self.acks.spawn(async move {
            let _permit = permit;
            let topic = to.to_string();
            inner.publish_on(arrived_on, &to, &bytes);
            // Never waiting on a link's queue: a full one (a broker not
            // reading) drops this ACK there, as a datagram would be.
            let mut sent = vec![arrived_on];
            let publish = |link: BrokerLink| {
                // Once per broker: the MSG often arrived on the sender's own set.
                if !sent.contains(&link.id()) {
                    sent.push(link.id());
                    let result = link.try_publish(topic.as_bytes(), &bytes);
                    tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK published");
                }
            };
            // Connects are bounded by their own timeout; this bounds the
            // task whatever the brokers do.
            let walk = inner.walk(inner.set_walk(&to, 0), publish);
            let _ = tokio::time::timeout(inner.config.link.connect_timeout, walk).await;
        });
    }

    /// Signs `ack` and keeps it for copies of the MSG (src, id, digest),
    /// as sent on `arrived_on` just now.
    pub(super) fn keep(
        &self,
        src: [u8; 33],
        id: ([u8; 32], u32),
        digest: [u8; keyway_core::signature::DIGEST_LEN],
        mut ack: AppPacket<'static>,
        arrived_on: usize,
    ) -> Option<[u8; ACK_LEN]> {
        ack.sign(&self.key);
        let mut bytes = [0u8; ACK_LEN];
        ack.encode(&mut bytes).ok()?;
        self.signed_acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                src,
                id,
                digest,
                bytes,
                Some((LinkId(arrived_on as u64), self.mono())),
            );
        Some(bytes)
    }

    /// Publishes an ACK to `to` on the link numbered `id`, if it is up,
    /// never waiting on its queue.
    pub(super) fn publish_on(&self, id: usize, to: &PublicKey, bytes: &[u8]) {
        if let Some(link) = self.live_link(id) {
            let result = link.try_publish(to.to_string().as_bytes(), bytes);
            tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK published");
        }
    }
}
