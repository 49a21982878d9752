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
//!   capacity, in the caller's buffer: a set-associative table of
//!   [`WAYS`]-slot buckets, found by a keyed hash (the caller's random
//!   seed, so senders cannot aim at one bucket). When a bucket is full the
//!   entry closest to expiring is evicted, and the receiver remembers, for
//!   the evicted entry's *source*, the latest expiry it has evicted: a MSG
//!   from that source that would expire no later than that may be a copy
//!   of a forgotten one, so it is refused ([`Verdict::TooOld`]) rather
//!   than delivered twice. A full table thus narrows the window (fails
//!   closed) instead of opening a replay hole, but only for the sources
//!   whose messages it forgot: these per-source watermarks live in a
//!   fixed-size max-sketch (also the caller's buffer) where each source
//!   owns [`CELLS_PER_SOURCE`] cells chosen by a keyed hash, and its
//!   watermark is the lowest of them. Another source can raise one of A's
//!   cells, but refusing A's fresh messages takes all of them, which needs
//!   many distinct flooding keys (a single node-wide watermark made one
//!   overflowing bucket an off-switch for every peer).
//! - The same payload from the same source in the same queue under another
//!   sequence number, within the first copy's window, is the same message:
//!   ACKed, not delivered again (issue 14). The sidewire 0.1.9 reference
//!   router sends that: its pipe queues each message once per broker
//!   client with one queue id, and a client that is in the pipe twice
//!   numbers its second copy `max(seq) + 1` (spec §4.4; its clients are
//!   keyed by host alone, §10 item 13, so hint brokers on one host with
//!   other ports are one client listed thrice); the reference itself
//!   dedupes by payload hash alone (§4.7), so it never delivers such a
//!   copy twice. Keyed by the verified source
//!   and the sender's random queue id, this keeps what §10 item 5 fixed
//!   (no pre-emption from another key, no loss of a payload repeated in a
//!   new queue, exact bytes): it collapses a subset of what the reference
//!   collapses. The last [`RECENT_CONTENT`] deliveries are remembered
//!   (the copies come within seconds of each other); beyond that a
//!   renumbered copy may be delivered again, as before.

use sha2::{Digest, Sha256};

use crate::identity::PUBLIC_KEY_LEN;
use crate::signature::DIGEST_LEN;

use super::app_packet::{AppPacket, MsgType};

/// Seconds a MSG may be away from the receiver's clock, either way.
pub const FRESHNESS_WINDOW: u64 = 120;

/// Slots per bucket: a lookup reads at most this many.
pub const WAYS: usize = 8;

/// Watermark cells per source in the sketch: a source is refused only if
/// every one of its cells was raised to at least its message's expiry.
pub const CELLS_PER_SOURCE: usize = 8;

/// Deliveries remembered by (source, queue, payload) (when full, the
/// one expiring first makes room): a renumbered copy of one of them is a
/// duplicate.
pub const RECENT_CONTENT: usize = 16;

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
    /// Fresh, but older than what the table can vouch for after evicting
    /// live entries (or the table has no slots): drop, no ACK.
    TooOld,
    /// Same (source, queue, seq) as a delivered MSG but other content: a
    /// forgery by the key holder or a broken sender. Drop, no ACK.
    Conflict,
    /// PROBE or an unknown type: nothing to do.
    Ignored,
}

/// One remembered MSG; the caller provides the table of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Keyed hash of (source, queue, seq): 128 bits, so a match is the
    /// same message.
    id: [u8; 16],
    /// SHA-1 of the signed bytes.
    digest: [u8; DIGEST_LEN],
    /// Keyed hash of the source key: names the watermark cells to raise
    /// when this entry is evicted (fits the struct's padding: 48 bytes).
    source: u32,
    /// Unix seconds after which a copy would be stale anyway; 0: empty.
    expires: u64,
}

impl Slot {
    pub const EMPTY: Self = Self {
        id: [0; 16],
        digest: [0; DIGEST_LEN],
        source: 0,
        expires: 0,
    };
}

// The source tag fits in padding: a slot costs what it did before.
const _: () = assert!(size_of::<Slot>() == 48);

impl Default for Slot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The MSGs a node has delivered recently, in the caller's storage:
/// `[Slot; N]` and `[u64; M]` on a microcontroller, boxed slices on a
/// server.
#[derive(Debug)]
pub struct Receiver<S, W> {
    slots: S,
    /// The per-source watermark sketch: the latest expiry evicted, per
    /// cell (Unix seconds; 0: nothing evicted).
    watermarks: W,
    seed: [u8; 16],
    /// With no watermark cells, the one watermark all sources share.
    evicted_until: u64,
    /// Keyed hashes of (source, queue, payload) of the latest deliveries,
    /// with their expiry (0: empty).
    recent: [([u8; 16], u64); RECENT_CONTENT],
}

impl<S, W> Receiver<S, W>
where
    S: AsRef<[Slot]> + AsMut<[Slot]>,
    W: AsRef<[u64]> + AsMut<[u64]>,
{
    /// A receiver remembering up to `slots.len()` MSGs (a multiple of
    /// [`WAYS`] uses every slot), with `watermarks` as the per-source
    /// sketch (zeroed; more cells let more flooding keys pass before an
    /// honest source can be hit: see the crate's DESIGN.md; with none,
    /// every source shares one watermark). `seed` must be random and
    /// secret.
    pub fn new(slots: S, mut watermarks: W, seed: [u8; 16]) -> Self {
        watermarks.as_mut().fill(0);
        Self {
            slots,
            watermarks,
            seed,
            evicted_until: 0,
            recent: [([0; 16], 0); RECENT_CONTENT],
        }
    }

    /// Entries held (live or not yet overwritten).
    pub fn len(&self) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| s.expires != 0)
            .count()
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
        let id = self.id(packet);
        let digest = packet.digest();
        self.slots.as_ref()[self.bucket(&id)]
            .iter()
            .any(|s| s.id == id && s.digest == digest && s.expires >= now)
            .then(|| packet.ack(now))
    }

    fn on_msg(&mut self, packet: &AppPacket<'_>, now: u64) -> Verdict {
        // The timestamp is the sender's: any u64, so no signed subtraction.
        if now.abs_diff(packet.timestamp) > FRESHNESS_WINDOW {
            let age = i128::from(now) - i128::from(packet.timestamp);
            let age = i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX });
            return Verdict::Stale { age };
        }
        let ack = packet.ack(now);
        let id = self.id(packet);
        let digest = packet.digest();
        let bucket = self.bucket(&id);
        if let Some(seen) = self.slots.as_ref()[bucket.clone()]
            .iter()
            .find(|s| s.id == id && s.expires >= now)
        {
            return if seen.digest == digest {
                Verdict::Duplicate { ack }
            } else {
                Verdict::Conflict
            };
        }
        // After this any copy is stale anyway (|now − ts| > window).
        let expires = packet.timestamp.saturating_add(FRESHNESS_WINDOW);
        let source = self.source(&packet.src_pk);
        if bucket.is_empty() || expires <= self.watermark(source) {
            return Verdict::TooOld;
        }
        let slots = &mut self.slots.as_mut()[bucket];
        // An empty or expired slot, else the one expiring first.
        let Some(slot) = slots
            .iter_mut()
            .min_by_key(|s| if s.expires < now { 0 } else { s.expires })
        else {
            return Verdict::TooOld;
        };
        let evicted = *slot;
        *slot = Slot {
            id,
            digest,
            source,
            expires,
        };
        if evicted.expires >= now {
            self.raise(evicted.source, evicted.expires);
        }
        if self.renumbered(packet, expires, now) {
            Verdict::Duplicate { ack }
        } else {
            Verdict::Deliver { ack }
        }
    }

    /// Whether `packet` repeats the payload of a recent delivery from its
    /// source in its queue (under another seq: the same seq was found
    /// above); remembers it if not, in place of the entry expiring first.
    fn renumbered(&mut self, packet: &AppPacket<'_>, expires: u64, now: u64) -> bool {
        let hash = Sha256::new()
            .chain_update(self.seed)
            .chain_update(b"content")
            .chain_update(packet.src_pk)
            .chain_update(packet.queue_id)
            .chain_update(packet.msg)
            .finalize();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&hash[..16]);
        if self.recent.iter().any(|&(t, e)| t == tag && e >= now) {
            return true;
        }
        if let Some(oldest) = self.recent.iter_mut().min_by_key(|(_, e)| *e) {
            *oldest = (tag, expires);
        }
        false
    }

    /// The keyed hash naming a source's watermark cells.
    fn source(&self, src_pk: &[u8; PUBLIC_KEY_LEN]) -> u32 {
        let hash = Sha256::new()
            .chain_update(self.seed)
            .chain_update(b"source")
            .chain_update(src_pk)
            .finalize();
        u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]])
    }

    /// Indices of the watermark cells of `source`; none without cells.
    fn cells(&self, source: u32) -> Option<[usize; CELLS_PER_SOURCE]> {
        let len = self.watermarks.as_ref().len() as u64;
        if len == 0 {
            return None;
        }
        let mut key = [0u8; 8];
        key.copy_from_slice(&self.seed[8..]);
        let key = u64::from_le_bytes(key) ^ u64::from(source);
        let mut at = [0; CELLS_PER_SOURCE];
        for (i, cell) in (0u64..).zip(at.iter_mut()) {
            *cell = (mix(key ^ (i << 32)) % len) as usize;
        }
        Some(at)
    }

    /// The latest expiry evicted from `source`, as far as the sketch can
    /// tell (never less than the truth).
    fn watermark(&self, source: u32) -> u64 {
        let cells = self.watermarks.as_ref();
        match self.cells(source) {
            Some(at) => at.iter().map(|&i| cells[i]).min().unwrap_or(0),
            None => self.evicted_until,
        }
    }

    fn raise(&mut self, source: u32, expires: u64) {
        let Some(at) = self.cells(source) else {
            self.evicted_until = self.evicted_until.max(expires);
            return;
        };
        let cells = self.watermarks.as_mut();
        for i in at {
            cells[i] = cells[i].max(expires);
        }
    }

    /// The keyed hash naming a message: (source, queue, seq).
    fn id(&self, packet: &AppPacket<'_>) -> [u8; 16] {
        let hash = Sha256::new()
            .chain_update(self.seed)
            .chain_update(packet.src_pk)
            .chain_update(packet.queue_id)
            .chain_update(packet.seq_no.to_be_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&hash[..16]);
        id
    }

    /// The slots of the bucket `id` falls in (empty for an empty table).
    fn bucket(&self, id: &[u8; 16]) -> core::ops::Range<usize> {
        let len = self.slots.as_ref().len();
        let ways = WAYS.min(len);
        let Some(buckets) = len.checked_div(ways) else {
            return 0..0;
        };
        let mut low = [0u8; 8];
        low.copy_from_slice(&id[..8]);
        let at = (u64::from_le_bytes(low) % buckets as u64) as usize * ways;
        at..at + ways
    }
}

/// SplitMix64's finaliser: spreads a keyed source hash over the cells.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;
    use crate::identity::Keypair;

    const NOW: u64 = 1_700_000_000;

    fn msg<'a>(kp: &Keypair, queue: u8, seq: u32, ts: u64, body: &'a [u8]) -> AppPacket<'a> {
        let mut p = AppPacket::new([queue; 32], seq, ts, MsgType::Msg, body);
        p.sign(kp);
        p
    }

    /// The sidewire 0.1.9 reference router queues a message once per
    /// broker client of its pipe, all with the pipe's one queue id; a
    /// client that sits in the pipe twice (hint brokers sharing a host: its
    /// clients are keyed by host alone) numbers its second copy seq 1
    /// (spec §4.4: `max(seq in the queue) + 1`). Both are validly signed; the second is the same
    /// message, so it is ACKed (the reference waits for each copy's ACK)
    /// and not delivered again. Other content, another queue or another
    /// source is a new message, and the collapse ends with the window.
    #[test]
    fn the_same_payload_renumbered_in_its_queue_is_acked_not_delivered_again() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let b = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let mut r = Receiver::new([Slot::EMPTY; 16], [0u64; 64], [7; 16]);
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 0, NOW, b"hi"), NOW),
            Verdict::Deliver { .. }
        ));
        let Verdict::Duplicate { ack } = r.on_packet(&msg(&a, 1, 1, NOW + 1, b"hi"), NOW + 1)
        else {
            panic!("the renumbered copy was delivered again")
        };
        assert_eq!((ack.queue_id, ack.seq_no), ([1; 32], 1));
        // Its own retransmission is a copy of it, as any other.
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 1, NOW + 1, b"hi"), NOW + 2),
            Verdict::Duplicate { .. }
        ));
        for (p, what) in [
            (msg(&a, 1, 2, NOW, b"ho"), "other content in the queue"),
            (msg(&a, 2, 0, NOW, b"hi"), "the payload on another queue"),
            (msg(&b, 1, 0, NOW, b"hi"), "the payload from another source"),
        ] {
            assert!(
                matches!(r.on_packet(&p, NOW + 2), Verdict::Deliver { .. }),
                "{what} is a new message"
            );
        }
        // Past the first copy's window, a renumbered copy is new.
        let late = NOW + FRESHNESS_WINDOW + 1;
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 3, late, b"hi"), late),
            Verdict::Deliver { .. }
        ));
    }

    #[test]
    fn first_copy_delivers_later_copies_only_ack() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let mut r = Receiver::new([Slot::EMPTY; 8], [0u64; 64], [7; 16]);
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
        let mut r = Receiver::new([Slot::EMPTY; 8], [0u64; 64], [7; 16]);
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 0, NOW - 120, b"x"), NOW),
            Verdict::Deliver { .. }
        ));
        assert!(matches!(
            r.on_packet(&msg(&a, 1, 1, NOW + 120, b"y"), NOW),
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
        let mut r = Receiver::new([Slot::EMPTY; 2], [0u64; 64], [7; 16]);
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
        // `old` itself is not delivered again: it might be a replay of a
        // message the table forgot.
        assert_eq!(r.on_packet(&old, NOW), Verdict::TooOld);
        // Once its window closes an entry no longer counts, and its slot is reused.
        assert!(matches!(
            r.on_packet(&msg(&a, 9, 0, NOW + 200, b"z"), NOW + 200),
            Verdict::Deliver { .. }
        ));
    }

    #[test]
    fn a_full_table_never_delivers_a_message_twice() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        // 4 buckets of 8: far fewer slots than messages.
        let mut r = Receiver::new([Slot::EMPTY; 32], [0u64; 64], [9; 16]);
        // Distinct payloads: the same one renumbered in its queue is a
        // duplicate by content (the renumbering test above).
        let bodies: Vec<[u8; 4]> = (0..200u32).map(u32::to_be_bytes).collect();
        let sent: Vec<_> = (0..200u32)
            .zip(&bodies)
            .map(|(i, body)| msg(&a, 1, i, NOW - 100 + u64::from(i / 2), body))
            .collect();
        let mut delivered = 0;
        for p in &sent {
            if matches!(r.on_packet(p, NOW), Verdict::Deliver { .. }) {
                delivered += 1;
            }
        }
        assert!(delivered >= 32, "{delivered}");
        assert_eq!(r.len(), 32);
        // Replaying everything delivers nothing: each copy is either still
        // known or older than what the table can vouch for.
        for p in &sent {
            let verdict = r.on_packet(p, NOW);
            assert!(
                matches!(verdict, Verdict::Duplicate { .. } | Verdict::TooOld),
                "{verdict:?}"
            );
        }
        // A fresh message is still delivered.
        assert!(matches!(
            r.on_packet(&msg(&a, 2, 0, NOW, b"new"), NOW),
            Verdict::Deliver { .. }
        ));
    }

    #[test]
    fn the_seed_decides_the_buckets() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let sent: Vec<_> = (0..64u32).map(|i| msg(&a, 1, i, NOW, b"m")).collect();
        let buckets = |seed| {
            let r = Receiver::new([Slot::EMPTY; 64], [0u64; 64], [seed; 16]);
            sent.iter()
                .map(|p| r.bucket(&r.id(p)).start / WAYS)
                .collect::<Vec<_>>()
        };
        let (three, four) = (buckets(3), buckets(4));
        assert_ne!(three, four, "another seed, another placement");
        // 64 messages reach all 8 buckets.
        assert!((0..8).all(|b| three.contains(&b)), "{three:?}");
    }

    #[test]
    fn an_empty_table_delivers_nothing() {
        let a = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let mut r = Receiver::new([Slot::EMPTY; 0], [0u64; 64], [0; 16]);
        assert_eq!(r.on_packet(&msg(&a, 1, 0, NOW, b"m"), NOW), Verdict::TooOld);
        assert!(r.known_copy(&msg(&a, 1, 0, NOW, b"m"), NOW).is_none());
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
        let mut r = Receiver::new([Slot::EMPTY; 2], [0u64; 64], [7; 16]);
        assert_eq!(
            r.on_packet(&ack, NOW + 999),
            Verdict::Acked {
                queue_id: sent.queue_id,
                seq_no: 7
            }
        );
    }
}
