//! The request an exchange sends, and the packet of each attempt.
//!
//! PUT, DEL and USAGE sign **one** packet per attempt and send it on every
//! leg: the reference signs each leg separately, so its server executes the
//! write twice (bug 12); one request is answered once by a server's replay
//! cache. GET is unsigned and, like the reference client without a key,
//! puts its reply key in `vkc` too (the vkc quirk). A UDP GET is padded to
//! the size of the largest reply, because servers (ours) never answer a
//! datagram with a bigger one.

use rand_core::CryptoRng;

use crate::identity::{Keypair, PUBLIC_KEY_LEN};
use crate::namebump::client::behavior::Behavior;
use crate::namebump::client::leg::Transport;
use crate::namebump::{DEFAULT_REQUEST_TTL, EncodeError, MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet};
use crate::signature::SIGNATURE_LEN;

/// The value of a padded UDP GET.
static GET_PADDING: [u8; MAX_VALUE_LEN] = [0u8; MAX_VALUE_LEN];

/// What to ask the server, validated, held without a heap.
#[derive(Clone)]
pub(super) struct Request {
    op: Op,
    name: [u8; MAX_NAME_LEN],
    name_len: usize,
    value: [u8; MAX_VALUE_LEN],
    value_len: usize,
    /// The signer of PUT, DEL and USAGE; `None` for GET.
    owner: Option<Keypair>,
    behavior: Behavior,
    ttl: f64,
}

/// The per-attempt fields: a fresh pkid and reply key, the wall-clock time,
/// and the signature over them.
#[derive(Clone)]
pub(super) struct AttemptPacket {
    pub(super) pkid: u32,
    pub(super) reply_key: Keypair,
    updated: f64,
    vkc: Option<[u8; PUBLIC_KEY_LEN]>,
    sig: Option<[u8; SIGNATURE_LEN]>,
}

impl Request {
    pub(super) fn get(name: &[u8]) -> Result<Self, EncodeError> {
        Self::new(Op::Get, name, b"", None, Behavior::Bump, None)
    }

    pub(super) fn new(
        op: Op,
        name: &[u8],
        value: &[u8],
        owner: Option<&Keypair>,
        behavior: Behavior,
        ttl: Option<f64>,
    ) -> Result<Self, EncodeError> {
        if name.len() > MAX_NAME_LEN {
            return Err(EncodeError::NameTooLong { len: name.len() });
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(EncodeError::ValueTooLong { len: value.len() });
        }
        let mut request = Self {
            op,
            name: [0u8; MAX_NAME_LEN],
            name_len: name.len(),
            value: [0u8; MAX_VALUE_LEN],
            value_len: value.len(),
            owner: owner.cloned(),
            behavior,
            ttl: ttl.unwrap_or(DEFAULT_REQUEST_TTL),
        };
        request.name[..name.len()].copy_from_slice(name);
        request.value[..value.len()].copy_from_slice(value);
        Ok(request)
    }

    pub(super) fn op(&self) -> Op {
        self.op
    }

    pub(super) fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }

    pub(super) fn behavior(&self) -> Behavior {
        self.behavior
    }

    pub(super) fn owner(&self) -> Option<&Keypair> {
        self.owner.as_ref()
    }

    /// Whether the request is signed (and so goes to one address only).
    pub(super) fn is_signed(&self) -> bool {
        self.owner.is_some()
    }

    /// A fresh attempt at wall-clock time `unix`: a new pkid (never 0: the
    /// reference replaces 0 and then fails the signature, bug 27), a new
    /// reply key, and for signed requests the one signature every leg carries.
    pub(super) fn begin<R: CryptoRng + ?Sized>(
        &self,
        unix: f64,
        rng: &mut R,
    ) -> Result<AttemptPacket, EncodeError> {
        let pkid = rng.next_u32().max(1);
        let reply_key = Keypair::generate(rng);
        let mut attempt = AttemptPacket {
            pkid,
            reply_key,
            updated: unix,
            vkc: None,
            sig: None,
        };
        let mut packet = self.packet(&attempt, false);
        if let Some(owner) = &self.owner {
            packet.sign(owner)?;
            attempt.vkc = packet.vkc;
            attempt.sig = packet.sig;
        } else {
            attempt.vkc = packet.reply_pk;
        }
        Ok(attempt)
    }

    /// The plaintext `transport` carries in `attempt`, encoded into `out`.
    pub(super) fn encode(
        &self,
        attempt: &AttemptPacket,
        transport: Transport,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let padded = self.op == Op::Get && transport == Transport::Udp;
        self.packet(attempt, padded).encode(out)
    }

    fn packet<'a>(&'a self, attempt: &AttemptPacket, padded: bool) -> Packet<'a> {
        let value = if padded {
            &GET_PADDING[..]
        } else {
            &self.value[..self.value_len]
        };
        Packet {
            reply_pk: Some(*attempt.reply_key.public().as_bytes()),
            behavior: self.behavior.wire(),
            ttl: self.ttl,
            vkc: attempt.vkc,
            sig: attempt.sig,
            ..Packet::new(self.op, attempt.pkid, attempt.updated, self.name(), value)
        }
    }
}
