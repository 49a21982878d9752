//! What the node wants done, waiting for `poll_transmit`.
//!
//! Link commands have a place per link (`L` each), so none is lost while
//! links open and close; publishes share `O` places ([`super::OUTBOX`] by default) and one
//! arriving when they are full is dropped, as a datagram would be (a send
//! publishes again on its next resend, a copy of a MSG is re-ACKed).
//! Connects go out first, so a link opened and closed before the shell
//! polled is never left open.

use crate::identity::PUBLIC_KEY_LEN;

use super::ack_cache::ACK_LEN;
use super::{BrokerId, LinkId, SendId, Transmit};

#[derive(Clone, Copy, Debug)]
enum Publish {
    Send {
        link: LinkId,
        to: [u8; PUBLIC_KEY_LEN],
        send: SendId,
    },
    Ack {
        link: LinkId,
        to: [u8; PUBLIC_KEY_LEN],
        bytes: [u8; ACK_LEN],
    },
}

#[derive(Debug)]
pub(super) struct Outbox<const L: usize, const O: usize> {
    connects: [Option<(LinkId, BrokerId)>; L],
    disconnects: [Option<LinkId>; L],
    publishes: [Option<Publish>; O],
    /// Publishes dropped because the outbox was full.
    pub(super) dropped: u64,
}

impl<const L: usize, const O: usize> Default for Outbox<L, O> {
    fn default() -> Self {
        Self {
            connects: [None; L],
            disconnects: [None; L],
            publishes: [None; O],
            dropped: 0,
        }
    }
}

impl<const L: usize, const O: usize> Outbox<L, O> {
    pub(super) fn connect(&mut self, link: LinkId, broker: BrokerId) {
        if let Some(slot) = self.connects.iter_mut().find(|c| c.is_none()) {
            *slot = Some((link, broker));
        }
    }

    pub(super) fn disconnect(&mut self, link: LinkId) {
        // Never connected: nothing to close.
        if let Some(c) = self
            .connects
            .iter_mut()
            .find(|c| c.is_some_and(|(l, _)| l == link))
        {
            *c = None;
            return;
        }
        self.publishes.iter_mut().for_each(|p| {
            if p.is_some_and(|p| match p {
                Publish::Send { link: l, .. } | Publish::Ack { link: l, .. } => l == link,
            }) {
                *p = None;
            }
        });
        if let Some(slot) = self.disconnects.iter_mut().find(|d| d.is_none()) {
            *slot = Some(link);
        }
    }

    pub(super) fn publish_send(&mut self, link: LinkId, to: [u8; PUBLIC_KEY_LEN], send: SendId) {
        self.push(Publish::Send { link, to, send });
    }

    pub(super) fn publish_ack(
        &mut self,
        link: LinkId,
        to: [u8; PUBLIC_KEY_LEN],
        bytes: [u8; ACK_LEN],
    ) {
        self.push(Publish::Ack { link, to, bytes });
    }

    fn push(&mut self, publish: Publish) {
        match self.publishes.iter_mut().find(|p| p.is_none()) {
            Some(slot) => *slot = Some(publish),
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    pub(super) fn poll(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((link, broker)) = self.connects.iter_mut().find_map(Option::take) {
            return Some(Transmit::Connect { link, broker });
        }
        while let Some(publish) = self.publishes.iter_mut().find_map(Option::take) {
            match publish {
                Publish::Send { link, to, send } => {
                    return Some(Transmit::PublishSend { link, to, send });
                }
                Publish::Ack { link, to, bytes } => {
                    let Some(out) = buf.get_mut(..ACK_LEN) else {
                        continue;
                    };
                    out.copy_from_slice(&bytes);
                    return Some(Transmit::PublishAck {
                        link,
                        to,
                        len: ACK_LEN,
                    });
                }
            }
        }
        self.disconnects
            .iter_mut()
            .find_map(Option::take)
            .map(|link| Transmit::Disconnect { link })
    }
}
