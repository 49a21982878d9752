//! Why a link ended, and whether the peer is to blame.

use core::fmt;

use crate::identity::PublicKey;

/// Which per-link bound a peer broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A reassembled message grew past `max_message_len`.
    MessageSize,
    /// The link held more than `max_buffered_bytes`.
    BufferedBytes,
}

/// Why a link closed.
// Both keys are carried so the dialer can report them; a close happens
// once per link, so the size of this value does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The Noise handshake failed: a wrong network key, a corrupted,
    /// malformed or replayed handshake message; for the dialer also a peer
    /// that hung up before proving its identity (what a wrong network key
    /// looks like from the dialing side, since psk3 is checked by the acceptor).
    HandshakeFailed,
    /// The peer's identity proof did not verify.
    BadProof,
    /// The dialer's peer proved a valid identity, but not the expected one.
    /// The dialer hangs up before proving its own identity.
    WrongPeerIdentity {
        expected: PublicKey,
        proved: PublicKey,
    },
    /// The handshake and identity proofs did not finish in time.
    Timeout,
    /// Nothing arrived from a connected peer for `idle_timeout`.
    IdleTimeout,
    /// The peer sent more than `pre_proof_bytes` before proving its identity.
    PreProofCap,
    /// The peer broke a per-link bound.
    LimitExceeded(Limit),
    /// The peer sent a frame that breaks the protocol (after the handshake).
    Protocol,
    /// The peer closed the connection (reported by the shell).
    PeerClosed,
    /// This side closed the link.
    Local,
    /// The Noise library failed on its own input (never expected).
    Internal,
}

impl CloseReason {
    /// Whether the peer's source (before its proof) or identity (after it)
    /// belongs on the blocklist. A dialer that hangs up because of a wrong
    /// peer identity shows up at the acceptor as [`Self::PeerClosed`] and is
    /// not penalised; the dialer's own `WrongPeerIdentity` is not either
    /// (the peer may be honest and the address stale).
    pub fn penalised(&self) -> bool {
        match self {
            Self::HandshakeFailed
            | Self::BadProof
            | Self::Timeout
            | Self::PreProofCap
            | Self::LimitExceeded(_)
            | Self::Protocol => true,
            Self::WrongPeerIdentity { .. }
            | Self::IdleTimeout
            | Self::PeerClosed
            | Self::Local
            | Self::Internal => false,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first four are the CLI's one-line reasons (issue 16, item 8).
        match self {
            Self::HandshakeFailed => f.write_str("handshake failed"),
            Self::BadProof => f.write_str("handshake failed: invalid identity proof"),
            Self::WrongPeerIdentity { expected, proved } => {
                write!(
                    f,
                    "wrong peer identity: expected {expected}, peer proved {proved}"
                )
            }
            Self::Timeout => f.write_str("timeout"),
            Self::IdleTimeout => f.write_str("idle timeout"),
            Self::PreProofCap => f.write_str("too many bytes before the identity proof"),
            Self::LimitExceeded(Limit::MessageSize) => f.write_str("message too large"),
            Self::LimitExceeded(Limit::BufferedBytes) => f.write_str("too many bytes buffered"),
            Self::Protocol => f.write_str("protocol violation"),
            Self::PeerClosed => f.write_str("peer closed the link"),
            Self::Local => f.write_str("closed"),
            Self::Internal => f.write_str("internal error in the Noise layer"),
        }
    }
}
