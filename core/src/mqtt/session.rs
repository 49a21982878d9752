//! The MQTT 3.1.1 client session machine: one connection to one broker,
//! sans I/O (spec `sidewire.md` §2; the shape of quinn-proto).
//!
//! **Inputs**: [`Session::handle_connected`] (the transport is up),
//! [`Session::handle_received`] (bytes from the stream, in any chunking),
//! [`Session::handle_written`] (the shell finished writing what
//! [`Session::poll_transmit`] gave it), [`Session::handle_closed`] (the
//! transport is gone), the commands [`Session::handle_subscribe`],
//! [`Session::handle_publish`] and [`Session::handle_disconnect`], and
//! [`Session::handle_timeout`].
//!
//! **Outputs**: bytes to write ([`Session::poll_transmit`]), [`Event`]s
//! ([`Session::poll_event`]) and the next deadline
//! ([`Session::poll_timeout`]).
//!
//! **Timers**: the handshake deadline (CONNACK and the SUBACKs of
//! subscriptions asked for before it, within
//! [`SessionConfig::connect_timeout`] of [`Session::new`], which the shell
//! also uses to bound its TCP connect); the keep-alive PINGREQ, every
//! [`SessionConfig::keep_alive`] from the end of the handshake, whatever
//! else is sent; the PINGRESP deadline, one keep-alive after the first
//! unanswered PINGREQ (the reference never noticed a dead broker: spec §10
//! item 17); and the write deadline, [`SessionConfig::write_timeout`] after
//! each [`Session::poll_transmit`] until [`Session::handle_written`] (a
//! broker that stops reading closes the session as
//! [`CloseReason::WriteStalled`] instead of wedging it).
//!
//! **Memory**: none of its own. The owner passes two buffers (`I`, `O`:
//! arrays in firmware, `Vec`s in the tokio shell): the inbox holds at most
//! one packet being reassembled (packets over
//! [`SessionConfig::max_packet`] are skipped as they stream past, never
//! buffered, spec §10 item 8) and the outbox is the bounded queue of bytes
//! to send ([`CommandError::Full`] when full).
//!
//! **Messages** are lent, not copied: [`Event::Message`] borrows topic and
//! payload from the inbox, and the bytes are released at the next `&mut`
//! call. While a message waits to be polled, no later packet is read, so a
//! shell drains [`Session::poll_event`] after each
//! [`Session::handle_received`] (which then takes the rest of its bytes).
//!
//! **Shells**: `keyway-sidewire`'s `link.rs` drives it on tokio today;
//! embassy firmware and the uniffi mobile face are to drive it next.

use core::fmt;
use core::time::Duration;

use super::decode::{Packet, QoS, decode, publish_packet_id};
use super::encode::{
    encode_connect, encode_disconnect, encode_pingreq, encode_puback, encode_publish,
    encode_subscribe,
};
use super::error::MqttError;
pub use super::event::{CloseReason, Event, Refusal};
use super::inbox::Inbox;
use super::outbox::{Outbox, Refused};
use crate::time::Instant;

/// How a session behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// MQTT keep-alive (whole seconds go in CONNECT); a PINGREQ goes out
    /// this often, and a PINGRESP must come back within it. Zero turns
    /// keep-alive off (MQTT 3.1.1 §3.1.2.10).
    pub keep_alive: Duration,
    /// CONNACK, and the SUBACKs of subscriptions asked for before it, must
    /// all arrive within this of [`Session::new`].
    pub connect_timeout: Duration,
    /// Each write the shell makes must finish within this.
    pub write_timeout: Duration,
    /// Largest MQTT packet accepted from the broker (at most the inbox's
    /// size; a smaller inbox lowers it).
    pub max_packet: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            max_packet: 64 * 1024,
        }
    }
}

/// Why a session cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// CONNECT does not fit the outbox, or the client id is too long.
    Connect(MqttError),
    /// The inbox cannot hold even a PUBACK-sized packet.
    InboxTooSmall,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot queue CONNECT: {e}"),
            Self::InboxTooSmall => f.write_str("inbox too small"),
        }
    }
}

impl core::error::Error for SessionError {}

/// Why a command was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The session is closed or closing.
    Closed,
    /// The outbox has no room now; it will once queued bytes are sent.
    Full,
    /// The packet cannot be encoded, or can never fit the outbox.
    Invalid(MqttError),
    /// Too many SUBSCRIBEs await their SUBACK.
    TooManySubscriptions,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("session closed"),
            Self::Full => f.write_str("outbound queue full"),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::TooManySubscriptions => f.write_str("too many subscriptions pending"),
        }
    }
}

impl core::error::Error for CommandError {}

/// Bytes [`Session::poll_transmit`] put at the front of the caller's
/// buffer, for the session's one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub len: usize,
}

/// Outbox bytes a PUBLISH may not take: the PUBACKs, PINGREQ and
/// DISCONNECT that keep the session alive always find room.
pub const CONTROL_RESERVE: usize = 64;
/// Bytes a PUBACK may not take: room for a PINGREQ and a DISCONNECT.
const PING_RESERVE: usize = 4;
/// SUBSCRIBEs that may await their SUBACK at once.
pub const MAX_PENDING_SUBSCRIPTIONS: usize = 4;
/// Owned events queued at once: Connected, one Subscribed per pending
/// subscription, Closed. A shell that subscribes again and again without
/// polling loses the oldest Subscribed events; Closed always finds a slot.
const EVENT_SLOTS: usize = MAX_PENDING_SUBSCRIPTIONS + 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// CONNECT queued; waiting for CONNACK.
    Connecting,
    Open,
    /// DISCONNECT queued; closes once it is written.
    Disconnecting,
    Closed(CloseReason),
}

/// An event with no borrowed bytes, queued until polled.
#[derive(Clone, Copy, Debug)]
enum Notice {
    Connected,
    Subscribed { packet_id: u16, qos: QoS },
    Closed(CloseReason),
}

impl From<Notice> for Event<'_> {
    fn from(notice: Notice) -> Self {
        match notice {
            Notice::Connected => Event::Connected,
            Notice::Subscribed { packet_id, qos } => Event::Subscribed { packet_id, qos },
            Notice::Closed(reason) => Event::Closed(reason),
        }
    }
}

/// Where a PUBLISH's topic and payload sit in the inbox window, found by
/// its one decode.
#[derive(Clone, Copy, Debug)]
struct Ready {
    topic: (usize, usize),
    payload: (usize, usize),
    used: usize,
}

/// An MQTT 3.1.1 client session; see the module documentation.
pub struct Session<I, O = I> {
    config: SessionConfig,
    phase: Phase,
    inbox: Inbox<I>,
    outbox: Outbox<O>,
    max_packet: usize,
    /// Bytes of CONNECT at the front of the outbox.
    connect_len: usize,
    /// Until when the handshake may take; `None` once it is over.
    handshake_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    /// When the first unanswered PINGREQ was queued.
    awaiting_pong: Option<Instant>,
    write_deadline: Option<Instant>,
    pending_subscriptions: [Option<u16>; MAX_PENDING_SUBSCRIPTIONS],
    /// SUBSCRIBEs and PUBLISHes are numbered apart, each from 1 and
    /// skipping 0 on wrap, as the link always numbered them (bytes on the
    /// wire unchanged; QoS 1 PUBLISHes are never awaited, so ids recycle).
    next_subscribe_id: u16,
    next_publish_id: u16,
    heard: bool,
    ready: Option<Ready>,
    notices: [Option<Notice>; EVENT_SLOTS],
    /// The time of the last input, for decisions made while polling.
    now: Instant,
}

impl<I, O> fmt::Debug for Session<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("heard", &self.heard)
            .field("handshake_deadline", &self.handshake_deadline)
            .field("next_ping", &self.next_ping)
            .field("awaiting_pong", &self.awaiting_pong)
            .field("write_deadline", &self.write_deadline)
            .finish_non_exhaustive()
    }
}

fn next_id(id: &mut u16) -> u16 {
    let this = *id;
    *id = id.checked_add(1).unwrap_or(1);
    this
}

impl<I, O> Session<I, O>
where
    I: AsRef<[u8]> + AsMut<[u8]>,
    O: AsRef<[u8]> + AsMut<[u8]>,
{
    /// A session about to connect: CONNECT (clean session, the keep-alive
    /// in whole seconds, `client_id`) is queued, to go when the transport
    /// is up. The handshake deadline runs from `now`.
    pub fn new(
        now: Instant,
        config: SessionConfig,
        client_id: &[u8],
        inbox: I,
        outbox: O,
    ) -> Result<Self, SessionError> {
        let inbox = Inbox::new(inbox);
        if inbox.capacity() < 4 {
            return Err(SessionError::InboxTooSmall);
        }
        let mut outbox = Outbox::new(outbox);
        let keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
        let connect_len = outbox
            .push(PING_RESERVE, |out| {
                encode_connect(client_id, keep_alive, out)
            })
            .map_err(|e| match e {
                // An empty queue is never Full (only compaction answers
                // that); mapped all the same rather than assumed.
                Refused::Full => {
                    SessionError::Connect(MqttError::BufferTooSmall { needed: 0, got: 0 })
                }
                Refused::Never(e) => SessionError::Connect(e),
            })?;
        Ok(Self {
            max_packet: config.max_packet.min(inbox.capacity()),
            config,
            phase: Phase::Connecting,
            inbox,
            outbox,
            connect_len,
            handshake_deadline: Some(now + config.connect_timeout),
            next_ping: None,
            awaiting_pong: None,
            write_deadline: None,
            pending_subscriptions: [None; MAX_PENDING_SUBSCRIPTIONS],
            next_subscribe_id: 1,
            next_publish_id: 1,
            heard: false,
            ready: None,
            notices: [None; EVENT_SLOTS],
            now,
        })
    }

    /// A random client id like the reference's: 15 alphanumerics (spec §2.1).
    pub fn random_client_id(rng: &mut impl rand_core::CryptoRng) -> [u8; 15] {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        core::array::from_fn(|_| ALPHABET[(rng.next_u32() % ALPHABET.len() as u32) as usize])
    }

    /// Whether the session is over (its Closed event may still be queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Whether the broker sent a whole packet after the handshake: a
    /// session that ends without having heard from its broker did not work.
    pub fn heard(&self) -> bool {
        self.heard
    }

    /// Whether CONNACK and the handshake's SUBACKs all came.
    pub fn is_established(&self) -> bool {
        self.handshake_deadline.is_none() && !self.is_closed()
    }

    /// The largest packet accepted from the broker.
    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// The transport is up: CONNECT may go.
    pub fn handle_connected(&mut self, now: Instant) {
        self.now = now;
        if self.phase == Phase::Connecting {
            self.outbox.open_front(self.connect_len);
        }
    }

    /// The transport closed (EOF or error).
    pub fn handle_closed(&mut self, now: Instant) {
        self.now = now;
        self.close(CloseReason::ConnectionLost);
    }

    /// Takes bytes received from the broker; returns how many it took.
    /// Fewer than `bytes.len()` means a message waits in
    /// [`Self::poll_event`] or PUBACKs wait in [`Self::poll_transmit`]:
    /// drain both, then offer the rest.
    pub fn handle_received(&mut self, now: Instant, bytes: &[u8]) -> usize {
        self.now = now;
        let mut taken = 0;
        // Each round takes at least one byte or stops.
        while taken < bytes.len() {
            if self.is_closed() {
                // Nothing more is read; the bytes are spent.
                return bytes.len();
            }
            let n = self.inbox.push(&bytes[taken..]);
            if n == 0 {
                // Full, and the last round's processing freed nothing.
                break;
            }
            taken += n;
            self.process();
        }
        taken
    }

    /// Subscribes to `topic`; returns the SUBSCRIBE's packet id. Asked
    /// before CONNACK, it is part of the handshake (its SUBACK is due by
    /// the handshake deadline) and goes once CONNACK accepts.
    pub fn handle_subscribe(
        &mut self,
        now: Instant,
        topic: &[u8],
        qos: QoS,
    ) -> Result<u16, CommandError> {
        self.now = now;
        self.release();
        if !matches!(self.phase, Phase::Connecting | Phase::Open) {
            return Err(CommandError::Closed);
        }
        let slot = self
            .pending_subscriptions
            .iter()
            .position(Option::is_none)
            .ok_or(CommandError::TooManySubscriptions)?;
        let id = self.next_subscribe_id;
        self.outbox
            .push(PING_RESERVE, |out| encode_subscribe(id, topic, qos, out))
            .map_err(command_error)?;
        next_id(&mut self.next_subscribe_id);
        self.pending_subscriptions[slot] = Some(id);
        Ok(id)
    }

    /// Queues a PUBLISH; returns its packet id (0 at QoS 0). A full queue
    /// is [`CommandError::Full`] and nothing is queued (no id spent): the
    /// caller waits for [`Self::poll_transmit`] to drain it, or drops the
    /// message as a datagram would be dropped.
    pub fn handle_publish(
        &mut self,
        now: Instant,
        topic: &[u8],
        qos: QoS,
        payload: &[u8],
    ) -> Result<u16, CommandError> {
        self.now = now;
        self.release();
        if !matches!(self.phase, Phase::Connecting | Phase::Open) {
            return Err(CommandError::Closed);
        }
        let id = match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => self.next_publish_id,
        };
        self.outbox
            .push(CONTROL_RESERVE, |out| {
                encode_publish(topic, qos, id, payload, out)
            })
            .map_err(command_error)?;
        if qos == QoS::AtLeastOnce {
            next_id(&mut self.next_publish_id);
        }
        Ok(id)
    }

    /// Says goodbye: DISCONNECT goes after what is queued, and the session
    /// closes ([`CloseReason::Disconnected`]) once it is written.
    pub fn handle_disconnect(&mut self, now: Instant) {
        self.now = now;
        self.release();
        match self.phase {
            Phase::Open => {
                // The reserve keeps room for it (only PUBACKs and PINGREQs
                // dip into it, and they leave these bytes).
                if self.outbox.push(0, encode_disconnect).is_ok() {
                    self.phase = Phase::Disconnecting;
                } else {
                    self.close(CloseReason::Disconnected);
                }
            }
            // Not connected yet: nothing to say goodbye to.
            Phase::Connecting => self.close(CloseReason::Disconnected),
            Phase::Disconnecting | Phase::Closed(_) => {}
        }
    }

    /// The shell finished writing the last [`Transmit`].
    pub fn handle_written(&mut self, now: Instant) {
        self.now = now;
        self.write_deadline = None;
        if self.phase == Phase::Disconnecting && self.outbox.len() == 0 {
            self.close(CloseReason::Disconnected);
        }
    }

    /// Fires whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.release();
        // Packets already buffered come first: a PINGRESP that arrived
        // must count before its deadline is judged.
        self.process();
        if self.is_closed() {
            return;
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            return self.close(CloseReason::HandshakeTimeout);
        }
        if self.write_deadline.is_some_and(|d| now >= d) {
            return self.close(CloseReason::WriteStalled);
        }
        if self
            .awaiting_pong
            .is_some_and(|since| now >= since + self.config.keep_alive)
        {
            return self.close(CloseReason::PingTimeout);
        }
        if let Some(at) = self.next_ping
            && now >= at
        {
            let keep_alive = self.config.keep_alive;
            // Missed periods are not made up in a burst.
            let next = at + keep_alive;
            self.next_ping = Some(if next > now { next } else { now + keep_alive });
            if self.phase == Phase::Open {
                // The reserve guarantees room unless PINGREQs already fill
                // it; then one is queued anyway and the deadline judges.
                let _ = self.outbox.push(0, encode_pingreq);
                self.awaiting_pong.get_or_insert(now);
            }
        }
    }

    /// Moves bytes to send into `buf`; `None` when there is nothing to send.
    /// Each transmit starts the write deadline, which
    /// [`Self::handle_written`] ends.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.now = now;
        if self.is_closed() {
            return None;
        }
        let len = self.outbox.pop(buf);
        if len == 0 {
            return None;
        }
        self.write_deadline = Some(now + self.config.write_timeout);
        Some(Transmit { len })
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let pong = self
            .awaiting_pong
            .filter(|_| !self.config.keep_alive.is_zero())
            .map(|since| since + self.config.keep_alive);
        [
            self.handshake_deadline,
            self.write_deadline,
            pong,
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event. A [`Event::Message`] borrows the session's inbox
    /// until the next `&mut` call.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        self.release();
        if let Some(notice) = self.pop_notice() {
            return Some(notice.into());
        }
        self.process();
        if let Some(notice) = self.pop_notice() {
            return Some(notice.into());
        }
        let ready = self.ready.take()?;
        self.inbox.lend(ready.used);
        Some(Event::Message {
            topic: self.inbox.slice(ready.topic.0, ready.topic.1),
            payload: self.inbox.slice(ready.payload.0, ready.payload.1),
        })
    }

    /// Ends the loan of the last message's bytes.
    fn release(&mut self) {
        self.inbox.release_lent();
    }

    fn push_notice(&mut self, notice: Notice) {
        if let Some(slot) = self.notices.iter_mut().find(|s| s.is_none()) {
            *slot = Some(notice);
        } else {
            // Full (see EVENT_SLOTS): the oldest goes.
            self.notices.rotate_left(1);
            self.notices[EVENT_SLOTS - 1] = Some(notice);
        }
    }

    fn pop_notice(&mut self) -> Option<Notice> {
        let first = self.notices[0].take()?;
        self.notices.rotate_left(1);
        Some(first)
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed(reason);
        self.ready = None;
        self.inbox.clear();
        self.outbox.clear();
        self.handshake_deadline = None;
        self.next_ping = None;
        self.awaiting_pong = None;
        self.write_deadline = None;
        self.push_notice(Notice::Closed(reason));
    }

    /// The handshake is over when CONNACK accepted and no handshake
    /// SUBSCRIBE awaits its SUBACK; keep-alive starts then.
    fn finish_handshake_if_done(&mut self) {
        if self.handshake_deadline.is_some()
            && self.phase == Phase::Open
            && self.pending_subscriptions.iter().all(Option::is_none)
        {
            self.handshake_deadline = None;
            if !self.config.keep_alive.is_zero() {
                self.next_ping = Some(self.now + self.config.keep_alive);
            }
        }
    }

    /// Reads buffered packets until a message waits to be polled, a PUBACK
    /// finds no room, or no whole packet is left. Each round consumes a
    /// packet or stops, so it ends within one round per buffered byte.
    fn process(&mut self) {
        while self.ready.is_none() && !self.is_closed() {
            if !self.step() {
                break;
            }
        }
    }

    /// Reads one packet from the inbox; `false` if none could be consumed.
    fn step(&mut self) -> bool {
        let window = self.inbox.window();
        let (packet, used) = match decode(window, self.max_packet) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return false,
            Err(MqttError::TooLarge { len, .. }) => return self.skip_oversize(len),
            Err(e) => {
                self.close(CloseReason::Malformed(e));
                return false;
            }
        };
        let packet_type = window.first().map_or(0, |b| b >> 4);
        if self.handshake_deadline.is_none() {
            self.heard = true;
        }
        match (self.phase, packet) {
            (
                Phase::Connecting,
                Packet::Connack {
                    session_present,
                    return_code,
                },
            ) => {
                if session_present || return_code != 0 {
                    self.close(CloseReason::Refused(Refusal::Connack {
                        session_present,
                        return_code,
                    }));
                    return false;
                }
                self.phase = Phase::Open;
                self.outbox.open();
                self.push_notice(Notice::Connected);
                self.finish_handshake_if_done();
            }
            (Phase::Connecting, _) => {
                self.close(CloseReason::Refused(Refusal::Unexpected { packet_type }));
                return false;
            }
            (
                _,
                Packet::Publish {
                    topic,
                    qos,
                    packet_id,
                    payload,
                    ..
                },
            ) => {
                // One parse: the ranges come from the slices it returned.
                let payload_start = used - payload.len();
                let topic_end = payload_start - if qos == QoS::AtLeastOnce { 2 } else { 0 };
                let ready = Ready {
                    topic: (topic_end - topic.len(), topic_end),
                    payload: (payload_start, used),
                    used,
                };
                if self.handshake_deadline.is_some() {
                    // Nothing is subscribed yet: out of turn (the link always
                    // refused it).
                    self.close(CloseReason::Refused(Refusal::Unexpected { packet_type }));
                    return false;
                }
                if let Some(id) = packet_id
                    && self
                        .outbox
                        .push(PING_RESERVE, |out| encode_puback(id, out))
                        .is_err()
                {
                    // No room for its PUBACK: leave it buffered until the
                    // shell has written some of the queue.
                    return false;
                }
                self.ready = Some(ready);
                return true;
            }
            (
                _,
                Packet::Suback {
                    packet_id,
                    return_codes,
                },
            ) => {
                let code = return_codes.iter().copied().find(|c| *c > 1);
                let granted = return_codes.first().copied();
                match self
                    .pending_subscriptions
                    .iter_mut()
                    .find(|s| **s == Some(packet_id))
                {
                    Some(slot) => *slot = None,
                    None if self.handshake_deadline.is_some() => {
                        self.close(CloseReason::Refused(Refusal::Unexpected { packet_type }));
                        return false;
                    }
                    // A SUBACK for nothing asked: ignored, as the link did.
                    None => {
                        self.inbox.consume(used);
                        return true;
                    }
                }
                if let Some(return_code) = code {
                    self.close(CloseReason::Refused(Refusal::Suback {
                        packet_id,
                        return_code,
                    }));
                    return false;
                }
                let qos = if granted == Some(1) {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                self.push_notice(Notice::Subscribed { packet_id, qos });
                self.finish_handshake_if_done();
            }
            (_, Packet::Pingresp) => self.awaiting_pong = None,
            (_, _) if self.handshake_deadline.is_some() => {
                self.close(CloseReason::Refused(Refusal::Unexpected { packet_type }));
                return false;
            }
            // PUBACKs of our QoS 1 PUBLISHes (never awaited) and anything a
            // broker should not send a client: ignored, as the link did.
            _ => {}
        }
        self.inbox.consume(used);
        true
    }

    /// A packet over the size cap: refused without closing (one big publish
    /// must not knock a node off its broker) but acknowledged if it is a QoS
    /// 1 PUBLISH, or the broker keeps it in flight and stops delivering.
    fn skip_oversize(&mut self, len: usize) -> bool {
        let window = self.inbox.window();
        let id = publish_packet_id(window);
        let qos1_publish = window.first().is_some_and(|b| b & 0xf6 == 0x32);
        if id.is_none() && qos1_publish && !self.inbox.is_full() {
            // Its id is not buffered yet (a topic can be 64 KiB long): wait.
            return false;
        }
        if let Some(id) = id
            && self
                .outbox
                .push(PING_RESERVE, |out| encode_puback(id, out))
                .is_err()
        {
            return false;
        }
        self.inbox.skip_packet(len);
        true
    }
}

fn command_error(refused: Refused) -> CommandError {
    match refused {
        Refused::Full => CommandError::Full,
        Refused::Never(e) => CommandError::Invalid(e),
    }
}
