//! The Drayer pull (spec §8.4, fixed; D8 for partial mirrors) as a
//! sans-I/O machine: the one copy of the rules every face pulls by — the
//! chain in memory, the SQLite stream files, the CLI and the Python wheel.
//!
//! **Inputs**: the local tip when made ([`Pull::new`]); the source's
//! answers to the requests it emitted ([`Pull::handle_page`],
//! [`Pull::handle_newest`], [`Pull::handle_crdr`]); what the shell's store
//! did with the records it was told to apply ([`Pull::handle_verified`],
//! [`Pull::handle_applied`], [`Pull::handle_started`], [`Pull::handle_kept`]);
//! [`Pull::handle_timeout`].
//! **Outputs**: the next request ([`Pull::poll_transmit`]: which, and its
//! path under the stream's URL) and the store work to do, then how the pull
//! ended ([`Pull::poll_event`]). Records and their bodies stay with the
//! shell: the machine sees each record's `modified` and size, and the ids
//! the store reports, so it needs no heap.
//! **Timer**: one deadline, [`PullLimits::max_time`] after the start
//! ([`Pull::poll_timeout`]).
//! **Shells**: `MemoryChain::sync_from` (synchronous, this crate),
//! `keyway_drayer::sync` (tokio: HTTP or another stream file as source,
//! SQLite as store, signature checks on worker threads); embassy firmware
//! and uniffi mobile faces next.
//!
//! The rules:
//! - Pages of records after the local tip, asking again until a page comes
//!   back *empty* (the original never paged, O4; its client's rule, again
//!   while a page holds ≥ 100, would stop early at a page a server cut
//!   short by size).
//! - Every record of a page must come after the time asked for and after
//!   the record before it, or the pull stops with
//!   [`PullError::NoProgress`]: each page moves the cursor, so a pull
//!   always ends.
//! - Records count against the byte budget as they arrive; a page is cut
//!   where it runs out, what fits is applied, and the pull stops with
//!   [`PullError::ByteLimit`].
//! - Records are applied in order up to the first bad signature, which
//!   then stops the pull ([`PullError::Refused`]).
//! - A record that follows one the store does not hold ([`Stop::Behind`])
//!   was read from a source written as it was served: its pages and
//!   `crdr` answers came from different states, and this page from one
//!   the store cannot follow. What was applied is a whole chain, so the
//!   pull asks again after the store's tip (the rest of the page and the
//!   page asked ahead are dropped), up to [`MAX_RESTARTS`] times, then
//!   stops with [`PullError::Unsettled`], which a later pull gets past.
//! - A record that orphans a local one needs the owner's `crdr` answer:
//!   up to [`MAX_REPAIRS`] for one record (answers are kept until a record
//!   applies), then it is refused.
//! - The request for the next page goes out as soon as a page is taken,
//!   so the source works while this node verifies and applies.
//! - A partial mirror (newest `keep`, at least 1) starts empty from the
//!   source's newest records, pulls like any mirror, lets go of its oldest
//!   records beyond `keep`, and asks `crdr/<back>` for a silent patch of
//!   the oldest record it holds.

mod error;
mod limits;
mod request;

pub use error::{OutOfTurn, PullError};
pub use limits::{PageRecord, PullLimits, Pulled, RECORD_OVERHEAD, record_size};
pub use request::{MAX_NEWEST, Request, Transmit};

use crate::drayer::{Meta, RecordError, Repair};
use crate::time::Instant;

/// Records per page: the server's limit L.
pub const PAGE: usize = 100;

/// `crdr` answers fetched for one record before giving up on it.
pub const MAX_REPAIRS: usize = 16;

/// Restarts after a record the store could not follow (the source
/// changed while it was read) before the pull gives up: a writer is
/// seldom caught more than once or twice, and a source that keeps
/// changing its pages must not keep a pull going.
pub const MAX_RESTARTS: u32 = 8;

/// Whole mirror, or a partial one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Whole,
    /// Keeps the source's `keep` most recently modified records.
    Newest {
        keep: usize,
    },
}

/// Store work for the shell, and the end of the pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Start an empty partial mirror from the `newest` answer (all of it,
    /// one transaction; the oldest record's `prevchange` becomes the back
    /// pointer), then call [`Pull::handle_started`] with the tip.
    StartPartial { count: usize },
    /// Apply records `from..to` of the current page (as verified), in
    /// order, with [`Pull::repairs`], stopping at the first refused one;
    /// then call [`Pull::handle_applied`].
    Apply { from: usize, to: usize },
    /// Let go of all but the `keep` most recently modified records, moving
    /// the back pointer up; then call [`Pull::handle_kept`].
    KeepNewest { keep: usize },
    /// Take this `crdr/<back>` answer if it re-points the oldest record
    /// held further back (verify it first).
    RefreshOldest(Meta),
    /// The source has nothing more: what the pull did.
    Done(Pulled),
    /// The pull stopped; what it applied is kept.
    Failed(PullError),
}

/// Why the store stopped applying a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Record `id` needs the owner's answer to `crdr/<pdest>`.
    NeedsRepair { id: u64, pdest: i64 },
    /// Record `id` follows a record the store does not hold (the store's
    /// `Gap`); `tip` is the store's tip after what it applied.
    Behind { id: u64, tip: i64 },
    /// Record `id` was refused (the shell keeps the store's reason).
    Refused { id: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitNewest,
    AwaitStarted,
    AwaitPage,
    /// A page taken; its signatures are being checked.
    Verifying,
    Applying,
    AwaitRepair {
        pdest: i64,
    },
    AwaitKept,
    AwaitPatch,
    Finished,
}

/// One pull of one stream from one source.
#[derive(Clone, Debug)]
pub struct Pull {
    mode: Mode,
    state: State,
    limits: PullLimits,
    deadline: Instant,
    bytes_left: u64,
    /// The time the current page was asked after.
    cursor: i64,
    pulled: Pulled,
    values: bool,
    /// A request the pull waits on (newest, crdr).
    request: Option<Request>,
    /// The next page, asked ahead while the current one is applied.
    ahead: Option<Request>,
    event: Option<Event>,
    outcome: Option<Event>,
    // The current page.
    taken: usize,
    over_budget: bool,
    /// Records of the page verified, from the first.
    good: usize,
    /// Records of the page applied (or already held), from the first.
    at: usize,
    bad: Option<(u64, RecordError)>,
    repairs: [Repair; MAX_REPAIRS],
    repairs_len: usize,
    /// Times the pull asked again after the store's tip ([`Stop::Behind`]).
    restarts: u32,
}

impl Pull {
    /// A pull into a chain whose tip (`modified` of its newest record) is
    /// `tip` (0 when empty), started at `now`.
    pub fn new(now: Instant, tip: i64, mode: Mode, limits: PullLimits) -> Self {
        let mode = match mode {
            Mode::Newest { keep } => Mode::Newest { keep: keep.max(1) },
            Mode::Whole => Mode::Whole,
        };
        let (state, request) = match mode {
            Mode::Newest { keep } if tip == 0 => (State::AwaitNewest, Request::Newest { n: keep }),
            _ => (State::AwaitPage, Request::Page { after: tip }),
        };
        Self {
            mode,
            state,
            limits,
            deadline: now.saturating_add(limits.max_time),
            bytes_left: limits.max_bytes,
            cursor: tip,
            pulled: Pulled::default(),
            values: true,
            request: Some(request),
            ahead: None,
            event: None,
            outcome: None,
            taken: 0,
            over_budget: false,
            good: 0,
            at: 0,
            bad: None,
            repairs: [Repair {
                pdest: 0,
                answer: None,
            }; MAX_REPAIRS],
            repairs_len: 0,
            restarts: 0,
        }
    }

    /// Paths ask for records without their values (a metadata-only mirror).
    #[must_use]
    pub fn without_values(mut self) -> Self {
        self.values = false;
        self
    }

    /// The next request to make, its path written into `buf`: a request
    /// the pull waits on first, then the next page (whose answer the shell
    /// holds until the pull has applied the page before: until
    /// [`Self::handle_page`] stops returning [`OutOfTurn`]).
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let request = self.request.take().or_else(|| self.ahead.take())?;
        let len = request.write_path(self.values, buf).unwrap_or(0);
        Some(Transmit { request, len })
    }

    /// Store work to do, then how the pull ended (once).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take().or_else(|| self.outcome.take())
    }

    /// When [`Self::handle_timeout`] must be called: the end of the pull's
    /// time. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != State::Finished).then_some(self.deadline)
    }

    /// Ends the pull with [`PullError::TimeLimit`] if its time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expired(now);
    }

    /// Whether the pull has ended (its last event may still be pending).
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// What is left of the byte budget: a source reading ahead need read
    /// no further.
    pub fn bytes_left(&self) -> u64 {
        self.bytes_left
    }

    /// The `crdr` answers fetched for the record being applied.
    pub fn repairs(&self) -> &[Repair] {
        self.repairs.get(..self.repairs_len).unwrap_or(&[])
    }

    /// A page answering [`Request::Page`], oldest first. Returns how many
    /// records, from the first, the shell keeps to verify (the rest are
    /// past the byte budget); the shell then calls [`Self::handle_verified`].
    pub fn handle_page(
        &mut self,
        now: Instant,
        page: impl IntoIterator<Item = PageRecord>,
    ) -> Result<usize, OutOfTurn> {
        self.expect(State::AwaitPage)?;
        if self.expired(now) {
            return Ok(0);
        }
        let (mut after, mut taken, mut over, mut last) = (self.cursor, 0, false, self.cursor);
        for record in page {
            if record.modified <= after {
                self.fail(PullError::NoProgress {
                    cursor: after,
                    modified: record.modified,
                });
                return Ok(0);
            }
            after = record.modified;
            if over {
                continue;
            }
            match self.bytes_left.checked_sub(record.size) {
                Some(left) => {
                    self.bytes_left = left;
                    taken += 1;
                    last = record.modified;
                }
                None => over = true,
            }
        }
        if taken == 0 {
            if over {
                self.fail(PullError::ByteLimit(self.limits.max_bytes));
            } else {
                self.source_done();
            }
            return Ok(0);
        }
        self.cursor = last;
        self.taken = taken;
        self.over_budget = over;
        self.good = 0;
        self.at = 0;
        self.bad = None;
        if !over {
            self.ahead = Some(Request::Page { after: last });
        }
        self.state = State::Verifying;
        Ok(taken)
    }

    /// The signature checks of the page's kept records: the first `good`
    /// passed, and `bad` is the first that did not (its id and why).
    pub fn handle_verified(
        &mut self,
        now: Instant,
        good: usize,
        bad: Option<(u64, RecordError)>,
    ) -> Result<(), OutOfTurn> {
        self.expect(State::Verifying)?;
        if self.expired(now) {
            return Ok(());
        }
        self.good = good.min(self.taken);
        self.bad = bad;
        if bad.is_some() {
            // The pull ends with this page: a next page not yet asked for
            // need not be.
            self.ahead = None;
        }
        self.state = State::Applying;
        self.apply_rest();
        Ok(())
    }

    /// What the store did with an [`Event::Apply`]: `done` records applied
    /// or already held (from `from`), `inserted` of them new, and why it
    /// stopped before `to`, if it did.
    pub fn handle_applied(
        &mut self,
        now: Instant,
        done: usize,
        inserted: usize,
        stop: Option<Stop>,
    ) -> Result<(), OutOfTurn> {
        self.expect(State::Applying)?;
        self.pulled.inserted = self.pulled.inserted.saturating_add(inserted);
        if self.expired(now) {
            return Ok(());
        }
        self.at = self.at.saturating_add(done).min(self.good);
        if done > 0 {
            self.repairs_len = 0;
        }
        match stop {
            // A store that stopped for no reason has applied all it will.
            None => self.at = self.good,
            Some(Stop::NeedsRepair { pdest, .. }) if self.repairs_len < MAX_REPAIRS => {
                self.request = Some(Request::Crdr { pdest });
                self.state = State::AwaitRepair { pdest };
                return Ok(());
            }
            Some(Stop::Behind { tip, .. }) if self.restarts < MAX_RESTARTS => {
                self.restart(tip);
                return Ok(());
            }
            Some(Stop::Behind { .. }) => {
                self.fail(PullError::Unsettled {
                    restarts: self.restarts,
                });
                return Ok(());
            }
            Some(Stop::NeedsRepair { id, .. } | Stop::Refused { id }) => {
                self.fail(PullError::Refused {
                    id,
                    signature: None,
                });
                return Ok(());
            }
        }
        self.apply_rest();
        Ok(())
    }

    /// The answer to [`Request::Crdr`]: `None` if the source has no such
    /// record (404).
    pub fn handle_crdr(&mut self, now: Instant, answer: Option<Meta>) -> Result<(), OutOfTurn> {
        match self.state {
            State::AwaitRepair { pdest } => {
                if self.expired(now) {
                    return Ok(());
                }
                if let Some(slot) = self.repairs.get_mut(self.repairs_len) {
                    *slot = Repair { pdest, answer };
                    self.repairs_len += 1;
                }
                self.pulled.repairs = self.pulled.repairs.saturating_add(1);
                self.state = State::Applying;
                self.apply_rest();
                Ok(())
            }
            State::AwaitPatch => {
                if self.expired(now) {
                    return Ok(());
                }
                if let Some(patch) = answer {
                    self.event = Some(Event::RefreshOldest(patch));
                }
                self.finish(Event::Done(self.pulled));
                Ok(())
            }
            _ => Err(OutOfTurn),
        }
    }

    /// The answer to [`Request::Newest`] (`None`: the source cannot say).
    /// Returns how many records the shell starts the partial mirror with
    /// (all of them, or none when they are over the byte budget).
    pub fn handle_newest(
        &mut self,
        now: Instant,
        newest: Option<impl IntoIterator<Item = PageRecord>>,
    ) -> Result<usize, OutOfTurn> {
        self.expect(State::AwaitNewest)?;
        if self.expired(now) {
            return Ok(0);
        }
        let Some(newest) = newest else {
            self.fail(PullError::Unsupported);
            return Ok(0);
        };
        let mut count = 0usize;
        for record in newest {
            let Some(left) = self.bytes_left.checked_sub(record.size) else {
                self.fail(PullError::ByteLimit(self.limits.max_bytes));
                return Ok(0);
            };
            self.bytes_left = left;
            count += 1;
        }
        self.pulled.inserted = self.pulled.inserted.saturating_add(count);
        self.event = Some(Event::StartPartial { count });
        self.state = State::AwaitStarted;
        Ok(count)
    }

    /// The partial mirror was started; `tip` is its tip now.
    pub fn handle_started(&mut self, now: Instant, tip: i64) -> Result<(), OutOfTurn> {
        self.expect(State::AwaitStarted)?;
        if self.expired(now) {
            return Ok(());
        }
        self.cursor = tip;
        self.request = Some(Request::Page { after: tip });
        self.state = State::AwaitPage;
        Ok(())
    }

    /// The oldest records were let go; `back` is the back pointer now.
    pub fn handle_kept(&mut self, now: Instant, back: i64) -> Result<(), OutOfTurn> {
        self.expect(State::AwaitKept)?;
        if self.expired(now) {
            return Ok(());
        }
        if back == 0 {
            self.finish(Event::Done(self.pulled));
        } else {
            self.request = Some(Request::Crdr { pdest: back });
            self.state = State::AwaitPatch;
        }
        Ok(())
    }

    fn expect(&self, state: State) -> Result<(), OutOfTurn> {
        if self.state == state {
            Ok(())
        } else {
            Err(OutOfTurn)
        }
    }

    /// Ends the pull at its deadline; whether it has ended.
    fn expired(&mut self, now: Instant) -> bool {
        if self.state == State::Finished {
            return true;
        }
        if now >= self.deadline {
            self.fail(PullError::TimeLimit(self.limits.max_time));
            return true;
        }
        false
    }

    /// Applies what is left of the page, or ends it.
    fn apply_rest(&mut self) {
        if self.at < self.good {
            self.event = Some(Event::Apply {
                from: self.at,
                to: self.good,
            });
            self.state = State::Applying;
            return;
        }
        // The page is applied as far as it goes.
        if let Some((id, e)) = self.bad {
            self.fail(PullError::Refused {
                id,
                signature: Some(e),
            });
        } else if self.good < self.taken {
            // A shell that verified fewer than it kept, naming no failure:
            // nothing is known of the rest, so nothing after it is asked.
            self.fail(PullError::Refused {
                id: 0,
                signature: None,
            });
        } else if self.over_budget {
            self.fail(PullError::ByteLimit(self.limits.max_bytes));
        } else {
            self.state = State::AwaitPage;
        }
    }

    /// Drops the rest of the page and the page asked ahead (both read from
    /// a state of the source the store cannot follow) and asks for what
    /// comes after the store's `tip`. The byte budget and the deadline
    /// still run, so restarts cost what they read.
    fn restart(&mut self, tip: i64) {
        self.restarts += 1;
        self.ahead = None;
        self.repairs_len = 0;
        self.cursor = tip;
        self.request = Some(Request::Page { after: tip });
        self.state = State::AwaitPage;
    }

    /// The source sent an empty page.
    fn source_done(&mut self) {
        match self.mode {
            Mode::Whole => self.finish(Event::Done(self.pulled)),
            Mode::Newest { keep } => {
                self.event = Some(Event::KeepNewest { keep });
                self.state = State::AwaitKept;
            }
        }
    }

    fn fail(&mut self, e: PullError) {
        self.event = None;
        self.finish(Event::Failed(e));
    }

    fn finish(&mut self, outcome: Event) {
        self.request = None;
        self.ahead = None;
        self.outcome = Some(outcome);
        self.state = State::Finished;
    }
}
