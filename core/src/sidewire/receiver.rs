//! What a node does with a verified inbound packet: deliver, ACK, or drop
//! (spec §4.5–4.8, with the fixes of §10 items 4, 5 and 9).
//!
//! - Freshness is two-sided: `|now − timestamp| ≤ 120 s` for MSGs (the
//!   reference had no future bound, so a fast clock minted replayable
//!   packets).
//! - Duplicates are recognised by (source, queue, seq) plus the digest of
//!   the signed bytes, not by payload content shared across every sender
//!   (the reference dropped, yet ACKed, any repeated payload from anyone).
//! - Every copy of a MSG gets one ACK, with no retransmission timer: the
//!   sender's retransmissions drive re-ACKs (the reference re-sent each ACK
//!   for 60 s and never forgot it).
//! - State expires with the freshness window and the table has a fixed
//!   capacity: when it is full, the entry closest to expiring is evicted
//!   (it is the one whose replay window ends first).

use crate::identity::PUBLIC_KEY_LEN;
use crate::signature::DIGEST_LEN;

use super::app_packet::{AppPacket, MsgType};

/// Seconds a MSG may be away from the receiver's clock, either way.
pub const FRESHNESS_WINDOW: u64 = 120;

/// What to do with a verified packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First copy of a MSG: hand it to the application, then send `ack`.
    Deliver { ack: AppPacket<'static> },
    /// Another copy of a MSG already delivered: send `ack`, deliver nothing.
    Duplicate { ack: AppPacket<'static> },
    /// An ACK for (queue, seq) from the packet's source: for the sender side.
    Acked { queue_id: [u8; 32], seq_no: u32 },
    /// Outside the freshness window: drop, no ACK.
    Stale { age: i64 },
    /// Same (source, queue, seq) as a delivered MSG but other content: a
    /// forgery by the key holder or a broken sender. Drop, no ACK.
    Conflict,
    /// PROBE or an unknown type: nothing to do.
    Ignored,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    src: [u8; PUBLIC_KEY_LEN],
    queue_id: [u8; 32],
    seq_no: u32,
    digest: [u8; DIGEST_LEN],
    /// Unix seconds after which a copy would be stale anyway.
    expires: u64,
}

/// The MSGs a node has delivered recently; `N` is the capacity.
#[derive(Debug)]
pub struct Receiver<const N: usize> {
    seen: [Option<Seen>; N],
}

impl<const N: usize> Default for Receiver<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Receiver<N> {
    pub const fn new() -> Self {
        Self { seen: [None; N] }
    }

    /// Entries held (live or not yet overwritten).
    pub fn len(&self) -> usize {
        self.seen.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Judges a packet whose signature has been verified. `now` is the
    /// receiver's clock in Unix seconds.
    pub fn on_packet(&mut self, packet: &AppPacket<'_>, now: u64) -> Verdict {
        match packet.msg_type {
            MsgType::Msg => self.on_msg(packet, now),
            // ACKs carry no freshness check (spec §4.8): they only complete
            // a send that is still waiting, which bounds them.
            MsgType::Ack => Verdict::Acked {
                queue_id: packet.queue_id,
                seq_no: packet.seq_no,
            },
            MsgType::Probe | MsgType::Unknown(_) => Verdict::Ignored,
        }
    }

    /// The ACK for `packet` if it is an exact copy (same source, queue,
    /// seq and signed bytes) of a MSG already delivered and still within
    /// its window. Such a copy needs no signature check: its content was
    /// verified when first seen, and acknowledging it again reveals
    /// nothing new. Lets a node skip the verification of fan-out copies.
    pub fn known_copy(&self, packet: &AppPacket<'_>, now: u64) -> Option<AppPacket<'static>> {
        if packet.msg_type != MsgType::Msg {
            return None;
        }
        let digest = packet.digest();
        self.seen
            .iter()
            .flatten()
            .any(|s| {
                s.src == packet.src_pk
                    && s.queue_id == packet.queue_id
                    && s.seq_no == packet.seq_no
                    && s.digest == digest
                    && s.expires >= now
            })
            .then(|| packet.ack(now))
    }

    fn on_msg(&mut self, packet: &AppPacket<'_>, now: u64) -> Verdict {
        let age = now as i64 - packet.timestamp as i64;
        if age.unsigned_abs() > FRESHNESS_WINDOW {
            return Verdict::Stale { age };
        }
        let ack = packet.ack(now);
        let digest = packet.digest();
        let same_message = |s: &Seen| {
            s.src == packet.src_pk && s.queue_id == packet.queue_id && s.seq_no == packet.seq_no
        };
        if let Some(seen) = self
            .seen
            .iter()
            .flatten()
            .find(|s| same_message(s) && s.expires >= now)
        {
            return if seen.digest == digest {
                Verdict::Duplicate { ack }
            } else {
                Verdict::Conflict
            };
        }
        let entry = Seen {
            src: packet.src_pk,
            queue_id: packet.queue_id,
            seq_no: packet.seq_no,
            digest,
            // After this any copy is stale anyway (|now − ts| > window).
            expires: packet.timestamp.saturating_add(FRESHNESS_WINDOW),
        };
        self.remember(entry, now);
        Verdict::Deliver { ack }
    }

    fn remember(&mut self, entry: Seen, now: u64) {
        // A free slot, else an expired one, else the one expiring first.
        let slot = self
            .seen
            .iter()
            .position(Option::is_none)
            .or_else(|| {
                self.seen
                    .iter()
                    .position(|s| s.is_some_and(|s| s.expires < now))
            })
            .or_else(|| (0..N).min_by_key(|&i| self.seen[i].map_or(0, |s| s.expires)));
        if let Some(i) = slot {
            self.seen[i] = Some(entry);
        }
    }
}

/// Whether an ACK completes a send: it must come from the destination the
/// MSG was sent to and name the MSG's queue and sequence number (spec §4.8;
/// keys compare as bytes, so there is no upper/lower-case hex pitfall).
pub fn ack_completes(
    sent_to: &[u8; PUBLIC_KEY_LEN],
    sent: (&[u8; 32], u32),
    ack: &AppPacket<'_>,
) -> bool {
    ack.msg_type == MsgType::Ack
        && ack.src_pk == *sent_to
        && ack.queue_id == *sent.0
        && ack.seq_no == sent.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    const NOW: u64 = 1_700_000_000;

    fn msg<'a>(kp: &Keypair, queue: u8, seq: u32, ts: u64, body: &'a [u8]) -> AppPacket<'a> {
        let mut p = AppPacket::new([queue; 32], seq, ts, MsgType::Msg, body);
        p.sign(kp);
        p
    }

    #[test]
    fn first_copy_delivers_later_copies_only_ack() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let mut r = Receiver::<8>::new();
        let p = msg(&a, 1, 0, NOW, b"hi");
        let Verdict::Deliver { ack } = r.on_packet(&p, NOW) else {
            panic!("not delivered")
        };
        assert_eq!(
            (ack.msg_type, ack.queue_id, ack.seq_no, ack.msg),
            (MsgType::Ack, p.queue_id, 0, &b"ack"[..])
        );
        assert!(matches!(
            r.on_packet(&p, NOW + 1),
            Verdict::Duplicate { .. }
        ));
        // A retransmission signed anew (other nonce, same signed bytes) is the same message.
        let mut resigned = p;
        resigned.sig = [0; 64];
        assert!(matches!(
            r.on_packet(&resigned, NOW + 2),
            Verdict::Duplicate { .. }
        ));
        // The same payload from someone else, or on another queue, is new.
        let b = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        assert!(matches!(
            r.on_packet(&msg(&b, 1, 0, NOW, b"hi"), NOW),
            Verdict::Deliver { .. }
        ));
        assert!(matches!(
            r.on_packet(&msg(&a, 2, 0, NOW, b"hi"), NOW),
            Verdict::Deliver { .. }
        ));
        // Other content under a delivered (source, queue, seq): refused.
        assert_eq!(
            r.on_packet(&msg(&a, 1, 0, NOW, b"ho"), NOW),
            Verdict::Conflict
        );
    }

    #[test]
    fn freshness_is_two_sided() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let mut r = Receiver::<8>::new();
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 0, NOW - 120, b"x"), NOW),
            Verdict::Deliver { .. }
        ));
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 1, NOW + 120, b"x"), NOW),
            Verdict::Deliver { .. }
        ));
        assert_eq!(
            r.on_packet(&msg(&a, 1, 2, NOW - 121, b"x"), NOW),
            Verdict::Stale { age: 121 }
        );
        assert_eq!(
            r.on_packet(&msg(&a, 1, 3, NOW + 121, b"x"), NOW),
            Verdict::Stale { age: -121 }
        );
    }

    #[test]
    fn capacity_is_fixed_and_the_first_to_expire_goes() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let mut r = Receiver::<2>::new();
        let old = msg(&a, 1, 0, NOW - 100, b"old");
        let mid = msg(&a, 1, 1, NOW - 50, b"mid");
        let new = msg(&a, 1, 2, NOW, b"new");
        for p in [&old, &mid, &new] {
            assert!(matches!(r.on_packet(p, NOW), Verdict::Deliver { .. }));
        }
        assert_eq!(r.len(), 2);
        // `old` (expiring first) was evicted; the others are still known.
        assert!(matches!(r.on_packet(&mid, NOW), Verdict::Duplicate { .. }));
        assert!(matches!(r.on_packet(&new, NOW), Verdict::Duplicate { .. }));
        // Once its window closes an entry no longer counts, and its slot is reused.
        assert!(matches!(
            r.on_packet(&msg(&a, 9, 0, NOW + 200, b"z"), NOW + 200),
            Verdict::Deliver { .. }
        ));
    }

    #[test]
    fn acks_complete_only_the_matching_send() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let b = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let sent = msg(&a, 4, 7, NOW, b"m");
        let mut ack = sent.ack(NOW);
        ack.sign(&b);
        let to_b = *b.public().as_bytes();
        assert!(ack_completes(&to_b, (&sent.queue_id, 7), &ack));
        assert!(!ack_completes(
            a.public().as_bytes(),
            (&sent.queue_id, 7),
            &ack
        ));
        assert!(!ack_completes(&to_b, (&sent.queue_id, 8), &ack));
        let mut r = Receiver::<2>::new();
        assert_eq!(
            r.on_packet(&ack, NOW + 999),
            Verdict::Acked {
                queue_id: sent.queue_id,
                seq_no: 7
            }
        );
    }
}
