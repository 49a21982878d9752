//! Inbound packets: the checks that cost no signature, cheapest first,
//! then the signature check the shell runs in the node's order, then the
//! receive rules and the ACKs (spec §4.5–§4.8, §6).
//!
//! ACKs go back through the link the MSG arrived on (the sender is
//! certainly connected there) and the sender's own top brokers that are
//! linked already; a copy of a delivered MSG gets its kept signed ACK
//! again, at most once per half `resend_every` per link, with no
//! signature work.

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::app_packet::{AppPacket, HEADER_LEN};
use crate::sidewire::receiver::Slot;
use crate::sidewire::screen::{Class, Peer};
use crate::signature::DIGEST_LEN;
use crate::time::Instant;

use super::ack_cache::{ACK_LEN, Reack, SourceAcks};
use super::arrival::{InboundRules, after_check, screen_arrival};
use super::{Delivery, Dropped, Event, LinkId, Node, PoolView, Screened, Table, Ticket, seconds};

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const T: usize,
    const O: usize,
    const W: usize,
> Node<P, Sl, Wm, Pe, Ak, L, S, Q, B, T, O, W>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    /// A PUBLISH arrived on `link`: drop it, answer it from what the node
    /// keeps, or queue it for a signature check (the shell keeps the
    /// payload under the returned ticket).
    pub fn handle_message(
        &mut self,
        now: Instant,
        unix: u64,
        link: LinkId,
        topic: &[u8],
        payload: &[u8],
    ) -> Screened {
        self.sign_deferred();
        let (own, max) = (self.topic, self.config.max_message);
        let mut rules = Rules {
            node: self,
            now,
            unix,
            link,
        };
        let class = match screen_arrival(&mut rules, &own, max, unix, topic, payload) {
            Ok((packet, class)) => (packet.src_pk, class),
            Err(dropped) => return Screened::Dropped(dropped),
        };
        let ticket = Ticket(self.next_ticket);
        self.next_ticket = self.next_ticket.wrapping_add(1);
        match self.queues[class.1.rank()].push(class.0, (ticket, link)) {
            Err(_) => Screened::Dropped(Dropped::QueueFull),
            Ok(evicted) => Screened::Queued {
                ticket,
                evicted: evicted.map(|(t, _)| t),
            },
        }
    }

    /// The most urgent packet waiting for its signature check: recently
    /// verified peers first, then claims of peers under suspicion, then
    /// everyone else; arrival order within a class.
    pub fn poll_verify(&mut self) -> Option<(Ticket, LinkId)> {
        self.queues.iter_mut().find_map(|q| q.pop())
    }

    /// The signature of the packet `payload` (ticket from
    /// [`Self::poll_verify`]) was checked: `valid` says how it went. Returns
    /// the message to deliver, if any; ACKs and send completions follow as
    /// transmits and events. A MSG's ACK is signed at the next call (the
    /// next [`Self::poll_transmit`], normally): hand the message to the
    /// application before polling, and it need not wait for the signature.
    pub fn handle_verified(
        &mut self,
        now: Instant,
        unix: u64,
        link: LinkId,
        payload: &[u8],
        valid: bool,
    ) -> Option<Delivery> {
        self.sign_deferred();
        let packet = AppPacket::decode(payload).ok()?;
        if valid {
            self.screen.verified(&packet.src_pk, seconds(now));
        } else {
            self.screen.failed(&packet.src_pk, seconds(now));
            return None;
        }
        let verdict = self.receiver.on_packet(&packet, unix);
        let mut rules = Rules {
            node: self,
            now,
            unix,
            link,
        };
        after_check(&mut rules, &packet, verdict).then_some(Delivery {
            from: packet.src_pk,
            queue_id: packet.queue_id,
            data: HEADER_LEN..payload.len(),
        })
    }

    /// Re-sends the kept signed ACK for an exact copy of a delivered MSG
    /// back the way the copy came, at most once per half `resend_every`
    /// per link.
    fn reack_on(&mut self, now: Instant, packet: &AppPacket<'_>, link: LinkId) -> bool {
        let interval = self.config.resend_every / 2;
        let id = (packet.queue_id, packet.seq_no);
        match self
            .acks
            .reack(&packet.src_pk, id, &packet.digest(), link, now, interval)
        {
            Reack::Send(bytes) => {
                let bytes = *bytes;
                self.outbox.publish_ack(link, packet.src_pk, bytes);
                true
            }
            Reack::Suppressed => true,
            Reack::Unknown => false,
        }
    }

    /// Keeps `ack` for `msg` to be signed at the node's next call
    /// ([`Self::sign_deferred`]): the shell hands the message to its
    /// application first, and the signature's tens of µs come after that
    /// instead of before (issue 13's delivery latency). One at most: an
    /// earlier one is signed now.
    fn sign_and_ack(
        &mut self,
        now: Instant,
        msg: &AppPacket<'_>,
        ack: AppPacket<'static>,
        arrived_on: LinkId,
        first: bool,
    ) {
        self.sign_deferred();
        self.unsigned = Some(UnsignedAck {
            ack,
            to: msg.src_pk,
            id: (msg.queue_id, msg.seq_no),
            digest: msg.digest(),
            arrived_on,
            now,
            first,
        });
    }

    /// Signs the ACK kept by [`Self::sign_and_ack`], keeps it for copies
    /// and publishes it on the link the MSG came by; a first copy's ACK
    /// also goes through the sender's own set ([`super::ack_walk`]). Every
    /// input and [`Self::poll_transmit`] call this first, so the node
    /// decides as if it had signed at once.
    pub(super) fn sign_deferred(&mut self) {
        let Some(u) = self.unsigned.take() else {
            return;
        };
        let mut ack = u.ack;
        ack.sign(&self.key);
        let mut bytes = [0u8; ACK_LEN];
        if ack.encode(&mut bytes).is_err() {
            return;
        }
        self.acks
            .insert(u.to, u.id, u.digest, bytes, Some((u.arrived_on, u.now)));
        self.outbox.publish_ack(u.arrived_on, u.to, bytes);
        if u.first {
            self.ack_on_sender_set(u.now, &u.to, u.arrived_on, bytes);
        }
    }
}

/// An ACK decided and not yet signed ([`Node::sign_deferred`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct UnsignedAck {
    pub(super) ack: AppPacket<'static>,
    pub(super) to: [u8; PUBLIC_KEY_LEN],
    pub(super) id: ([u8; 32], u32),
    pub(super) digest: [u8; DIGEST_LEN],
    pub(super) arrived_on: LinkId,
    pub(super) now: Instant,
    pub(super) first: bool,
}

/// The node's tables seen by the shared rules, for one packet.
struct Rules<'a, N> {
    node: &'a mut N,
    now: Instant,
    unix: u64,
    link: LinkId,
}

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const T: usize,
    const O: usize,
    const W: usize,
> InboundRules for Rules<'_, Node<P, Sl, Wm, Pe, Ak, L, S, Q, B, T, O, W>>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    fn reack(&mut self, packet: &AppPacket<'_>) -> bool {
        self.node.reack_on(self.now, packet, self.link)
    }

    fn expects(&self, ack: &AppPacket<'_>) -> bool {
        self.node
            .pending
            .expects(&ack.src_pk, &ack.queue_id, ack.seq_no)
    }

    fn known_copy(&self, packet: &AppPacket<'_>) -> Option<AppPacket<'static>> {
        self.node.receiver.known_copy(packet, self.unix)
    }

    fn admit(&mut self, src: &[u8; PUBLIC_KEY_LEN], expected: bool) -> Option<Class> {
        let t = seconds(self.now);
        if expected {
            self.node.screen.admit_expected(src, t)
        } else {
            self.node.screen.admit(src, t)
        }
    }

    fn sign_and_ack(&mut self, msg: &AppPacket<'_>, ack: AppPacket<'static>, first: bool) {
        self.node.sign_and_ack(self.now, msg, ack, self.link, first);
    }

    fn complete(&mut self, ack: &AppPacket<'_>, queue_id: [u8; 32], seq_no: u32) {
        let node = &mut *self.node;
        let Some(send) = node.pending.acked(&ack.src_pk, &queue_id, seq_no) else {
            return;
        };
        if let Some(r) = node.route_mut(send.id) {
            r.done = Some(Event::SendAcked(send.id));
        }
        if let Some(broker) = node.links.get(self.link).map(|l| l.broker)
            && node.hints.remember(&ack.src_pk, broker, self.unix)
        {
            node.reached = Some(Event::Reached {
                dest: ack.src_pk,
                broker,
            });
        }
    }
}
