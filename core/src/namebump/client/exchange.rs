//! The machine for one client exchange (GET, PUT, DEL or USAGE).
//!
//! - **Inputs**: [`Exchange::handle_datagram`] (a UDP leg's datagram),
//!   [`Exchange::handle_stream`] (bytes read from a TCP leg),
//!   [`Exchange::handle_leg_failed`] (the shell's socket failed: refused,
//!   reset, closed), [`Exchange::handle_lookup`] (the answer to
//!   [`Event::LookupOwner`]) and [`Exchange::handle_timeout`].
//! - **Outputs**: [`Exchange::poll_transmit`] (a sealed request for a leg,
//!   on a fresh socket), [`Exchange::poll_event`] ([`Event::CloseLeg`],
//!   [`Event::LookupOwner`], then [`Event::Done`] once) and
//!   [`Exchange::reply`] (the reply's bytes once done).
//! - **Timers** ([`Exchange::poll_timeout`]): the attempt's reply deadline
//!   (`reply_timeout` from its last transmit) and the pause before a retry.
//!
//! Rules (spec §4.5): every attempt builds one request with a fresh pkid and
//! reply key. Signed requests race UDP and TCP to the first resolved
//! address (IPv4 first); GET races UDP and TCP on every address family.
//! The first leg to bring a non-error reply wins and the others are closed.
//! An error reply is used only when no leg succeeds: a reference server
//! executes both legs of one request, and the second may fail ("0 rows
//! changed", bug 14) even though the first was stored. An attempt whose
//! legs all end without a reply (timeout, network error) is retried after
//! `retry_pause`, up to `attempts` attempts.
//!
//! An error reply carries no reason (spec §6.5): the machine tells clock
//! skew by the server time it carries, and for PUT and DEL asks the shell
//! to look the name up ([`Event::LookupOwner`], a second exchange) to tell
//! a foreign owner from another refusal. A shell short of memory (a
//! device's) may instead turn the exchange itself into that lookup
//! ([`Exchange::start_lookup`]): one exchange's memory, and the same rule
//! decides.
//!
//! Hostile input never panics: datagrams that do not open under the reply
//! key, do not decode, or answer another request are counted in
//! [`Exchange::ignored`] and dropped; a TCP stream that cannot be framed ends
//! its leg ([`LegFault::Unframeable`]). Nothing is queued: events are flags
//! (at most one close per leg, one lookup, one done), so no input can
//! overflow them.
//!
//! Driven by the tokio client (`keyway-namebump`'s `Client`, which the CLI,
//! the C library and the Python wheel use); embassy firmware and uniffi
//! mobile faces are next.

use core::fmt;

use rand_core::CryptoRng;

use crate::ecies::{self, EciesError};
use crate::identity::Keypair;
use crate::identity::PUBLIC_KEY_LEN;
use crate::namebump::client::behavior::Behavior;
use crate::namebump::client::error_kind::ErrorKind;
use crate::namebump::client::leg::{Family, LEGS, Leg, LegFault, Transmit, Transport};
use crate::namebump::client::matching::answers;
use crate::namebump::client::outcome::{Failure, Outcome};
use crate::namebump::client::policy::Policy;
use crate::namebump::client::request::{AttemptPacket, Request};
use crate::namebump::client::target::Target;
use crate::namebump::freshness::CLOCK_SKEW_SLACK;
use crate::namebump::packet::MAX_PACKET_LEN;
use crate::namebump::tcp_framing::{MAX_SEALED_REQUEST, SealedStream};
use crate::namebump::usage::Usage;
use crate::namebump::{EncodeError, MAX_NAME_LEN, Op, Packet};
use crate::time::Instant;

/// A `poll_transmit` buffer of this size holds any request.
pub const TRANSMIT_LEN: usize = MAX_SEALED_REQUEST;

/// Room for any reply's plaintext (a reply is never longer than a request).
const PLAINTEXT_LEN: usize = MAX_SEALED_REQUEST;

/// What the machine tells the shell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// Drop this leg's socket or connection: its race is over (it lost, or
    /// the attempt timed out). A later transmit on the leg opens a new one.
    CloseLeg(Leg),
    /// Run a GET of [`Exchange::name`] and pass the owner it finds (or
    /// `None`: missing, or the GET failed) to [`Exchange::handle_lookup`].
    LookupOwner,
    /// The exchange is over; [`Exchange::reply`] holds the reply.
    Done(Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// The next attempt starts at the first `poll_transmit` from then on.
    Due(Instant),
    Racing {
        deadline: Instant,
    },
    /// Waiting for [`Exchange::handle_lookup`].
    Explaining,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LegState {
    /// Not part of this attempt.
    Off,
    /// To be transmitted.
    Due,
    /// Sent; waiting for a reply.
    Waiting,
    /// Replied, failed or closed.
    Ended,
}

/// Why the legs of an attempt ended without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoReply {
    Timeout,
    Network(Leg, LegFault),
}

/// One client exchange. See the module documentation.
///
/// `STREAMS` is how many TCP reply streams it frames at once, one per
/// address family from IPv4: 2 (the default) races TCP on both families;
/// 1 is for a shell that reaches its server over IPv4 only (a device's),
/// and saves a reply-sized framer: the IPv6 TCP leg is never opened.
pub struct Exchange<const STREAMS: usize = 2> {
    request: Request,
    policy: Policy,
    target: Target,
    /// Attempts started so far.
    attempts: u32,
    phase: Phase,
    attempt: Option<AttemptPacket>,
    legs: [LegState; LEGS],
    /// Reply streams of the TCP legs (IPv4, then IPv6 when `STREAMS` is 2).
    framers: [SealedStream; STREAMS],
    /// Why this attempt's legs ended without a reply: the first reason,
    /// replaced by any later network error (its reason beats a bare timeout).
    no_reply: Option<NoReply>,
    /// An error reply arrived in this attempt: its server time minus ours.
    error_skew: Option<f64>,
    /// The accepted reply's plaintext (the winner, else the error reply).
    reply: [u8; PLAINTEXT_LEN],
    reply_len: usize,
    closing: [bool; LEGS],
    lookup_asked: bool,
    outcome: Option<Outcome>,
    outcome_told: bool,
    ignored: u32,
    /// Set by [`Exchange::start_lookup`]: this is now the GET that looks
    /// the name up for a write signed by this key (`None`: unsigned).
    lookup_for: Option<Option<[u8; PUBLIC_KEY_LEN]>>,
}

impl<const STREAMS: usize> fmt::Debug for Exchange<STREAMS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("op", &self.request.op())
            .field("attempts", &self.attempts)
            .field("phase", &self.phase)
            .field("legs", &self.legs)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<const STREAMS: usize> Exchange<STREAMS> {
    /// Reads `name`.
    pub fn get(name: &[u8], policy: Policy, target: Target) -> Result<Self, EncodeError> {
        Ok(Self::new(Request::get(name)?, policy, target))
    }

    /// Claims or updates `name` with `owner`'s key; `ttl` in seconds
    /// (default 10).
    pub fn put(
        name: &[u8],
        value: &[u8],
        owner: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
        policy: Policy,
        target: Target,
    ) -> Result<Self, EncodeError> {
        let request = Request::new(Op::Put, name, value, Some(owner), behavior, ttl)?;
        Ok(Self::new(request, policy, target))
    }

    /// Deletes `name` owned by `owner`.
    pub fn delete(
        name: &[u8],
        owner: &Keypair,
        ttl: Option<f64>,
        policy: Policy,
        target: Target,
    ) -> Result<Self, EncodeError> {
        let request = Request::new(Op::Del, name, b"", Some(owner), Behavior::Bump, ttl)?;
        Ok(Self::new(request, policy, target))
    }

    /// Asks for the quota state of the address the request comes from.
    pub fn usage(
        owner: &Keypair,
        ttl: Option<f64>,
        policy: Policy,
        target: Target,
    ) -> Result<Self, EncodeError> {
        let request = Request::new(Op::Usage, b"", b"", Some(owner), Behavior::Bump, ttl)?;
        Ok(Self::new(request, policy, target))
    }

    fn new(request: Request, policy: Policy, target: Target) -> Self {
        Self {
            request,
            policy,
            target,
            attempts: 0,
            phase: Phase::Due(Instant::ZERO),
            attempt: None,
            legs: [LegState::Off; LEGS],
            framers: [const { SealedStream::new() }; STREAMS],
            no_reply: None,
            error_skew: None,
            reply: [0u8; PLAINTEXT_LEN],
            reply_len: 0,
            closing: [false; LEGS],
            lookup_asked: false,
            outcome: None,
            outcome_told: false,
            ignored: 0,
            lookup_for: None,
        }
    }

    /// The name asked about (what [`Event::LookupOwner`] looks up).
    pub fn name(&self) -> &[u8] {
        self.request.name()
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Replies dropped as not ours: undecryptable, undecodable, or
    /// answering another request.
    pub fn ignored(&self) -> u32 {
        self.ignored
    }

    /// The outcome, once the exchange is over.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// The reply that decided the exchange (the winning reply, or the
    /// error reply that was explained); `None` if none arrived.
    pub fn reply(&self) -> Option<Packet<'_>> {
        if self.reply_len == 0 {
            return None;
        }
        Packet::decode(&self.reply[..self.reply_len]).ok()
    }

    /// The next request to send: starts a due attempt (`unix` is the
    /// wall-clock time it is dated with) and seals the request for one of
    /// its legs into `buf` ([`TRANSMIT_LEN`] bytes hold any).
    pub fn poll_transmit<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        unix: f64,
        rng: &mut R,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if let Phase::Due(at) = self.phase
            && now >= at
        {
            self.begin_attempt(now, unix, rng);
        }
        if !matches!(self.phase, Phase::Racing { .. }) {
            return None;
        }
        let index = self.legs.iter().position(|s| *s == LegState::Due)?;
        let leg = Leg::ALL[index];
        let attempt = self.attempt.as_ref()?;
        let mut plain = [0u8; MAX_PACKET_LEN];
        let sealed = match self.request.encode(attempt, leg.transport, &mut plain) {
            Ok(n) => match ecies::seal(&self.target.key, &plain[..n], rng, buf) {
                Ok(len) => Ok(len),
                Err(EciesError::BufferTooSmall { needed, got }) => {
                    Err(EncodeError::BufferTooSmall { needed, got })
                }
                Err(_) => Err(EncodeError::BufferTooSmall {
                    needed: ecies::sealed_len(n),
                    got: buf.len(),
                }),
            },
            Err(e) => Err(e),
        };
        match sealed {
            Ok(len) => {
                self.legs[index] = LegState::Waiting;
                // The wait runs from the last send, so time spent sealing
                // (an ECDH per leg, slow on a busy or small CPU) is not
                // taken from the server's reply time.
                self.phase = Phase::Racing {
                    deadline: now + self.policy.reply_timeout,
                };
                Some(Transmit { leg, len })
            }
            Err(e) => {
                self.finish(Outcome::Failed(Failure::InvalidInput(e)));
                None
            }
        }
    }

    /// A datagram that arrived on `leg`'s UDP socket, at wall-clock `unix`.
    pub fn handle_datagram(&mut self, now: Instant, unix: f64, leg: Leg, datagram: &[u8]) {
        if leg.transport != Transport::Udp || !self.waiting(leg) {
            return;
        }
        let Some(attempt) = &self.attempt else {
            return;
        };
        if datagram.len() > MAX_SEALED_REQUEST {
            self.ignored = self.ignored.saturating_add(1);
            return;
        }
        let mut plain = [0u8; PLAINTEXT_LEN];
        let Ok(opened) = ecies::open(&attempt.reply_key, datagram, &mut plain) else {
            self.ignored = self.ignored.saturating_add(1);
            return;
        };
        let len = opened.len();
        self.offer(now, unix, leg, &plain[..len]);
    }

    /// Bytes read from `leg`'s TCP connection, at wall-clock `unix`.
    pub fn handle_stream(&mut self, now: Instant, unix: f64, leg: Leg, mut bytes: &[u8]) {
        if leg.transport != Transport::Tcp {
            return;
        }
        let Some(framer) = Some(family_index(leg.family)).filter(|&i| i < STREAMS) else {
            return;
        };
        let mut plain = [0u8; PLAINTEXT_LEN];
        // Each round takes bytes or ends the leg, so this ends.
        while self.waiting(leg) {
            let Some(attempt) = &self.attempt else {
                return;
            };
            let taken = self.framers[framer].push(bytes);
            bytes = &bytes[taken..];
            match self.framers[framer].next_message(&attempt.reply_key, &mut plain) {
                Ok(Some(message)) => {
                    let len = message.len();
                    self.offer(now, unix, leg, &plain[..len]);
                }
                Ok(None) if bytes.is_empty() => return,
                Ok(None) if taken == 0 => {
                    self.leg_failed(now, leg, LegFault::Unframeable);
                }
                Ok(None) => {}
                Err(_) => self.leg_failed(now, leg, LegFault::Unframeable),
            }
        }
    }

    /// `leg`'s socket failed (refused, reset, closed before a reply).
    pub fn handle_leg_failed(&mut self, now: Instant, leg: Leg) {
        self.leg_failed(now, leg, LegFault::Io);
    }

    /// The owner a [`Event::LookupOwner`] GET found (`None`: no such name,
    /// or the GET failed).
    pub fn handle_lookup(&mut self, _now: Instant, owner: Option<[u8; PUBLIC_KEY_LEN]>) {
        if self.phase != Phase::Explaining {
            return;
        }
        let mine = self.request.owner().map(|k| *k.public().as_bytes());
        self.finish(Outcome::Failed(explained(mine, owner)));
    }

    /// Instead of a second exchange for [`Event::LookupOwner`]: turns this
    /// one, in place, into the GET of its name, whose end is this write's
    /// outcome as [`Self::handle_lookup`] would decide it from the owner
    /// found (a failed GET finds none). The attempts, timers and legs
    /// start over for the GET; the shell drives it on as before. False
    /// (and nothing changes) unless a lookup was asked.
    pub fn start_lookup(&mut self) -> bool {
        if self.phase != Phase::Explaining || self.lookup_for.is_some() {
            return false;
        }
        let mine = self.request.owner().map(|k| *k.public().as_bytes());
        let mut name = [0u8; MAX_NAME_LEN];
        let len = self.request.name().len().min(MAX_NAME_LEN);
        name[..len].copy_from_slice(&self.request.name()[..len]);
        // The name was accepted for this exchange, so it is one for a GET.
        let Ok(request) = Request::get(&name[..len]) else {
            return false;
        };
        self.request = request;
        self.lookup_for = Some(mine);
        self.attempts = 0;
        self.phase = Phase::Due(Instant::ZERO);
        self.attempt = None;
        self.legs = [LegState::Off; LEGS];
        self.no_reply = None;
        self.error_skew = None;
        self.reply_len = 0;
        self.lookup_asked = false;
        true
    }

    /// Fires the reply deadline; call at [`Self::poll_timeout`] (earlier
    /// or later calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Phase::Racing { deadline } = self.phase else {
            return;
        };
        if now < deadline {
            return;
        }
        for index in 0..LEGS {
            if matches!(self.legs[index], LegState::Due | LegState::Waiting) {
                self.legs[index] = LegState::Ended;
                self.closing[index] = true;
            }
        }
        self.no_reply.get_or_insert(NoReply::Timeout);
        self.attempt_over(now);
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Due(at) => Some(at),
            Phase::Racing { deadline } => Some(deadline),
            Phase::Explaining | Phase::Done => None,
        }
    }

    /// The next event: leg closes first, then a lookup request, then the
    /// outcome (once).
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(index) = self.closing.iter().position(|c| *c) {
            self.closing[index] = false;
            return Some(Event::CloseLeg(Leg::ALL[index]));
        }
        if self.lookup_asked {
            self.lookup_asked = false;
            return Some(Event::LookupOwner);
        }
        if !self.outcome_told
            && let Some(outcome) = self.outcome
        {
            self.outcome_told = true;
            return Some(Event::Done(outcome));
        }
        None
    }

    fn begin_attempt<R: CryptoRng + ?Sized>(&mut self, now: Instant, unix: f64, rng: &mut R) {
        self.attempts = self.attempts.saturating_add(1);
        let attempt = match self.request.begin(unix, rng) {
            Ok(attempt) => attempt,
            Err(e) => return self.finish(Outcome::Failed(Failure::InvalidInput(e))),
        };
        self.attempt = Some(attempt);
        self.no_reply = None;
        self.error_skew = None;
        self.reply_len = 0;
        for framer in &mut self.framers {
            *framer = SealedStream::new();
        }
        let families = self.target.families;
        // Signed requests go to the first resolved address only, IPv4 first.
        let skip_v6 = self.request.is_signed() && families.v4;
        for (index, leg) in Leg::ALL.iter().enumerate() {
            let family = match leg.family {
                Family::V4 => families.v4,
                Family::V6 => families.v6 && !skip_v6,
            };
            let transport = match leg.transport {
                // A family without a framer has no TCP leg.
                Transport::Tcp => family_index(leg.family) < STREAMS,
                Transport::Udp => self.policy.udp,
            };
            self.legs[index] = if family && transport {
                LegState::Due
            } else {
                LegState::Off
            };
        }
        self.phase = Phase::Racing {
            deadline: now + self.policy.reply_timeout,
        };
        // No leg at all (no family resolved) is an attempt without a reply.
        self.check_attempt_over(now);
    }

    fn waiting(&self, leg: Leg) -> bool {
        matches!(self.phase, Phase::Racing { .. }) && self.legs[leg.index()] == LegState::Waiting
    }

    /// A decrypted message from `leg`: the winner, an error reply to keep,
    /// or not ours.
    fn offer(&mut self, now: Instant, unix: f64, leg: Leg, plaintext: &[u8]) {
        let Some(attempt) = &self.attempt else {
            return;
        };
        let packet = match Packet::decode(plaintext) {
            Ok(p) if answers(&p, attempt.pkid, self.request.op()) => p,
            _ => {
                self.ignored = self.ignored.saturating_add(1);
                return;
            }
        };
        let is_error = packet.op == Op::Error;
        let skew = packet.updated - unix;
        self.reply[..plaintext.len()].copy_from_slice(plaintext);
        self.reply_len = plaintext.len();
        self.legs[leg.index()] = LegState::Ended;
        if is_error {
            self.error_skew = Some(skew);
            self.check_attempt_over(now);
        } else {
            self.close_open_legs();
            let outcome = self.read_reply();
            self.finish(outcome);
        }
    }

    fn leg_failed(&mut self, now: Instant, leg: Leg, fault: LegFault) {
        if !self.waiting(leg) {
            return;
        }
        self.legs[leg.index()] = LegState::Ended;
        self.closing[leg.index()] = true;
        self.no_reply = Some(NoReply::Network(leg, fault));
        self.check_attempt_over(now);
    }

    fn check_attempt_over(&mut self, now: Instant) {
        let open = self
            .legs
            .iter()
            .any(|s| matches!(s, LegState::Due | LegState::Waiting));
        if !open {
            self.attempt_over(now);
        }
    }

    /// Every leg of the attempt has ended and none won.
    fn attempt_over(&mut self, now: Instant) {
        if let Some(skew) = self.error_skew {
            return self.explain(skew);
        }
        let limit = self.policy.attempts.max(1);
        if self.attempts < limit {
            self.phase = Phase::Due(now + self.policy.retry_pause);
            return;
        }
        let failure = match self.no_reply {
            Some(NoReply::Network(leg, fault)) => Failure::Network { leg, fault },
            Some(NoReply::Timeout) | None => Failure::Timeout { attempts: limit },
        };
        self.finish(Outcome::Failed(failure));
    }

    /// An error reply and no success (spec §6.5).
    fn explain(&mut self, skew: f64) {
        let failure = match self.request.op() {
            // An error is not an answer to a GET.
            Op::Get => Failure::BadReply,
            _ if skew.abs() > CLOCK_SKEW_SLACK => Failure::ClockSkew { skew },
            Op::Put | Op::Del => {
                self.phase = Phase::Explaining;
                self.lookup_asked = true;
                return;
            }
            _ => Failure::ServerError,
        };
        self.finish(Outcome::Failed(failure));
    }

    /// What the winning (non-error) reply means for the request.
    fn read_reply(&self) -> Outcome {
        let Some(reply) = self.reply() else {
            return Outcome::Failed(Failure::BadReply);
        };
        match self.request.op() {
            Op::Get if reply.op != Op::Get || reply.name != self.request.name() => {
                Outcome::Failed(Failure::BadReply)
            }
            Op::Get if reply.updated == 0.0 => Outcome::NotFound,
            Op::Get if reply.vkc.is_none() => Outcome::Failed(Failure::BadReply),
            Op::Get => Outcome::Found,
            // The reference's quota rejection (spec §6.2 step 4).
            Op::Put if reply.updated == 0.0 && reply.value.is_empty() => {
                Outcome::Failed(match self.request.behavior() {
                    Behavior::Throw => Failure::WouldBump,
                    Behavior::Bump | Behavior::DontBump => Failure::RejectedAtQuota,
                })
            }
            Op::Put => Outcome::Stored,
            Op::Del => Outcome::Deleted,
            Op::Usage => match Usage::decode(reply.value) {
                Ok(usage) => Outcome::Usage(usage),
                Err(_) => Outcome::Failed(Failure::BadReply),
            },
            _ => Outcome::Failed(Failure::BadReply),
        }
    }

    fn close_open_legs(&mut self) {
        for index in 0..LEGS {
            if matches!(self.legs[index], LegState::Due | LegState::Waiting) {
                self.legs[index] = LegState::Ended;
                self.closing[index] = true;
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.close_open_legs();
        self.phase = Phase::Done;
        self.outcome = Some(match self.lookup_for {
            // The lookup's GET ended: the write's outcome, by the rule of
            // `handle_lookup`.
            Some(mine) => {
                let owner = match outcome {
                    Outcome::Found => self.reply().and_then(|r| r.vkc),
                    _ => None,
                };
                Outcome::Failed(explained(mine, owner))
            }
            None => outcome,
        });
    }
}

impl Outcome {
    /// The failure's kind; `None` for a success.
    pub const fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Failed(f) => Some(f.kind()),
            _ => None,
        }
    }
}

/// A refused write explained by its name's owner: someone else's key is
/// [`Failure::NotOwner`]; ours, or none found, leaves the refusal unexplained.
fn explained(mine: Option<[u8; PUBLIC_KEY_LEN]>, owner: Option<[u8; PUBLIC_KEY_LEN]>) -> Failure {
    match owner {
        Some(owner) if Some(owner) != mine => Failure::NotOwner,
        _ => Failure::ServerError,
    }
}

const fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}
