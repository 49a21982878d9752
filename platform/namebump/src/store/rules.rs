//! The write rules, once, for every backend (see the module doc of `store`).
//!
//! A backend provides a [`WriteTx`]: the handful of statements the rules
//! need, run inside the writer's open transaction. Each write decides
//! everything before it changes anything, so a refused request leaves
//! nothing behind, not even the address row it would have created (bug 34),
//! and batches need no savepoints. The one early change is clearing an
//! expired row, which only makes visible what already holds: it is gone.
//!
//! A deleted or bumped name leaves a tombstone in its row (`af` 0, no
//! value, never live) carrying the last `updated` the name saw, so that
//! "only a newer request has effect" holds across deletions too (hardening
//! item 11). Every write that depends on what was read is guarded in its
//! own statement (`… WHERE id = ? AND updated < ?`): the rule lives in the
//! database write, not only in this check. If a guard finds the row
//! changed under it (another writer on the same database), the write fails
//! as a lost race, the batch rolls back and each write is decided again.
//!
//! Several servers on one database (issue 12): on PostgreSQL and MariaDB
//! the reads that decide take row locks, always in one order: the name's
//! row (`name_row`), then the request's address row (`v4_id`/`v6_id`; for
//! a new IPv6 address first its /48's lock row, `lock_v6_prefix`), then a
//! bump victim (skipping names another writer holds). Every write that
//! adds a name to an address row holds that row, so the quota count read
//! under it is exact; a name no row holds yet is ordered by the unique
//! key (the second insert fails and is decided again), which is why a
//! claim the lock-free read found no row for skips the locked read of
//! the name (`put_unheld`): there is no row for it to lock. SQLite has one
//! writer and needs none of this: its lock statements are plain reads.

use keyway_core::namebump::address::Ipv6Parts;

use super::{DelOutcome, DelRequest, IpKey, Limits, Purged, PutOutcome, PutRequest};

/// A names row as the writer sees it.
#[derive(Clone, Debug)]
pub(crate) struct Existing {
    pub(crate) id: i64,
    pub(crate) owner: [u8; 33],
    pub(crate) value: Vec<u8>,
    pub(crate) af: i64,
    pub(crate) ip_id: i64,
    pub(crate) timestamp: i64,
    pub(crate) updated: f64,
}

/// `af` of a tombstone row: neither AF_INET (2) nor AF_INET6 (10), so no
/// live-name count or USAGE ever counts it. A tombstone keeps the `ip_id`
/// of the quota row its name was in and that row's `af` in `timestamp`
/// (2 or 10: still far below any expiry cutoff), so tombstones stay
/// accounted to an address (`Limits::tombstones_per_address`).
pub(crate) const AF_TOMBSTONE: i64 = 0;

/// The statements of the write rules, inside one open transaction. IPv6
/// interface ids are u64 on the wire and i64 (same bits) here. Guarded
/// writes return the rows they changed (1, or 0 if the guard failed).
pub(crate) trait WriteTx {
    type Error;
    /// The error a failed guard turns into: the batch is rolled back.
    fn lost_race(rows: u64) -> Self::Error;
    async fn name_row(&mut self, name: &[u8]) -> Result<Option<Existing>, Self::Error>;
    /// Deletes the row if it is still an expired name.
    async fn delete_expired(&mut self, id: i64, cutoff: i64) -> Result<u64, Self::Error>;
    async fn v4_id(&mut self, v4: u32) -> Result<Option<i64>, Self::Error>;
    async fn v6_id(&mut self, p: &Ipv6Parts) -> Result<Option<i64>, Self::Error>;
    /// Address rows in the address's /64.
    async fn v6_ifaces(&mut self, p: &Ipv6Parts) -> Result<i64, Self::Error>;
    /// Distinct /64s with address rows in the address's /48.
    async fn v6_subnets(&mut self, p: &Ipv6Parts) -> Result<i64, Self::Error>;
    /// Holds the /48 of an IPv6 address whose row is about to be created,
    /// so the /64 and /48 address counts stay exact while it is decided.
    /// Single-writer backends have nothing to lock.
    async fn lock_v6_prefix(&mut self, _p: &Ipv6Parts) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Inserts an address row and returns its id.
    async fn insert_ip(&mut self, ip: &IpKey, now: i64) -> Result<i64, Self::Error>;
    /// What quota row `(af, ip_id)` holds: live names (timestamp above
    /// `cutoff`), and its tombstones dated at or after `since` and before.
    async fn row_counts(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        since: f64,
    ) -> Result<RowCounts, Self::Error>;
    /// The live name of a quota row claimed longest ago, if claimed at or
    /// before `claimed_before`.
    async fn bump_victim(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        claimed_before: i64,
    ) -> Result<Option<i64>, Self::Error>;
    /// Rewrites a name of `row.owner` whose `updated` is older than `row`'s.
    async fn update_name(&mut self, id: i64, row: &NameWrite<'_>) -> Result<u64, Self::Error>;
    /// Claims a tombstone whose `updated` is older than `row`'s.
    async fn claim_tombstone(
        &mut self,
        id: i64,
        row: &NameWrite<'_>,
        created: i64,
    ) -> Result<u64, Self::Error>;
    /// A name no row holds (the unique key refuses a concurrent claim).
    async fn insert_name(&mut self, row: &NameWrite<'_>, created: i64) -> Result<(), Self::Error>;
    /// Turns a name of `owner` older than `updated` into a tombstone
    /// dated `updated`.
    async fn tombstone(
        &mut self,
        id: i64,
        owner: &[u8; 33],
        updated: f64,
    ) -> Result<u64, Self::Error>;
    /// Turns a bumped name, still live in quota row `(af, ip_id)`, into a
    /// tombstone keeping its `updated`.
    async fn bury(&mut self, id: i64, af: i64, ip_id: i64) -> Result<u64, Self::Error>;
    /// Deletes the quota row's tombstones dated before `before`.
    async fn drop_row_tombstones(
        &mut self,
        af: i64,
        ip_id: i64,
        before: f64,
    ) -> Result<u64, Self::Error>;
    /// Deletes names at or below `cutoff` and tombstones older than
    /// `tombstone_cutoff`, then addresses no name refers to.
    async fn purge(&mut self, cutoff: i64, tombstone_cutoff: f64) -> Result<Purged, Self::Error>;
}

/// A quota row's contents, as a claim needs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RowCounts {
    pub(crate) live: i64,
    pub(crate) young_tombstones: i64,
    pub(crate) old_tombstones: i64,
}

/// A guarded write must have changed exactly its one row.
fn guarded<T: WriteTx>(rows: u64) -> Result<(), T::Error> {
    if rows == 1 {
        Ok(())
    } else {
        Err(T::lost_race(rows))
    }
}

/// The columns a PUT writes.
#[derive(Debug)]
pub(crate) struct NameWrite<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(crate) owner: &'a [u8; 33],
    pub(crate) af: i64,
    pub(crate) ip_id: i64,
    pub(crate) timestamp: i64,
    pub(crate) updated: f64,
}

impl<'a> NameWrite<'a> {
    /// `r` written into quota row `(af, ip_id)`.
    pub(crate) fn of(r: &'a PutRequest, af: i64, ip_id: i64) -> Self {
        Self {
            name: &r.name,
            value: &r.value,
            owner: &r.owner,
            af,
            ip_id,
            // The reference stores the client's `updated` rounded to whole
            // seconds as the expiry anchor, and GET returns it.
            timestamp: r.updated.round() as i64,
            updated: r.updated,
        }
    }
}

/// Names whose timestamp is at or below this are expired.
pub(crate) fn cutoff(limits: &Limits, now: f64) -> i64 {
    (now - limits.name_lifetime as f64).floor() as i64
}

/// What a name's row holds.
enum Row {
    Absent,
    /// Deleted or bumped: nothing to read, but its `updated` still orders
    /// requests.
    Tombstone(Existing),
    Live(Existing),
}

/// The name's row; an expired one is cleared on sight. An expired name
/// needs no tombstone: its last write is 30 days old, far outside any
/// request's freshness window.
async fn current_row<T: WriteTx>(tx: &mut T, name: &[u8], cutoff: i64) -> Result<Row, T::Error> {
    let Some(existing) = tx.name_row(name).await? else {
        return Ok(Row::Absent);
    };
    if existing.af == AF_TOMBSTONE {
        return Ok(Row::Tombstone(existing));
    }
    if existing.timestamp > cutoff {
        return Ok(Row::Live(existing));
    }
    guarded::<T>(tx.delete_expired(existing.id, cutoff).await?)?;
    Ok(Row::Absent)
}

/// Where a request's quota row stands.
enum IpRow {
    Exists(i64),
    /// Not there yet, and the IPv6 address limits allow creating it.
    Creatable,
    /// Not there, and its /64 or /48 is full.
    Forbidden,
}

async fn find_ip_row<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    ip: &IpKey,
) -> Result<IpRow, T::Error> {
    let id = match ip {
        IpKey::V4(v4) => tx.v4_id(*v4).await?,
        IpKey::V6(p) => tx.v6_id(p).await?,
    };
    if let Some(id) = id {
        return Ok(IpRow::Exists(id));
    }
    if let IpKey::V6(p) = ip {
        tx.lock_v6_prefix(p).await?;
        let ifaces = tx.v6_ifaces(p).await?;
        if ifaces >= i64::from(limits.v6_ifaces_per_64) {
            return Ok(IpRow::Forbidden);
        }
        if ifaces == 0 && tx.v6_subnets(p).await? >= i64::from(limits.v6_subnets_per_48) {
            return Ok(IpRow::Forbidden);
        }
    }
    Ok(IpRow::Creatable)
}

/// What a PUT meets on a live name before anything else: another owner,
/// or a request not newer than the stored write.
fn judge_live(e: &Existing, r: &PutRequest) -> Option<PutOutcome> {
    if e.owner != r.owner {
        return Some(PutOutcome::NotOwner);
    }
    if r.updated <= e.updated {
        // The other leg of the same request, or an older one that would
        // change nothing: an idempotent success.
        return Some(if r.value == e.value {
            PutOutcome::Unchanged
        } else {
            PutOutcome::Stale
        });
    }
    None
}

/// Whether the fast path's read also refreshed the name in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InPlace {
    /// The backend only read (a refresh takes a second statement).
    NotTried,
    /// The read came with the guarded refresh of `refresh_in_place`, for
    /// the request's address, and it changed the row.
    Refreshed,
    /// It came with that refresh, whose guard matched nothing.
    Unchanged,
}

/// The statements of the lock-free fast path, outside any transaction:
/// each is atomic on its own (issue 12).
pub(crate) trait OptimisticTx: WriteTx {
    /// The name's row and, for a live name, the address of its quota row;
    /// where one statement can (PostgreSQL), also the guarded refresh of
    /// `r` in place when that row is `r`'s owner's, live, older and in
    /// `r.ip`'s quota row (a refresh then takes one round trip, not two),
    /// and, when no row holds the name, `put_unheld` of `r` for the common
    /// claim (an address row that exists, room in its quota, no bump), so
    /// a claim too takes one round trip. The row is as read before that
    /// refresh.
    async fn name_row_with_address(
        &mut self,
        r: &PutRequest,
        claim: &ClaimBounds,
    ) -> Result<Lookup, Self::Error>;
    /// Rewrites value and times of a name still live in the same quota
    /// row, of the same owner, older than `row` and not expired.
    async fn refresh_in_place(
        &mut self,
        id: i64,
        row: &NameWrite<'_>,
        cutoff: i64,
    ) -> Result<u64, Self::Error>;
}

/// What the fast path's read found.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    /// The name's row, its quota row's address, and the refresh made with
    /// the read, if any.
    Row(Existing, Option<IpKey>, InPlace),
    /// No row held the name, and what the claim made with the read decided
    /// (PostgreSQL; the claim was a transaction of its own): stored, or
    /// refused by young tombstones. `None`: nothing decided and nothing
    /// changed (no claim tried; a new IPv6 address row, a full quota: bump
    /// or refusal, old tombstones to drop): the rules decide in a
    /// transaction.
    Absent(Option<PutOutcome>),
}

/// What `put_unheld` compares a claim's quota row with, for the claim made
/// with the fast path's read ([`OptimisticTx::name_row_with_address`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClaimBounds {
    /// Names at or below this timestamp are expired.
    pub(crate) cutoff: i64,
    /// Tombstones dated at or after this are young.
    pub(crate) tombstones_since: f64,
    /// The address's name quota.
    pub(crate) names: i64,
    /// Young tombstones that refuse a claim.
    pub(crate) tombstones: i64,
    /// The claim time written as `created`.
    pub(crate) created: i64,
}

impl ClaimBounds {
    pub(crate) fn new(limits: &Limits, r: &PutRequest, now: f64) -> Self {
        Self {
            cutoff: cutoff(limits, now),
            tombstones_since: now - limits.tombstone_lifetime() as f64,
            names: i64::from(limits.names_for(&r.ip)),
            tombstones: i64::from(limits.tombstones_per_address),
            created: now.floor() as i64,
        }
    }
}

/// Decides a PUT from the name's row alone where no lock is needed: a
/// refusal or idempotent repeat (nothing is written), or a refresh of a
/// live name from the address that already holds it (its quota count does
/// not change; one guarded UPDATE). `None`: the PUT claims, moves or
/// revives a name, or the row changed between the read and the write; it
/// goes the locking way (`put`). A refresh so takes two round trips on
/// MariaDB instead of five, and one on PostgreSQL, where the read carries
/// the guarded UPDATE (`InPlace`).
pub(crate) async fn put_without_locks<T: OptimisticTx>(
    tx: &mut T,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
) -> Result<FastPath, T::Error> {
    let claim = ClaimBounds::new(limits, r, now);
    let cutoff = claim.cutoff;
    let lookup = tx.name_row_with_address(r, &claim).await?;
    Ok(match after_read(lookup, r, cutoff) {
        AfterRead::Done(fast) => fast,
        AfterRead::RefreshInPlace(e) => {
            let write = NameWrite::of(r, e.af, e.ip_id);
            match tx.refresh_in_place(e.id, &write, cutoff).await? {
                1 => FastPath::Decided(PutOutcome::Stored),
                _ => FastPath::Locking,
            }
        }
    })
}

/// What the fast path's read leaves to do.
pub(crate) enum AfterRead {
    Done(FastPath),
    /// A live name of `r`'s owner in `r.ip`'s quota row, older: refresh it
    /// with a guarded UPDATE (backends whose read did not).
    RefreshInPlace(Existing),
}

/// `put_without_locks` from what its read found (also the decision for
/// each PUT of a batched read, `sqlx_store.rs`).
pub(crate) fn after_read(lookup: Lookup, r: &PutRequest, cutoff: i64) -> AfterRead {
    let (e, address, in_place) = match lookup {
        Lookup::Row(e, address, in_place) => (e, address, in_place),
        Lookup::Absent(claimed) => return AfterRead::Done(FastPath::NoRow(claimed)),
    };
    let done = AfterRead::Done;
    if in_place == InPlace::Refreshed {
        // Its guard holds exactly what the checks below decide.
        return done(FastPath::Decided(PutOutcome::Stored));
    }
    if e.af == AF_TOMBSTONE || e.timestamp <= cutoff {
        return done(FastPath::Locking);
    }
    if let Some(refused) = judge_live(&e, r) {
        return done(FastPath::Decided(refused));
    }
    if address != Some(r.ip) {
        return done(FastPath::Locking);
    }
    if in_place == InPlace::Unchanged {
        // The row changed between the read and the write.
        return done(FastPath::Locking);
    }
    AfterRead::RefreshInPlace(e)
}

/// What `put_without_locks` leaves to the locking way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FastPath {
    /// Refused, an idempotent repeat, or refreshed in place: done.
    Decided(PutOutcome),
    /// No row held the name: a claim, for `put_unheld` unless the read
    /// decided it (`Lookup::Absent`).
    NoRow(Option<PutOutcome>),
    /// Decided under the locks, by `put`.
    Locking,
}

pub(crate) async fn put<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
) -> Result<PutOutcome, T::Error> {
    let row = current_row(tx, &r.name, cutoff(limits, now)).await?;
    put_row(tx, limits, r, now, row).await
}

/// `put` of a name no row held when the fast path read it, without
/// reading the name's row again: that read would lock nothing (there is no
/// row to lock) and a name created since is still caught, by the unique
/// key refusing the INSERT (the write is decided again). One round trip
/// less per claim on a server database (issue 12).
pub(crate) async fn put_unheld<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
) -> Result<PutOutcome, T::Error> {
    put_row(tx, limits, r, now, Row::Absent).await
}

async fn put_row<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
    row: Row,
) -> Result<PutOutcome, T::Error> {
    let cutoff = cutoff(limits, now);
    if let Row::Live(e) = &row
        && let Some(refused) = judge_live(e, r)
    {
        return Ok(refused);
    }
    // Anyone may claim a deleted name (first come, first served), but only
    // with a request newer than its deletion: a replayed PUT of the old
    // owner is exactly as old as that.
    if let Row::Tombstone(t) = &row
        && r.updated <= t.updated
    {
        return Ok(PutOutcome::Stale);
    }
    let existing = match &row {
        Row::Live(e) => Some(e),
        Row::Absent | Row::Tombstone(_) => None,
    };
    let af = i64::from(r.ip.af());
    let existing_ip = match find_ip_row(tx, limits, &r.ip).await? {
        IpRow::Forbidden => return Ok(PutOutcome::AtQuota),
        IpRow::Exists(id) => Some(id),
        IpRow::Creatable => None,
    };
    let in_place = existing.is_some_and(|e| e.af == af && Some(e.ip_id) == existing_ip);
    // A name no row holds adds a row: only while the source's young
    // tombstones are under their allowance (a PUT/DEL flood on fresh names
    // otherwise grows storage by a row per cycle). Older tombstones refuse
    // nothing fresh any more (see `purge`) and are dropped below.
    let tombstones_since = now - limits.tombstone_lifetime() as f64;
    let counts = match existing_ip {
        Some(id) if !in_place => tx.row_counts(af, id, cutoff, tombstones_since).await?,
        _ => RowCounts::default(),
    };
    if matches!(row, Row::Absent)
        && counts.young_tombstones >= i64::from(limits.tombstones_per_address)
    {
        return Ok(PutOutcome::AtQuota);
    }
    let mut victim = None;
    if !in_place && counts.live >= i64::from(limits.names_for(&r.ip)) {
        let Some(id) = existing_ip.filter(|_| r.bump) else {
            return Ok(PutOutcome::AtQuota);
        };
        let claimed_before = now.floor() as i64 - limits.name_lifetime;
        let Some(v) = tx.bump_victim(af, id, cutoff, claimed_before).await? else {
            return Ok(PutOutcome::AtQuota);
        };
        victim = Some(v);
    }

    // Every check passed: from here on the write happens.
    let ip_id = match existing_ip {
        Some(id) => id,
        None => tx.insert_ip(&r.ip, now.floor() as i64).await?,
    };
    if matches!(row, Row::Absent) && counts.old_tombstones > 0 {
        // Before `bury`: its tombstone keeps an old `updated`, and the
        // purge, not this insert, collects it.
        tx.drop_row_tombstones(af, ip_id, tombstones_since).await?;
    }
    if let Some(victim) = victim {
        guarded::<T>(tx.bury(victim, af, ip_id).await?)?;
    }
    let write = NameWrite::of(r, af, ip_id);
    let created = now.floor() as i64;
    match &row {
        Row::Live(e) => guarded::<T>(tx.update_name(e.id, &write).await?)?,
        Row::Tombstone(t) => guarded::<T>(tx.claim_tombstone(t.id, &write, created).await?)?,
        Row::Absent => tx.insert_name(&write, created).await?,
    }
    Ok(if victim.is_some() {
        PutOutcome::StoredAfterBump
    } else {
        PutOutcome::Stored
    })
}

pub(crate) async fn delete<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    r: &DelRequest,
    now: f64,
) -> Result<DelOutcome, T::Error> {
    // A tombstone reads as absent: the other leg of the DEL that made it,
    // or an older DEL, succeeds and changes nothing (spec §6.3).
    let Row::Live(e) = current_row(tx, &r.name, cutoff(limits, now)).await? else {
        return Ok(DelOutcome::Absent);
    };
    if e.owner != r.owner {
        return Ok(DelOutcome::NotOwner);
    }
    // Strictly newer: a DEL dated like the write it follows could be the
    // replay of a DEL that preceded a re-claim at the same instant.
    if r.updated <= e.updated {
        return Ok(DelOutcome::Stale);
    }
    guarded::<T>(tx.tombstone(e.id, &r.owner, r.updated).await?)?;
    Ok(DelOutcome::Deleted)
}

/// A tombstone dated `u` refuses only requests dated at or before `u`,
/// and the freshness check already refuses those once the server clock
/// passes `u` + 60 s (the longest ttl): kept `tombstone_lifetime()` (at
/// least 65 s) past its `updated`, it outlives every request it must refuse.
pub(crate) async fn purge<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    now: f64,
) -> Result<Purged, T::Error> {
    tx.purge(
        cutoff(limits, now),
        now - limits.tombstone_lifetime() as f64,
    )
    .await
}
