//! A connect walk: which brokers a shell connects, in which order and how
//! many at once, to reach the first `wanted` brokers of each ranked group
//! that answer (spec §5.4, §10 item 10: the top of the ranking skipping
//! only brokers that fail, not "whichever connects first").
//!
//! Rules: the first `wanted` candidates of every group are connected in
//! parallel (one slow or silent broker delays no other); each link is
//! usable, and handed to its send or ACK, as soon as it is up; a candidate
//! that fails (refused, backing off, its connect already under way
//! elsewhere) is replaced by the next of its group; the walk ends when no
//! connect is under way and none is left to start.
//!
//! The walk holds counts only: the shell keeps the candidate lists (a
//! send's hints, each family of the destination's ranking) and reports
//! each connect's outcome by group. The tokio Router drives it for its
//! sends, its own subscriptions and its ACKs to a sender's set; a
//! firmware shell can drive it the same way.

use super::widening::{self, MAX_HINTS};

/// Groups a walk holds, at most: a send's hints and the two families.
pub const MAX_GROUPS: usize = 3;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Group {
    candidates: usize,
    wanted: usize,
    /// The next candidate not yet started.
    next: usize,
    connecting: usize,
    up: usize,
}

/// One walk over at most [`MAX_GROUPS`] ranked groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    groups: [Group; MAX_GROUPS],
}

impl Walk {
    /// A walk over groups of `(candidates, wanted)`: `wanted` of each
    /// group's `candidates` should answer. Groups beyond [`MAX_GROUPS`]
    /// are ignored.
    pub fn new(groups: &[(usize, usize)]) -> Self {
        let mut walk = Self {
            groups: [Group::default(); MAX_GROUPS],
        };
        for (g, &(candidates, wanted)) in walk.groups.iter_mut().zip(groups) {
            g.candidates = candidates;
            g.wanted = wanted;
        }
        walk
    }

    /// Publish number `attempt` of a send (0 for the first): group 0 is
    /// its `hints` (the caller's, then remembered ones), all at once, at
    /// most [`MAX_HINTS`]; groups 1 and 2 are the families of the
    /// destination's ranking (`families`: their lengths, IPv4 then IPv6),
    /// each reached as far as [`widening::reach`] says.
    pub fn for_send(hints: usize, families: [usize; 2], attempt: u32) -> Self {
        let extra = widening::extra(attempt);
        let [v4, v6] = families;
        Self::new(&[
            (hints.min(MAX_HINTS), usize::MAX),
            (v4, widening::reach(v4, extra)),
            (v6, widening::reach(v6, extra)),
        ])
    }

    /// The top of a ranking, `extra` brokers beyond the set size per
    /// family (groups 0 and 1: IPv4, IPv6): a sender's set for its ACK
    /// (`extra` 0), the node's own subscriptions (`extra`: the spares).
    pub fn for_set(families: [usize; 2], extra: usize) -> Self {
        let [v4, v6] = families;
        Self::new(&[
            (v4, widening::reach(v4, extra)),
            (v6, widening::reach(v6, extra)),
        ])
    }

    /// The next connect to start, as `(group, candidate index)`; poll
    /// until `None` after creating the walk and after each outcome.
    pub fn poll_connect(&mut self) -> Option<(usize, usize)> {
        self.groups.iter_mut().enumerate().find_map(|(i, g)| {
            let short = g.connecting.saturating_add(g.up) < g.wanted;
            (short && g.next < g.candidates).then(|| {
                let index = g.next;
                g.next += 1;
                g.connecting += 1;
                (i, index)
            })
        })
    }

    /// A connect of `group` is up: its link is usable now.
    pub fn handle_up(&mut self, group: usize) {
        if let Some(g) = self.groups.get_mut(group) {
            g.connecting = g.connecting.saturating_sub(1);
            g.up = g.up.saturating_add(1);
        }
    }

    /// A connect of `group` failed: the next candidate of the group
    /// replaces it ([`Self::poll_connect`]).
    pub fn handle_failed(&mut self, group: usize) {
        if let Some(g) = self.groups.get_mut(group) {
            g.connecting = g.connecting.saturating_sub(1);
        }
    }

    /// Links of `group` up so far.
    pub fn up(&self, group: usize) -> usize {
        self.groups.get(group).map_or(0, |g| g.up)
    }

    /// No connect under way and none left to start.
    pub fn is_done(&self) -> bool {
        self.groups
            .iter()
            .all(|g| g.connecting == 0 && (g.up >= g.wanted || g.next >= g.candidates))
    }
}
