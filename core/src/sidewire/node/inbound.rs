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
use crate::sidewire::app_packet::{AppPacket, HEADER_LEN, MsgType};
use crate::sidewire::receiver::{FRESHNESS_WINDOW, Slot, Verdict};
use crate::sidewire::screen::{Class, Peer};
use crate::time::Instant;

use super::ack_cache::{ACK_LEN, Reack, SourceAcks};
use super::route::Targets;
use super::{Delivery, Dropped, Event, LinkId, Node, PoolView, Screened, Ticket, seconds};

impl<P, Sl, Wm, Pe, Ak, const L: usize, const S: usize, const Q: usize>
    Node<P, Sl, Wm, Pe, Ak, L, S, Q>
where
    P: PoolView,
    Sl: AsRef<[Slot]> + AsMut<[Slot]>,
    Wm: AsRef<[u64]> + AsMut<[u64]>,
    Pe: AsRef<[Peer]> + AsMut<[Peer]>,
    Ak: AsRef<[SourceAcks]> + AsMut<[SourceAcks]>,
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
        match self.screen_packet(now, unix, link, topic, payload) {
            Ok(class) => {
                let Ok(packet) = AppPacket::decode(payload) else {
                    return Screened::Dropped(Dropped::Malformed);
                };
                let ticket = Ticket(self.next_ticket);
                self.next_ticket = self.next_ticket.wrapping_add(1);
                match self.queues[class.rank()].push(packet.src_pk, (ticket, link)) {
                    Err(_) => Screened::Dropped(Dropped::QueueFull),
                    Ok(evicted) => Screened::Queued {
                        ticket,
                        evicted: evicted.map(|(t, _)| t),
                    },
                }
            }
            Err(dropped) => Screened::Dropped(dropped),
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
    /// transmits and events.
    pub fn handle_verified(
        &mut self,
        now: Instant,
        unix: u64,
        link: LinkId,
        payload: &[u8],
        valid: bool,
    ) -> Option<Delivery> {
        let packet = AppPacket::decode(payload).ok()?;
        if valid {
            self.screen.verified(&packet.src_pk, seconds(now));
        } else {
            self.screen.failed(&packet.src_pk, seconds(now));
            return None;
        }
        match self.receiver.on_packet(&packet, unix) {
            Verdict::Deliver { ack } => {
                // ACK first: the send is tracked before the application
                // sees the message.
                self.sign_and_ack(now, &packet, ack, link, true);
                Some(Delivery {
                    from: packet.src_pk,
                    queue_id: packet.queue_id,
                    data: HEADER_LEN..payload.len(),
                })
            }
            Verdict::Duplicate { ack } => {
                if self.reack(now, &packet, link) == Reacked::Unknown {
                    self.sign_and_ack(now, &packet, ack, link, false);
                }
                None
            }
            Verdict::Acked { queue_id, seq_no } => {
                let send = self.pending.acked(&packet.src_pk, &queue_id, seq_no)?;
                if let Some(r) = self.route_mut(send.id) {
                    r.done = Some(Event::SendAcked(send.id));
                }
                if let Some(broker) = self.links.get(link).map(|l| l.broker)
                    && self.hints.remember(&packet.src_pk, broker, unix)
                {
                    self.reached = Some(Event::Reached {
                        dest: packet.src_pk,
                        broker,
                    });
                }
                None
            }
            Verdict::TooOld => {
                // A copy of a MSG delivered before a flood evicted it: its
                // kept ACK is the sender's only way to learn of it.
                let _ = self.reack(now, &packet, link);
                None
            }
            Verdict::Stale { .. } | Verdict::Conflict | Verdict::Ignored => None,
        }
    }

    /// The checks before the signature, in order; the class to queue in.
    fn screen_packet(
        &mut self,
        now: Instant,
        unix: u64,
        link: LinkId,
        topic: &[u8],
        payload: &[u8],
    ) -> Result<Class, Dropped> {
        let packet = precheck(&self.topic, self.config.max_message, unix, topic, payload)?;
        let expected = packet.msg_type == MsgType::Ack;
        if !expected && self.reack(now, &packet, link) != Reacked::Unknown {
            return Err(Dropped::Reacked);
        }
        if expected
            && !self
                .pending
                .expects(&packet.src_pk, &packet.queue_id, packet.seq_no)
        {
            return Err(Dropped::Unexpected);
        }
        if let Some(ack) = self.receiver.known_copy(&packet, unix) {
            // Delivered, but its signed ACK was forgotten: sign it again.
            self.sign_and_ack(now, &packet, ack, link, false);
            return Err(Dropped::KnownCopy);
        }
        let t = seconds(now);
        let class = if expected {
            // Only an ACK for a pending send gets this far.
            self.screen.admit_expected(&packet.src_pk, t)
        } else {
            self.screen.admit(&packet.src_pk, t)
        };
        class.ok_or(Dropped::Budget)
    }

    /// Re-sends the kept signed ACK for an exact copy of a delivered MSG
    /// back the way the copy came, at most once per half `resend_every`
    /// per link.
    fn reack(&mut self, now: Instant, packet: &AppPacket<'_>, link: LinkId) -> Reacked {
        let interval = self.config.resend_every / 2;
        let id = (packet.queue_id, packet.seq_no);
        match self
            .acks
            .reack(&packet.src_pk, id, &packet.digest(), link, now, interval)
        {
            Reack::Send(bytes) => {
                let bytes = *bytes;
                self.outbox.publish_ack(link, packet.src_pk, bytes);
                Reacked::Sent
            }
            Reack::Suppressed => Reacked::Suppressed,
            Reack::Unknown => Reacked::Unknown,
        }
    }

    /// Signs `ack` for `msg`, keeps it for copies and publishes it on the
    /// link the MSG came by; a first copy's ACK also goes through the
    /// sender's own set where the node is linked already.
    fn sign_and_ack(
        &mut self,
        now: Instant,
        msg: &AppPacket<'_>,
        mut ack: AppPacket<'static>,
        arrived_on: LinkId,
        first: bool,
    ) {
        ack.sign(&self.key);
        let mut bytes = [0u8; ACK_LEN];
        if ack.encode(&mut bytes).is_err() {
            return;
        }
        let to = msg.src_pk;
        self.acks.insert(
            to,
            (msg.queue_id, msg.seq_no),
            msg.digest(),
            bytes,
            Some((arrived_on, now)),
        );
        self.outbox.publish_ack(arrived_on, to, bytes);
        if first {
            self.ack_on_sender_set(now, &to, arrived_on, bytes);
        }
    }

    fn ack_on_sender_set(
        &mut self,
        now: Instant,
        to: &[u8; PUBLIC_KEY_LEN],
        arrived_on: LinkId,
        bytes: [u8; ACK_LEN],
    ) {
        let mut set = Targets::new_empty();
        self.ranked_targets(now, to, 0, &mut set);
        for &b in set.as_slice() {
            if let Some(l) = self.links.to(b).filter(|l| l.up && l.id != arrived_on) {
                let link = l.id;
                self.outbox.publish_ack(link, *to, bytes);
            }
        }
    }
}

/// The first checks of an arrival, cheapest first and before any budget
/// is charged: the node's topic, the size cap, the decoding, then the
/// type and freshness. A MSG outside the freshness window, a PROBE or an
/// unknown type would be refused after the signature check anyway:
/// checking them would only let a replay of a peer's old packets spend
/// that peer's budget.
pub fn precheck<'p>(
    own_topic: &[u8],
    max_message: usize,
    unix: u64,
    topic: &[u8],
    payload: &'p [u8],
) -> Result<AppPacket<'p>, Dropped> {
    if topic != own_topic {
        return Err(Dropped::Topic);
    }
    if payload.len() > max_message {
        return Err(Dropped::TooLarge);
    }
    let packet = AppPacket::decode(payload).map_err(|_| Dropped::Malformed)?;
    match packet.msg_type {
        MsgType::Msg if unix.abs_diff(packet.timestamp) <= FRESHNESS_WINDOW => Ok(packet),
        MsgType::Ack => Ok(packet),
        _ => Err(Dropped::Refused),
    }
}

/// [`Reack`] without the bytes (they went to the outbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reacked {
    Sent,
    Suppressed,
    Unknown,
}
