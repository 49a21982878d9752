//! The write rules, once, for every backend (see the module doc of `store`).
//!
//! A backend provides a [`WriteTx`]: the handful of statements the rules
//! need, run inside the writer's open transaction. Each write decides
//! everything before it changes anything, so a refused request leaves
//! nothing behind, not even the address row it would have created (bug 34),
//! and batches need no savepoints. The one early change is clearing an
//! expired row, which only makes visible what already holds: it is gone.

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

/// The statements of the write rules, inside one open transaction. IPv6
/// interface ids are u64 on the wire and i64 (same bits) here.
pub(crate) trait WriteTx {
    type Error;
    async fn name_row(&mut self, name: &[u8]) -> Result<Option<Existing>, Self::Error>;
    async fn delete_name(&mut self, id: i64) -> Result<(), Self::Error>;
    async fn v4_id(&mut self, v4: u32) -> Result<Option<i64>, Self::Error>;
    async fn v6_id(&mut self, p: &Ipv6Parts) -> Result<Option<i64>, Self::Error>;
    /// Address rows in the address's /64.
    async fn v6_ifaces(&mut self, p: &Ipv6Parts) -> Result<i64, Self::Error>;
    /// Distinct /64s with address rows in the address's /48.
    async fn v6_subnets(&mut self, p: &Ipv6Parts) -> Result<i64, Self::Error>;
    /// Inserts an address row and returns its id.
    async fn insert_ip(&mut self, ip: &IpKey, now: i64) -> Result<i64, Self::Error>;
    /// Live names of a quota row.
    async fn row_used(&mut self, af: i64, ip_id: i64, cutoff: i64) -> Result<i64, Self::Error>;
    /// The live name of a quota row claimed longest ago, if claimed at or
    /// before `claimed_before`.
    async fn bump_victim(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        claimed_before: i64,
    ) -> Result<Option<i64>, Self::Error>;
    async fn update_name(&mut self, id: i64, row: &NameWrite<'_>) -> Result<(), Self::Error>;
    async fn insert_name(&mut self, row: &NameWrite<'_>, created: i64) -> Result<(), Self::Error>;
    /// Deletes names at or below `cutoff`, then addresses no name refers to.
    async fn purge(&mut self, cutoff: i64) -> Result<Purged, Self::Error>;
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

/// Names whose timestamp is at or below this are expired.
pub(crate) fn cutoff(limits: &Limits, now: f64) -> i64 {
    (now - limits.name_lifetime as f64).floor() as i64
}

/// Live names only: an expired row is cleared on sight.
async fn live_row<T: WriteTx>(
    tx: &mut T,
    name: &[u8],
    cutoff: i64,
) -> Result<Option<Existing>, T::Error> {
    let Some(existing) = tx.name_row(name).await? else {
        return Ok(None);
    };
    if existing.timestamp > cutoff {
        return Ok(Some(existing));
    }
    tx.delete_name(existing.id).await?;
    Ok(None)
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

pub(crate) async fn put<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
) -> Result<PutOutcome, T::Error> {
    let cutoff = cutoff(limits, now);
    let existing = live_row(tx, &r.name, cutoff).await?;
    if let Some(e) = &existing {
        if e.owner != r.owner {
            return Ok(PutOutcome::NotOwner);
        }
        if r.updated <= e.updated {
            return Ok(if r.value == e.value {
                PutOutcome::Unchanged
            } else {
                PutOutcome::Stale
            });
        }
    }
    let af = i64::from(r.ip.af());
    let existing_ip = match find_ip_row(tx, limits, &r.ip).await? {
        IpRow::Forbidden => return Ok(PutOutcome::AtQuota),
        IpRow::Exists(id) => Some(id),
        IpRow::Creatable => None,
    };
    let in_place = existing
        .as_ref()
        .is_some_and(|e| e.af == af && Some(e.ip_id) == existing_ip);
    let mut victim = None;
    if !in_place {
        let used = match existing_ip {
            Some(id) => tx.row_used(af, id, cutoff).await?,
            None => 0,
        };
        if used >= i64::from(limits.names_for(&r.ip)) {
            let Some(id) = existing_ip.filter(|_| r.bump) else {
                return Ok(PutOutcome::AtQuota);
            };
            let claimed_before = now.floor() as i64 - limits.name_lifetime;
            let Some(v) = tx.bump_victim(af, id, cutoff, claimed_before).await? else {
                return Ok(PutOutcome::AtQuota);
            };
            victim = Some(v);
        }
    }

    // Every check passed: from here on the write happens.
    let ip_id = match existing_ip {
        Some(id) => id,
        None => tx.insert_ip(&r.ip, now.floor() as i64).await?,
    };
    if let Some(victim) = victim {
        tx.delete_name(victim).await?;
    }
    let row = NameWrite {
        name: &r.name,
        value: &r.value,
        owner: &r.owner,
        af,
        ip_id,
        // The reference stores the client's `updated` rounded to whole
        // seconds as the expiry anchor, and GET returns it.
        timestamp: r.updated.round() as i64,
        updated: r.updated,
    };
    match existing {
        Some(e) => tx.update_name(e.id, &row).await?,
        None => tx.insert_name(&row, now.floor() as i64).await?,
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
    let Some(e) = live_row(tx, &r.name, cutoff(limits, now)).await? else {
        return Ok(DelOutcome::Absent);
    };
    if e.owner != r.owner {
        return Ok(DelOutcome::NotOwner);
    }
    if r.updated < e.updated {
        return Ok(DelOutcome::Stale);
    }
    tx.delete_name(e.id).await?;
    Ok(DelOutcome::Deleted)
}

pub(crate) async fn purge<T: WriteTx>(
    tx: &mut T,
    limits: &Limits,
    now: f64,
) -> Result<Purged, T::Error> {
    tx.purge(cutoff(limits, now)).await
}
