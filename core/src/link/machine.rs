//! The link machine: one connection's handshake, identity proofs, frames
//! and limits, with no I/O (quinn-proto's shape: the shell feeds bytes and
//! time in, and polls bytes, timers and events out).

use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use super::capability::{Access, AllowList};
use super::close_reason::{CloseReason, Limit};
use super::frame::{Frame, MAX_CHUNK, REQUEST_HEADER_LEN};
use super::limits::Limits;
use super::network_key::NetworkKey;
use super::noise::{self, KEY_LEN, MAX_NOISE_MESSAGE, SEED_LEN, TAG_LEN};
use super::proof::{self, Role};
use super::refusal::Refusal;
use super::service::Service;
use super::wire::{self, LEN_PREFIX};
use crate::identity::{Keypair, PublicKey};
use crate::rate::TokenBucket;
use crate::time::Instant;

/// A request's number, chosen by the side that sends the request.
pub type RequestId = u32;

/// Largest handshake message accepted. Ours carry no payload: 32, 96 and
/// 64 bytes (Noise spec §7.5 XX with psk3).
const MAX_HANDSHAKE_MESSAGE: usize = 128;
/// What a queued refusal counts against `max_buffered_bytes`: it carries
/// no body, but a peer that floods requests while not reading must still
/// run into the cap.
const REFUSAL_COST: usize = 32;
/// The smallest buffer [`Link::poll_transmit`] writes into.
pub const MIN_TRANSMIT_BUF: usize = 256;

/// What a node needs to run links: who it is, which network it is in, and
/// whom it serves. Shared by all of a node's links.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The node's long-term identity (its namebump/sidewire key).
    pub identity: Keypair,
    /// The network's pre-shared key.
    pub network_key: NetworkKey,
    /// Who may request what.
    pub allow: AllowList,
    /// Bounds on each peer.
    pub limits: Limits,
}

/// What the link reports to its shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Both identities are proven; application frames flow.
    Connected { peer: PublicKey },
    /// The peer asks something it is authorized for. Answer it with
    /// [`Link::send_response`] or [`Link::refuse`].
    Request {
        id: RequestId,
        service: Service,
        body: Vec<u8>,
    },
    /// The answer to this side's request `id`.
    Response { id: RequestId, body: Vec<u8> },
    /// The peer refused this side's request `id`; no data came with it.
    Refused { id: RequestId, reason: Refusal },
    /// The link is over; nothing more will be transmitted.
    Closed(CloseReason),
}

/// Why the application could not queue a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The link is closed.
    Closed,
    /// The body is longer than `max_message_len`.
    TooLarge,
    /// `concurrent_requests` of this side's requests await an answer.
    TooManyRequests,
    /// The transmit queue holds `max_buffered_bytes`; poll transmits first.
    Full,
    /// No request of the peer with this id awaits an answer.
    UnknownRequest,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "link closed",
            Self::TooLarge => "message too large",
            Self::TooManyRequests => "too many requests in flight",
            Self::Full => "transmit queue full",
            Self::UnknownRequest => "no such request from the peer",
        })
    }
}

impl core::error::Error for SendError {}

/// One queued message, sent fragment by fragment.
#[derive(Debug)]
enum Outgoing {
    Request {
        id: RequestId,
        service: Service,
        body: Vec<u8>,
        sent: usize,
    },
    Response {
        id: RequestId,
        body: Vec<u8>,
        sent: usize,
    },
    Refused {
        id: RequestId,
        reason: Refusal,
    },
}

impl Outgoing {
    fn buffered(&self) -> usize {
        match self {
            Self::Request { body, .. } | Self::Response { body, .. } => body.len(),
            Self::Refused { .. } => REFUSAL_COST,
        }
    }
}

/// The inbound message being reassembled.
#[derive(Debug)]
enum Inbound {
    /// An authorized request.
    Request {
        id: RequestId,
        service: u8,
        body: Vec<u8>,
    },
    /// A request to be refused: its bytes are counted, not kept.
    Discard {
        id: RequestId,
        service: u8,
        len: usize,
        reason: Refusal,
    },
    /// A response to this side's request.
    Response { id: RequestId, body: Vec<u8> },
}

enum Phase {
    Handshake(Box<snow::HandshakeState>),
    Transport(Box<snow::TransportState>),
    Closed,
}

/// One secure link, dialer or acceptor side.
pub struct Link {
    config: Arc<LinkConfig>,
    role: Role,
    expected: Option<PublicKey>,
    phase: Phase,
    noise_static: [u8; KEY_LEN],
    handshake_hash: [u8; KEY_LEN],
    peer_static: [u8; KEY_LEN],
    peer: Option<PublicKey>,
    /// This side's proof is due (sent before anything else).
    proof_due: bool,
    connected: bool,
    close_reason: Option<CloseReason>,
    handshake_deadline: Instant,
    last_input: Instant,
    pre_proof_used: usize,
    inbuf: Vec<u8>,
    scratch: Vec<u8>,
    inbound: Option<Inbound>,
    /// The peer's requests the application has not answered.
    peer_requests: BTreeSet<RequestId>,
    /// This side's requests awaiting an answer.
    our_requests: BTreeSet<RequestId>,
    next_id: RequestId,
    rate: TokenBucket,
    outq: VecDeque<Outgoing>,
    out_bytes: usize,
    events: VecDeque<Event>,
    event_bytes: usize,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.role)
            .field("peer", &self.peer)
            .field("connected", &self.connected)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

/// Makes `buf` at least `len` bytes long, keeping what it holds (scratch
/// space is overwritten before it is read, so it need not be zeroed again).
fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// How many bytes the partial frame `held` lacks, reading its length
/// prefix from `held` and then `next` (all of a prefix's two bytes when
/// they are not there yet: the rest is known only once they are).
fn held_frame_lacks(held: &[u8], next: &[u8]) -> usize {
    let mut prefix = [0u8; LEN_PREFIX];
    let have = held.len().min(LEN_PREFIX);
    prefix[..have].copy_from_slice(&held[..have]);
    let from_next = LEN_PREFIX - have;
    let Some(rest) = next.get(..from_next) else {
        return next.len();
    };
    prefix[have..].copy_from_slice(rest);
    let whole = LEN_PREFIX + usize::from(u16::from_be_bytes(prefix));
    whole.saturating_sub(held.len())
}

fn secs(now: Instant) -> f64 {
    now.as_micros() as f64 / 1e6
}

impl Link {
    /// The dialing side. `expected` is the identity the dialer addresses
    /// (`PUBKEY@HOST:PORT`); a peer proving another key is refused.
    pub fn new_initiator<R: CryptoRng + ?Sized>(
        config: Arc<LinkConfig>,
        expected: PublicKey,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        Self::new(config, Role::Initiator, Some(expected), now, rng)
    }

    /// The accepting side.
    pub fn new_responder<R: CryptoRng + ?Sized>(
        config: Arc<LinkConfig>,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        Self::new(config, Role::Responder, None, now, rng)
    }

    fn new<R: CryptoRng + ?Sized>(
        config: Arc<LinkConfig>,
        role: Role,
        expected: Option<PublicKey>,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        // A fresh Noise static per link: the long-term identity is the
        // secp256k1 key, bound to this static by the proof.
        let mut static_secret = [0u8; KEY_LEN];
        rng.fill_bytes(&mut static_secret);
        let mut seed = [0u8; SEED_LEN];
        rng.fill_bytes(&mut seed);
        let handshake = noise::handshake(
            role == Role::Initiator,
            &static_secret,
            seed,
            config.network_key.as_bytes(),
        );
        let noise_static = noise::static_public(&static_secret);
        let limits = config.limits;
        let mut link = Self {
            config,
            role,
            expected,
            phase: Phase::Closed,
            noise_static: [0; KEY_LEN],
            handshake_hash: [0; KEY_LEN],
            peer_static: [0; KEY_LEN],
            peer: None,
            proof_due: false,
            connected: false,
            close_reason: None,
            handshake_deadline: now.saturating_add(limits.handshake_timeout),
            last_input: now,
            pre_proof_used: 0,
            inbuf: Vec::new(),
            scratch: Vec::new(),
            inbound: None,
            peer_requests: BTreeSet::new(),
            our_requests: BTreeSet::new(),
            next_id: 0,
            rate: TokenBucket::new(&limits.request_rate, secs(now)),
            outq: VecDeque::new(),
            out_bytes: 0,
            events: VecDeque::new(),
            event_bytes: 0,
        };
        match (handshake, noise_static) {
            (Ok(hs), Ok(public)) => {
                link.phase = Phase::Handshake(Box::new(hs));
                link.noise_static = public;
            }
            _ => link.close(CloseReason::Internal),
        }
        link
    }

    /// The peer's proven identity, once its proof verified.
    pub fn peer_identity(&self) -> Option<&PublicKey> {
        self.peer.as_ref()
    }

    /// Whether both proofs are done and application frames flow.
    pub fn is_connected(&self) -> bool {
        self.connected && self.close_reason.is_none()
    }

    /// Whether the link is over.
    pub fn is_closed(&self) -> bool {
        self.close_reason.is_some()
    }

    /// Why the link closed, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason
    }

    /// Bytes the link holds for the application or the peer.
    pub fn buffered_bytes(&self) -> usize {
        self.inbuf.len() + self.inbound_len() + self.event_bytes + self.out_bytes
    }

    /// Whether the shell should read more from the socket: false once the
    /// link is closed or holds half its buffer budget (backpressure, so a
    /// slow application slows the peer down instead of closing the link).
    pub fn wants_input(&self) -> bool {
        !self.is_closed() && self.buffered_bytes() < self.config.limits.max_buffered_bytes / 2
    }

    fn inbound_len(&self) -> usize {
        match &self.inbound {
            Some(Inbound::Request { body, .. } | Inbound::Response { body, .. }) => body.len(),
            _ => 0,
        }
    }

    /// Closes the link from this side; queued frames are dropped (poll
    /// transmits until `None` first to flush them).
    pub fn close(&mut self, reason: CloseReason) {
        if self.close_reason.is_some() {
            return;
        }
        self.close_reason = Some(reason);
        self.phase = Phase::Closed;
        self.inbuf = Vec::new();
        self.scratch = Vec::new();
        self.inbound = None;
        self.outq.clear();
        self.out_bytes = 0;
        self.proof_due = false;
        self.events.push_back(Event::Closed(reason));
    }

    /// The peer closed its side of the connection.
    pub fn handle_eof(&mut self, _now: Instant) {
        let reason = if self.peer.is_none() && self.role == Role::Initiator {
            // psk3 is checked by the acceptor after the third message: a
            // wrong network key shows up at the dialer as a hang-up.
            CloseReason::HandshakeFailed
        } else {
            CloseReason::PeerClosed
        };
        self.close(reason);
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        if self.peer.is_none() {
            return Some(self.handshake_deadline);
        }
        self.config
            .limits
            .idle_timeout
            .map(|idle| self.last_input.saturating_add(idle))
    }

    /// Applies the handshake deadline and the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.peer.is_none() {
            if now >= self.handshake_deadline {
                self.close(CloseReason::Timeout);
            }
        } else if let Some(idle) = self.config.limits.idle_timeout
            && now >= self.last_input.saturating_add(idle)
        {
            self.close(CloseReason::IdleTimeout);
        }
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Request { body, .. } | Event::Response { body, .. } = &event {
            self.event_bytes -= body.len();
        }
        Some(event)
    }

    /// Bytes from the peer, as they came off the socket (any split).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.is_closed() || data.is_empty() {
            return;
        }
        self.last_input = now;
        // Whole frames are handled straight from `data`; only a trailing
        // partial frame (at most one frame's bytes) is kept. A kept frame is
        // completed with just the bytes it lacks, so the rest of `data` is
        // not copied (issue 16, benchmarks: most large reads end mid-frame).
        let mut held = core::mem::take(&mut self.inbuf);
        let mut data = data;
        if !held.is_empty() {
            let take = held_frame_lacks(&held, data).min(data.len());
            held.extend_from_slice(&data[..take]);
            data = &data[take..];
            let consumed = self.handle_frames(now, &held);
            if self.is_closed() {
                return;
            }
            held.drain(..consumed);
        }
        if held.is_empty() {
            let consumed = self.handle_frames(now, data);
            if !self.is_closed() {
                held.extend_from_slice(&data[consumed..]);
            }
        } else {
            // Still partial: `data` ran out (kept whole all the same).
            held.extend_from_slice(data);
        }
        if !self.is_closed() {
            self.inbuf = held;
            self.check_buffered();
        }
    }

    /// Handles every whole frame at the front of `input`; returns the bytes
    /// used.
    fn handle_frames(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut consumed = 0;
        while !self.is_closed() {
            let max = self.max_frame();
            let (message, used) = match wire::split_frame(&input[consumed..], max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(wire::WireError::TooLong { .. }) if self.peer.is_none() => {
                    let reason = if self.in_handshake() {
                        CloseReason::HandshakeFailed
                    } else {
                        CloseReason::PreProofCap
                    };
                    self.close(reason);
                    break;
                }
                Err(_) => {
                    self.close(self.violation());
                    break;
                }
            };
            if self.peer.is_none() {
                self.pre_proof_used += used;
                if self.pre_proof_used > self.config.limits.pre_proof_bytes {
                    self.close(CloseReason::PreProofCap);
                    break;
                }
            }
            consumed += used;
            self.handle_message(now, message);
        }
        consumed
    }

    fn in_handshake(&self) -> bool {
        matches!(self.phase, Phase::Handshake(_))
    }

    fn violation(&self) -> CloseReason {
        if self.in_handshake() {
            CloseReason::HandshakeFailed
        } else {
            CloseReason::Protocol
        }
    }

    /// Largest frame the peer may send now.
    fn max_frame(&self) -> usize {
        if self.in_handshake() {
            MAX_HANDSHAKE_MESSAGE
        } else if self.peer.is_none() {
            // Whatever is left of the pre-proof budget, prefix included.
            (self.config.limits.pre_proof_bytes)
                .saturating_sub(self.pre_proof_used + LEN_PREFIX)
                .min(MAX_NOISE_MESSAGE)
        } else {
            MAX_NOISE_MESSAGE
        }
    }

    fn handle_message(&mut self, now: Instant, message: &[u8]) {
        match &mut self.phase {
            Phase::Handshake(hs) => {
                if hs.is_my_turn() {
                    // The peer spoke out of turn.
                    self.close(CloseReason::HandshakeFailed);
                    return;
                }
                let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
                match hs.read_message(message, &mut payload) {
                    Ok(0) => {}
                    _ => {
                        self.close(CloseReason::HandshakeFailed);
                        return;
                    }
                }
                if hs.is_handshake_finished() {
                    self.finish_handshake();
                }
            }
            Phase::Transport(transport) => {
                let mut plain = core::mem::take(&mut self.scratch);
                // Grown once, never cleared: zeroing up to 64 KiB per
                // message cost as much as a copy (issue 16, benchmarks).
                grow(&mut plain, message.len());
                match transport.read_message(message, &mut plain) {
                    Ok(n) => self.handle_frame(now, &plain[..n]),
                    Err(_) => self.close(self.violation()),
                }
                if !self.is_closed() {
                    self.scratch = plain;
                }
            }
            Phase::Closed => {}
        }
    }

    /// Leaves the handshake: records the session's hash and the peer's
    /// Noise static, and queues this side's proof where it is due.
    fn finish_handshake(&mut self) {
        let Phase::Handshake(hs) = core::mem::replace(&mut self.phase, Phase::Closed) else {
            return;
        };
        let hash: Option<[u8; KEY_LEN]> = hs.get_handshake_hash().try_into().ok();
        let peer_static: Option<[u8; KEY_LEN]> =
            hs.get_remote_static().and_then(|s| s.try_into().ok());
        match (hash, peer_static, hs.into_transport_mode()) {
            (Some(hash), Some(peer_static), Ok(transport)) => {
                self.handshake_hash = hash;
                self.peer_static = peer_static;
                self.phase = Phase::Transport(Box::new(transport));
                // The acceptor proves first; the dialer proves only once the
                // acceptor is the node it meant to reach.
                self.proof_due = self.role == Role::Responder;
            }
            _ => self.close(CloseReason::Internal),
        }
    }

    fn handle_frame(&mut self, now: Instant, plain: &[u8]) {
        let Ok(frame) = Frame::decode(plain) else {
            self.close(CloseReason::Protocol);
            return;
        };
        let Some(peer) = self.peer else {
            match frame {
                Frame::Proof { key, signature } => self.handle_proof(key, signature),
                _ => self.close(CloseReason::Protocol),
            }
            return;
        };
        match frame {
            Frame::Proof { .. } => self.close(CloseReason::Protocol),
            Frame::Request {
                id,
                service,
                last,
                chunk,
            } => self.handle_request(now, &peer, id, service, last, chunk),
            Frame::Response { id, last, chunk } => self.handle_response(id, last, chunk),
            Frame::Refused { id, reason } => {
                let partial =
                    matches!(&self.inbound, Some(Inbound::Response { id: r, .. }) if *r == id);
                if partial || !self.our_requests.remove(&id) {
                    self.close(CloseReason::Protocol);
                    return;
                }
                self.events.push_back(Event::Refused {
                    id,
                    reason: Refusal::from_byte(reason),
                });
            }
        }
    }

    fn handle_proof(&mut self, key: &[u8; 33], signature: &[u8; 64]) {
        let peer_role = match self.role {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        };
        let verified = PublicKey::from_bytes(key).ok().filter(|key| {
            proof::verify_proof(
                key,
                signature,
                peer_role,
                &self.handshake_hash,
                &self.peer_static,
            )
            .is_ok()
        });
        let Some(proved) = verified else {
            self.close(CloseReason::BadProof);
            return;
        };
        if let Some(expected) = self.expected
            && expected != proved
        {
            self.close(CloseReason::WrongPeerIdentity { expected, proved });
            return;
        }
        self.peer = Some(proved);
        if self.role == Role::Initiator {
            self.proof_due = true;
        }
        self.connected = true;
        self.events.push_back(Event::Connected { peer: proved });
    }

    fn handle_request(
        &mut self,
        now: Instant,
        peer: &PublicKey,
        id: RequestId,
        service: u8,
        last: bool,
        chunk: &[u8],
    ) {
        let max = self.config.limits.max_message_len;
        match &mut self.inbound {
            None => {
                if self.peer_requests.contains(&id) {
                    self.close(CloseReason::Protocol);
                    return;
                }
                let reason = self.admit(now, peer, service, chunk);
                self.inbound = Some(match reason {
                    None => Inbound::Request {
                        id,
                        service,
                        body: Vec::new(),
                    },
                    Some(reason) => Inbound::Discard {
                        id,
                        service,
                        len: 0,
                        reason,
                    },
                });
            }
            Some(
                Inbound::Request {
                    id: current,
                    service: s,
                    ..
                }
                | Inbound::Discard {
                    id: current,
                    service: s,
                    ..
                },
            ) if *current == id && *s == service => {}
            Some(_) => {
                // Fragments of two messages interleaved.
                self.close(CloseReason::Protocol);
                return;
            }
        }
        let too_long = match &mut self.inbound {
            Some(Inbound::Request { body, .. }) => {
                let fits = body.len() + chunk.len() <= max;
                if fits {
                    body.extend_from_slice(chunk);
                }
                !fits
            }
            Some(Inbound::Discard { len, .. }) => {
                *len += chunk.len();
                *len > max
            }
            _ => false,
        };
        if too_long {
            self.close(CloseReason::LimitExceeded(Limit::MessageSize));
            return;
        }
        if !last {
            return;
        }
        match self.inbound.take() {
            Some(Inbound::Request { id, service, body }) => {
                let Some(service) = Service::from_byte(service) else {
                    return;
                };
                self.peer_requests.insert(id);
                self.event_bytes += body.len();
                self.events.push_back(Event::Request { id, service, body });
            }
            Some(Inbound::Discard { id, reason, .. }) => {
                self.out_bytes += REFUSAL_COST;
                self.outq.push_back(Outgoing::Refused { id, reason });
            }
            _ => {}
        }
    }

    /// Decides at a request's first fragment whether it will be served;
    /// `Some(reason)` refuses it. The check runs on every request
    /// (issue 16, item 3): authentication alone grants nothing.
    fn admit(
        &mut self,
        now: Instant,
        peer: &PublicKey,
        service: u8,
        first_chunk: &[u8],
    ) -> Option<Refusal> {
        let limits = self.config.limits;
        if !self.rate.try_take(&limits.request_rate, secs(now)) {
            return Some(Refusal::RateLimited);
        }
        let Some(service) = Service::from_byte(service) else {
            return Some(Refusal::UnknownService);
        };
        let authorized = Access::of_request(service, first_chunk)
            .is_some_and(|access| self.config.allow.allows(peer, &access));
        if !authorized {
            return Some(Refusal::NotAuthorized);
        }
        if self.peer_requests.len() >= limits.concurrent_requests {
            return Some(Refusal::Busy);
        }
        None
    }

    fn handle_response(&mut self, id: RequestId, last: bool, chunk: &[u8]) {
        let max = self.config.limits.max_message_len;
        match &mut self.inbound {
            None if self.our_requests.contains(&id) => {
                self.inbound = Some(Inbound::Response {
                    id,
                    body: Vec::new(),
                });
            }
            Some(Inbound::Response { id: current, .. }) if *current == id => {}
            _ => {
                self.close(CloseReason::Protocol);
                return;
            }
        }
        if let Some(Inbound::Response { body, .. }) = &mut self.inbound {
            if body.len() + chunk.len() > max {
                self.close(CloseReason::LimitExceeded(Limit::MessageSize));
                return;
            }
            body.extend_from_slice(chunk);
        }
        if last && let Some(Inbound::Response { id, body }) = self.inbound.take() {
            self.our_requests.remove(&id);
            self.event_bytes += body.len();
            self.events.push_back(Event::Response { id, body });
        }
    }

    fn check_buffered(&mut self) {
        if self.buffered_bytes() > self.config.limits.max_buffered_bytes {
            self.close(CloseReason::LimitExceeded(Limit::BufferedBytes));
        }
    }

    fn queue(&mut self, item: Outgoing) -> Result<(), SendError> {
        let len = item.buffered();
        if self.out_bytes + len > self.config.limits.max_buffered_bytes {
            return Err(SendError::Full);
        }
        self.out_bytes += len;
        self.outq.push_back(item);
        Ok(())
    }

    fn check_send(&self, body: &[u8]) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if body.len() > self.config.limits.max_message_len {
            return Err(SendError::TooLarge);
        }
        Ok(())
    }

    /// Queues a request; it is transmitted once the link is connected.
    /// A sync request's body must start with the 32-byte stream key.
    pub fn send_request(
        &mut self,
        service: Service,
        body: Vec<u8>,
    ) -> Result<RequestId, SendError> {
        self.check_send(&body)?;
        if self.our_requests.len() >= self.config.limits.concurrent_requests {
            return Err(SendError::TooManyRequests);
        }
        let mut id = self.next_id;
        while self.our_requests.contains(&id) {
            id = id.wrapping_add(1);
        }
        self.queue(Outgoing::Request {
            id,
            service,
            body,
            sent: 0,
        })?;
        self.next_id = id.wrapping_add(1);
        self.our_requests.insert(id);
        Ok(id)
    }

    /// Answers the peer's request `id`.
    pub fn send_response(&mut self, id: RequestId, body: Vec<u8>) -> Result<(), SendError> {
        self.check_send(&body)?;
        if !self.peer_requests.contains(&id) {
            return Err(SendError::UnknownRequest);
        }
        self.queue(Outgoing::Response { id, body, sent: 0 })?;
        self.peer_requests.remove(&id);
        Ok(())
    }

    /// Refuses the peer's request `id` (e.g. [`Refusal::Failed`]).
    pub fn refuse(&mut self, id: RequestId, reason: Refusal) -> Result<(), SendError> {
        self.check_send(&[])?;
        if !self.peer_requests.remove(&id) {
            return Err(SendError::UnknownRequest);
        }
        self.queue(Outgoing::Refused { id, reason })
    }

    /// Writes the next frame to send into `buf` (at least
    /// [`MIN_TRANSMIT_BUF`] bytes; [`super::wire::MAX_WIRE_FRAME`] carries
    /// the largest fragments) and returns its length, or `None` when there
    /// is nothing to send now.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < MIN_TRANSMIT_BUF {
            return None;
        }
        let room = buf.len().min(wire::MAX_WIRE_FRAME);
        match &mut self.phase {
            Phase::Handshake(hs) => {
                if !hs.is_my_turn() {
                    return None;
                }
                let Ok(n) = hs.write_message(&[], &mut buf[LEN_PREFIX..room]) else {
                    self.close(CloseReason::Internal);
                    return None;
                };
                wire::put_prefix(buf, n);
                if hs.is_handshake_finished() {
                    self.finish_handshake();
                }
                Some(LEN_PREFIX + n)
            }
            Phase::Transport(_) => {
                let max_plain = room - LEN_PREFIX - TAG_LEN;
                let mut plain = core::mem::take(&mut self.scratch);
                let next = self.next_plaintext(&mut plain, max_plain);
                let (Some(n), Phase::Transport(transport)) = (next, &mut self.phase) else {
                    self.scratch = plain;
                    return None;
                };
                let result = transport.write_message(&plain[..n], &mut buf[LEN_PREFIX..room]);
                self.scratch = plain;
                match result {
                    Ok(m) => {
                        wire::put_prefix(buf, m);
                        Some(LEN_PREFIX + m)
                    }
                    Err(_) => {
                        self.close(CloseReason::Internal);
                        None
                    }
                }
            }
            Phase::Closed => None,
        }
    }

    /// Encodes the next application frame (at most `max_plain` bytes) into
    /// `plain`, sized to fit it.
    fn next_plaintext(&mut self, plain: &mut Vec<u8>, max_plain: usize) -> Option<usize> {
        if self.proof_due {
            let signature = proof::sign_proof(
                &self.config.identity,
                self.role,
                &self.handshake_hash,
                &self.noise_static,
            );
            self.proof_due = false;
            let frame = Frame::Proof {
                key: self.config.identity.public().as_bytes(),
                signature: &signature,
            };
            grow(plain, frame.encoded_len());
            return frame.encode(plain).ok();
        }
        if !self.is_connected() {
            return None;
        }
        let room = max_plain.saturating_sub(REQUEST_HEADER_LEN).min(MAX_CHUNK);
        let front = self.outq.front_mut()?;
        let (frame, done, taken) = match front {
            Outgoing::Request {
                id,
                service,
                body,
                sent,
            } => {
                let end = (*sent + room).min(body.len());
                let frame = Frame::Request {
                    id: *id,
                    service: service.to_byte(),
                    last: end == body.len(),
                    chunk: &body[*sent..end],
                };
                let taken = end - *sent;
                *sent = end;
                (frame, end == body.len(), taken)
            }
            Outgoing::Response { id, body, sent } => {
                let end = (*sent + room).min(body.len());
                let frame = Frame::Response {
                    id: *id,
                    last: end == body.len(),
                    chunk: &body[*sent..end],
                };
                let taken = end - *sent;
                *sent = end;
                (frame, end == body.len(), taken)
            }
            Outgoing::Refused { id, reason } => (
                Frame::Refused {
                    id: *id,
                    reason: reason.to_byte(),
                },
                true,
                REFUSAL_COST,
            ),
        };
        grow(plain, frame.encoded_len());
        let n = frame.encode(plain).ok();
        self.out_bytes -= taken;
        if done {
            self.outq.pop_front();
        }
        n
    }

    /// The Noise handshake hash of this session (zero before it finishes).
    pub fn handshake_hash(&self) -> &[u8; KEY_LEN] {
        &self.handshake_hash
    }
}

#[cfg(test)]
mod tests {
    use super::held_frame_lacks;

    #[test]
    fn a_held_frame_lacks_its_prefix_then_its_body() {
        // Prefix split: only its missing byte is known to be lacking.
        assert_eq!(held_frame_lacks(&[0], &[]), 0);
        assert_eq!(held_frame_lacks(&[1], &[0, 9, 9]), 1 + 256);
        // Whole prefix held: 5-byte frame, 3 bytes of it held.
        assert_eq!(held_frame_lacks(&[0, 5, 1], &[2, 3, 4, 5, 6, 7]), 4);
        // Prefix completed from the next bytes.
        assert_eq!(held_frame_lacks(&[0], &[3, 1, 2, 3]), 4);
    }
}
