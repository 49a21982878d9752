//! The order of a node's inbound rules, for every shell: the checks that
//! cost no signature (cheapest first, before any budget is charged), then
//! what a checked packet's [`Verdict`] leads to.
//!
//! Written once over [`InboundRules`], which [`super::Node`] implements
//! over its own tables and the tokio Router over its shared ones, so the
//! order cannot drift between faces.

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::app_packet::{AppPacket, MsgType};
use crate::sidewire::receiver::{FRESHNESS_WINDOW, Verdict};
use crate::sidewire::screen::Class;

use super::Dropped;

/// What the rules need from a node, for one packet on one link.
pub trait InboundRules {
    /// Re-sends the kept signed ACK for an exact copy of an acknowledged
    /// MSG (at most once per interval per link); whether one is kept.
    fn reack(&mut self, packet: &AppPacket<'_>) -> bool;
    /// Whether a send waits for this ACK (its destination, queue, seq).
    fn expects(&self, ack: &AppPacket<'_>) -> bool;
    /// The ACK for a copy of a MSG the replay table knows ([`Receiver::known_copy`]).
    ///
    /// [`Receiver::known_copy`]: crate::sidewire::Receiver::known_copy
    fn known_copy(&self, packet: &AppPacket<'_>) -> Option<AppPacket<'static>>;
    /// The screen's budgets ([`Screen::admit`], or
    /// [`Screen::admit_expected`] for an awaited ACK).
    ///
    /// [`Screen::admit`]: crate::sidewire::Screen::admit
    /// [`Screen::admit_expected`]: crate::sidewire::Screen::admit_expected
    fn admit(&mut self, src: &[u8; PUBLIC_KEY_LEN], expected: bool) -> Option<Class>;
    /// Signs `ack`, keeps it for copies and publishes it back the way
    /// `msg` came; a `first` copy's ACK also goes to the sender's set.
    fn sign_and_ack(&mut self, msg: &AppPacket<'_>, ack: AppPacket<'static>, first: bool);
    /// A verified ACK completes the send of (queue, seq) to its source.
    fn complete(&mut self, ack: &AppPacket<'_>, queue_id: [u8; 32], seq_no: u32);
}

/// The first checks of an arrival: the node's topic, the size cap, the
/// decoding, then the type and freshness. A MSG outside the freshness
/// window, a PROBE or an unknown type would be refused after the
/// signature check anyway: checking them would only let a replay of a
/// peer's old packets spend that peer's budget.
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

/// Every check before the signature, in order; the class the packet's
/// check is queued in.
pub fn screen_arrival<'p>(
    rules: &mut impl InboundRules,
    own_topic: &[u8],
    max_message: usize,
    unix: u64,
    topic: &[u8],
    payload: &'p [u8],
) -> Result<(AppPacket<'p>, Class), Dropped> {
    let packet = precheck(own_topic, max_message, unix, topic, payload)?;
    let expected = packet.msg_type == MsgType::Ack;
    if !expected && rules.reack(&packet) {
        return Err(Dropped::Reacked);
    }
    if expected && !rules.expects(&packet) {
        // Completed already (fan-out copies) or never ours.
        return Err(Dropped::Unexpected);
    }
    if let Some(ack) = rules.known_copy(&packet) {
        // Delivered, but its signed ACK was forgotten: sign it again.
        rules.sign_and_ack(&packet, ack, false);
        return Err(Dropped::KnownCopy);
    }
    // Only an ACK for a pending send is `expected` here.
    let class = rules
        .admit(&packet.src_pk, expected)
        .ok_or(Dropped::Budget)?;
    Ok((packet, class))
}

/// What a verified packet's verdict leads to; true: deliver it (its ACK
/// went out first, so the send is tracked before the application sees
/// the message).
pub fn after_check(
    rules: &mut impl InboundRules,
    packet: &AppPacket<'_>,
    verdict: Verdict,
) -> bool {
    match verdict {
        Verdict::Deliver { ack } => {
            rules.sign_and_ack(packet, ack, true);
            true
        }
        Verdict::Duplicate { ack } => {
            if !rules.reack(packet) {
                rules.sign_and_ack(packet, ack, false);
            }
            false
        }
        Verdict::Acked { queue_id, seq_no } => {
            if rules.expects(packet) {
                rules.complete(packet, queue_id, seq_no);
            }
            false
        }
        Verdict::TooOld => {
            // A copy of a MSG delivered before a flood evicted it: its
            // kept ACK is the sender's only way to learn of it.
            rules.reack(packet);
            false
        }
        Verdict::Stale { .. } | Verdict::Conflict | Verdict::Ignored => false,
    }
}
