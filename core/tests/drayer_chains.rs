//! The owner and mirror algorithms over the in-memory chain: the original's
//! bugs O1 and O2 no longer reproduce, random operation sequences leave
//! every kind of mirror equal to the owner, and tampered or forked records
//! are refused with nothing stored.
#![allow(clippy::unwrap_used)]

use keyway_core::drayer::memory::{Conflict, MemoryBody, MemoryChain};
use keyway_core::drayer::{
    ApplyError, Chain, Mender, Meta, RecordError, SigningKey, WriteError, apply, delete, hash,
    is_placeholder, seal, set, set_unsigned,
};

const T0: i64 = 1_550_000_000_000_000;

fn owner_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn body(key: &str, value: &[u8]) -> MemoryBody {
    MemoryBody {
        key: key.into(),
        kind: "obj".into(),
        value: Some(value.to_vec()),
    }
}

fn put(chain: &mut MemoryChain, key: &str, value: &[u8], now: i64) -> Meta {
    chain
        .transaction(|c| {
            set(
                c,
                &owner_key(),
                key,
                "obj",
                hash(value),
                body(key, value),
                now,
                None,
            )
        })
        .unwrap()
}

fn del(chain: &mut MemoryChain, key: &str, now: i64) -> Result<Meta, WriteError<Conflict>> {
    chain.transaction(|c| delete(c, &owner_key(), key, "obj", now))
}

/// Both linked lists are whole, and every record verifies.
fn assert_consistent(chain: &MemoryChain) {
    let stream = owner_key().verifying_key();
    let mut previous = 0;
    for (meta, body) in chain.in_mchain_order() {
        assert_eq!(meta.prevchange, previous, "mchain broken at {meta:?}");
        previous = meta.modified;
        meta.verify(&stream).unwrap();
        meta.check_value(body.value.as_deref().unwrap()).unwrap();
    }
    let mut prev_id = 0;
    let mut cursor = 0;
    while let Some(meta) = chain.first_id_after(cursor).unwrap() {
        assert_eq!(meta.prev, prev_id, "ID chain broken at {meta:?}");
        prev_id = meta.id;
        cursor = meta.id;
    }
}

#[test]
fn o1_deleting_the_second_newest_record_works() {
    // `set a; set b; del a` failed in the original ("does not fit onto mchain").
    let mut owner = MemoryChain::new();
    put(&mut owner, "a", b"1", T0);
    put(&mut owner, "b", b"2", T0 + 1);
    del(&mut owner, "a", T0 + 2).unwrap();
    assert_consistent(&owner);
    assert_eq!(owner.len(), 1);
    assert!(owner.by_key("a", "obj").unwrap().is_none());

    // And `set a; set b; set c; set b; set a; del a`.
    let mut owner = MemoryChain::new();
    for (i, k) in ["a", "b", "c", "b", "a"].iter().enumerate() {
        put(&mut owner, k, k.as_bytes(), T0 + i as i64);
    }
    del(&mut owner, "a", T0 + 10).unwrap();
    assert_consistent(&owner);
    let mut mirror = MemoryChain::new();
    mirror
        .sync_from(&owner, &owner_key().verifying_key())
        .unwrap();
    assert_eq!(mirror, owner);
}

#[test]
fn o2_a_mirror_syncing_every_step_stays_whole() {
    // The original's mirror lost `d` after `set a; set b; set c; set a; set d; del a`.
    let stream = owner_key().verifying_key();
    let (mut owner, mut mirror) = (MemoryChain::new(), MemoryChain::new());
    let ops: [(&str, Option<&[u8]>); 6] = [
        ("a", Some(b"1")),
        ("b", Some(b"2")),
        ("c", Some(b"3")),
        ("a", Some(b"4")),
        ("d", Some(b"5")),
        ("a", None),
    ];
    for (i, (k, v)) in ops.into_iter().enumerate() {
        let now = T0 + 1000 * i as i64;
        match v {
            Some(v) => drop(put(&mut owner, k, v, now)),
            None => drop(del(&mut owner, k, now).unwrap()),
        }
        mirror.sync_from(&owner, &stream).unwrap();
        assert_eq!(mirror, owner, "after step {i}");
    }
    assert_consistent(&mirror);
    assert!(mirror.by_key("d", "obj").unwrap().is_some());
}

#[test]
fn a_clock_that_steps_back_or_repeats_still_writes() {
    let mut owner = MemoryChain::new();
    let a = put(&mut owner, "a", b"1", T0);
    let b = put(&mut owner, "b", b"2", T0 - 5_000_000); // clock stepped back
    let c = put(&mut owner, "c", b"3", T0 - 5_000_000); // and repeats
    assert_eq!((b.modified, c.modified), (a.modified + 1, a.modified + 2));
    assert_consistent(&owner);
}

#[test]
fn the_newest_record_can_be_deleted_and_mirrors_converge() {
    // The original refused this ("cannot delete the very most recently
    // added item", spec D5).
    let stream = owner_key().verifying_key();
    let mut owner = MemoryChain::new();
    put(&mut owner, "a", b"1", T0);
    put(&mut owner, "b", b"2", T0 + 10);
    let mut mirror = MemoryChain::new();
    mirror.sync_from(&owner, &stream).unwrap();
    del(&mut owner, "b", T0 + 20).unwrap();
    assert_consistent(&owner);
    assert!(owner.by_key("b", "obj").unwrap().is_none());
    assert!(owner.by_key("a", "obj").unwrap().is_some());
    mirror.sync_from(&owner, &stream).unwrap();
    assert_eq!(mirror, owner);
    assert!(mirror.by_key("b", "obj").unwrap().is_none());

    // Also when the newest record is not the latest change, and when it
    // is the only one.
    put(&mut owner, "c", b"3", T0 + 30);
    put(&mut owner, "a", b"4", T0 + 40);
    del(&mut owner, "c", T0 + 50).unwrap();
    del(&mut owner, "a", T0 + 60).unwrap();
    assert_consistent(&owner);
    mirror.sync_from(&owner, &stream).unwrap();
    assert_eq!(mirror, owner);
    put(&mut owner, "d", b"5", T0 + 70);
    mirror.sync_from(&owner, &stream).unwrap();
    assert_eq!(mirror, owner);
    assert!(mirror.by_key("d", "obj").unwrap().is_some());
    for k in ["a", "b", "c"] {
        assert!(mirror.by_key(k, "obj").unwrap().is_none(), "{k}");
    }

    assert!(matches!(
        del(&mut owner, "zz", T0 + 80),
        Err(WriteError::NotFound)
    ));
}

/// One line per record, for failure messages.
fn show(chain: &MemoryChain) -> Vec<String> {
    chain
        .in_mchain_order()
        .map(|(m, b)| {
            format!(
                "{}:{} mod+{} prevch+{} prev {}",
                m.id,
                b.key,
                m.modified - T0,
                m.prevchange.max(T0) - T0,
                m.prev
            )
        })
        .collect()
}

/// splitmix64: a reproducible stream from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The key of the most recently added record (the largest id that is not
/// the placeholder of a deleted newest record).
fn newest_key(chain: &MemoryChain) -> Option<String> {
    chain
        .in_mchain_order()
        .filter(|(m, _)| !is_placeholder(m))
        .max_by_key(|(m, _)| m.id)
        .map(|(_, b)| b.key.clone())
}

/// A model of the original's receiver (`_insertRecord` and what it calls),
/// written from the spec's text (§6.5–§6.7, §8.4), since the repository
/// has no other: this is how a Python mirror applies what a Keyway owner
/// serves. It keeps the original's flaws that do not depend on the
/// writer: the ID garbage collection takes one skipped record (O7), and
/// the deletion test after a `prev` change removes without repairing (O2).
/// The one liberty: an old version's successor is repaired before the old
/// version goes (§6.5-7 before §6.6-3), the order under which updates
/// converge, as the spec's golden scenario shows they do [run].
#[derive(Clone, Debug, Default)]
struct Original {
    records: Vec<(Meta, MemoryBody)>,
}

impl Original {
    fn find(&self, f: impl Fn(&Meta) -> bool) -> Option<Meta> {
        self.records.iter().map(|(m, _)| *m).find(|m| f(m))
    }

    fn mtip(&self) -> i64 {
        self.records
            .iter()
            .map(|(m, _)| m.modified)
            .max()
            .unwrap_or(0)
    }

    fn remove(&mut self, id: u64) {
        self.records.retain(|(m, _)| m.id != id);
    }

    /// The records, as the owner's chain lists them.
    fn sorted(&self) -> Vec<(Meta, MemoryBody)> {
        let mut all = self.records.clone();
        all.sort_by_key(|(m, _)| m.modified);
        all
    }

    /// `httpSync`: newRecords after the local tip, each record applied in
    /// its own transaction, stopping at the first error.
    fn sync_from(&mut self, source: &MemoryChain) -> Result<(), String> {
        for (meta, body) in source.modified_after(self.mtip(), usize::MAX) {
            let mut draft = self.clone();
            draft.insert(&meta, &body, source)?;
            *self = draft;
        }
        Ok(())
    }

    fn insert(&mut self, r: &Meta, body: &MemoryBody, source: &MemoryChain) -> Result<(), String> {
        let stream = owner_key().verifying_key();
        r.verify(&stream).map_err(|e| format!("{e}"))?;
        r.check_value(body.value.as_deref().unwrap())
            .map_err(|e| format!("{e}"))?;
        // Order check.
        let mtip = self.mtip();
        if r.modified <= mtip {
            return match self.find(|m| m.modified == r.modified) {
                Some(held) if r.modified == mtip && held.id == r.id => Ok(()),
                _ => Err(format!("{}: modified time cannot be before the tip", r.id)),
            };
        }
        // Anchor check.
        if r.prevchange != 0 && self.find(|m| m.modified == r.prevchange).is_none() {
            return Err(format!("{}: prevchange not held", r.id));
        }
        // mchain skip rule.
        if r.prevchange != mtip {
            self.records.retain(|(m, _)| m.modified <= r.prevchange);
        }
        let old = self.find(|m| m.id == r.id);
        // ID-chain checks.
        let id_tip = self.records.iter().map(|(m, _)| m.id).max().unwrap_or(0);
        if r.prev != id_tip {
            if let Some(p) = self.find(|m| m.id == r.prev) {
                if r.modified <= p.modified {
                    return Err(format!("{}: older than its prev", r.id));
                }
                // ID garbage collection: one skipped record K, its
                // successor repaired by crdr (whose range delete removes K).
                let k = self
                    .records
                    .iter()
                    .map(|(m, _)| *m)
                    .filter(|m| m.id > r.prev && m.id < r.id)
                    .max_by_key(|m| m.modified);
                if let Some(k) = k
                    && let Some(s) = self.find(|m| m.prevchange == k.modified)
                {
                    self.repair(k.prevchange, &s, source)?;
                }
            } else if let Some(next) = self
                .records
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| m.id > r.id)
                .min_by_key(|m| m.id)
            {
                if next.prev < r.id {
                    return Err(format!("{}: was already deleted", r.id));
                }
            } else if old.is_some_and(|o| o.modified > r.modified) {
                return Err(format!("{}: older version", r.id));
            }
        }
        // Replacing an old version.
        if let Some(o) = self.find(|m| m.id == r.id) {
            if let Some(s) = self.find(|m| m.prevchange == o.modified) {
                self.repair(o.prevchange, &s, source)?;
            }
            self.remove(o.id);
        }
        self.store(r, body)?;
        // Deletion test on the old prev, when `prev` moved.
        if let Some(o) = old
            && o.prev != r.prev
            && let Some(x) = self.find(|m| m.id == o.prev)
        {
            let next_id = self
                .records
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| m.id > x.id)
                .min_by_key(|m| m.id);
            let next_mod = self
                .records
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| m.modified > x.modified)
                .min_by_key(|m| m.modified);
            if next_id.is_some_and(|n| n.prev < x.id)
                || next_mod.is_some_and(|n| n.prevchange < x.modified)
            {
                self.remove(x.id);
            }
        }
        Ok(())
    }

    /// Inserts under the schema's UNIQUE(chain, modified) and
    /// UNIQUE(chain, prevchange), then validates the pointer.
    fn store(&mut self, r: &Meta, body: &MemoryBody) -> Result<(), String> {
        if self
            .find(|m| m.modified == r.modified || m.prevchange == r.prevchange)
            .is_some()
        {
            return Err(format!("{}: UNIQUE constraint failed", r.id));
        }
        if r.prevchange != 0 && self.find(|m| m.modified == r.prevchange).is_none() {
            return Err(format!("{}: does not fit onto mchain", r.id));
        }
        self.records.push((*r, body.clone()));
        Ok(())
    }

    /// Chain repair (§6.7): `crdr/<pdest>` from the owner, for `s`.
    fn repair(&mut self, pdest: i64, s: &Meta, source: &MemoryChain) -> Result<(), String> {
        let (patch, body) = source
            .crdr(pdest)
            .ok_or(format!("crdr/{pdest}: nothing to repair with"))?;
        patch
            .verify(&owner_key().verifying_key())
            .map_err(|e| format!("{e}"))?;
        let refused = || Err(format!("crdr/{pdest}: patch {} refused", patch.id));
        if patch.prevchange >= s.prevchange || patch.prevchange > pdest {
            return refused();
        }
        let Some(b) = self.find(|m| m.id == patch.id) else {
            return refused();
        };
        if patch.prevchange >= b.prevchange || patch.modified < b.modified {
            return refused();
        }
        self.records
            .retain(|(m, _)| m.modified <= patch.prevchange || m.modified >= patch.modified);
        self.remove(b.id);
        self.store(&patch, &body)
    }
}

#[test]
fn random_sequences_leave_every_mirror_equal_to_the_owner() {
    let stream = owner_key().verifying_key();
    let (mut deletes, mut tip_deletes, mut refills, mut repairs) = (0, 0, 0, 0);
    // DRAYER_SEED=n replays one sequence.
    let one = std::env::var("DRAYER_SEED")
        .ok()
        .map(|s| s.parse().unwrap());
    let seeds: Vec<u64> = one.map_or_else(|| (0..200).collect(), |s| vec![s]);
    for &seed in &seeds {
        let mut rng = Rng(seed);
        let every = 2 + rng.below(6) as usize; // the batched mirror's period
        let (mut owner, mut stepwise, mut batched) =
            (MemoryChain::new(), MemoryChain::new(), MemoryChain::new());
        // A partial mirror keeping the newest few (spec D8), synced every step.
        let keep = 3 + rng.below(4) as usize;
        let mut partial = MemoryChain::new();
        let mut now = T0;
        for step in 0..60 {
            // Mostly forward, sometimes stepping back (spec D1).
            now += rng.below(2_000) as i64 - 300;
            let key = format!("k{}", rng.below(10));
            // An original mirror that was up to date before this step.
            let mut original = Original::default();
            original.sync_from(&owner).unwrap();
            let placeholder_before = owner.id_tip().unwrap().is_some_and(|m| is_placeholder(&m));
            let roll = rng.below(20);
            // What the original must follow: a delete of the newest
            // record, and the append that replaces its placeholder.
            let mut tip_step = false;
            if roll < 5 {
                // One op in four deletes the newest record.
                if let Some(newest) = newest_key(&owner) {
                    let is_id_tip =
                        owner.by_key(&newest, "obj").unwrap() == owner.id_tip().unwrap();
                    del(&mut owner, &newest, now).unwrap_or_else(|e| {
                        panic!(
                            "seed {seed} step {step}: delete newest {newest}: {e:?}\n{:#?}",
                            show(&owner)
                        )
                    });
                    deletes += 1;
                    tip_deletes += usize::from(is_id_tip);
                    tip_step = is_id_tip;
                }
            } else if roll < 8 {
                match del(&mut owner, &key, now) {
                    Ok(_) => deletes += 1,
                    Err(WriteError::NotFound) => {}
                    Err(e) => panic!(
                        "seed {seed} step {step}: delete {key}: {e:?}\n{:#?}",
                        show(&owner)
                    ),
                }
            } else {
                let value = rng.next().to_le_bytes();
                let new_key = owner.by_key(&key, "obj").unwrap().is_none();
                put(&mut owner, &key, &value, now);
                if new_key && placeholder_before {
                    refills += 1;
                    tip_step = true;
                }
            }
            assert_consistent(&owner);
            // At most one placeholder, and only as the ID tip.
            let placeholders: Vec<u64> = owner
                .in_mchain_order()
                .filter(|(m, _)| is_placeholder(m))
                .map(|(m, _)| m.id)
                .collect();
            let id_tip = owner.id_tip().unwrap().map(|m| m.id);
            assert!(
                placeholders.is_empty() || placeholders == [id_tip.unwrap()],
                "seed {seed} step {step}: placeholders {placeholders:?}"
            );
            if tip_step {
                let before = original.clone();
                let synced = original.sync_from(&owner);
                let expected: Vec<_> = owner
                    .in_mchain_order()
                    .map(|(m, b)| (*m, b.clone()))
                    .collect();
                assert!(
                    synced.is_ok() && original.sorted() == expected,
                    "seed {seed} step {step}: original mirror: {synced:?}\nowner {:#?}\nbefore {:#?}\nafter {:?}",
                    show(&owner),
                    before
                        .sorted()
                        .iter()
                        .map(|(m, b)| (m.id, b.key.clone(), m.modified - T0))
                        .collect::<Vec<_>>(),
                    original
                        .sorted()
                        .iter()
                        .map(|(m, b)| (m.id, b.key.clone(), m.modified - T0))
                        .collect::<Vec<_>>(),
                );
            }
            repairs += stepwise.sync_from(&owner, &stream).unwrap().1;
            assert_eq!(stepwise, owner, "seed {seed} step {step}: stepwise mirror");
            if let Err(e) = partial.sync_newest_from(&owner, &stream, keep) {
                panic!(
                    "seed {seed} step {step}: partial: {e:?}\nowner {:#?}\npartial {:#?}",
                    show(&owner),
                    show(&partial)
                );
            }
            // It holds exactly the owner's records after its back pointer,
            // and no more than it keeps.
            let back = partial.back_pointer();
            let expected: Vec<_> = owner
                .in_mchain_order()
                .filter(|(m, _)| m.modified > back)
                .collect();
            let held: Vec<_> = partial.in_mchain_order().collect();
            assert_eq!(held, expected, "seed {seed} step {step}: partial mirror");
            assert!(partial.len() <= keep.max(1));
            if step % every == every - 1 {
                let before = batched.clone();
                if let Err(e) = batched.sync_from(&owner, &stream) {
                    panic!(
                        "seed {seed} step {step}: {e:?}\nowner {:#?}\nmirror {:#?}",
                        show(&owner),
                        show(&before)
                    );
                }
                assert_eq!(batched, owner, "seed {seed} step {step}: batched mirror");
            }
        }
        let mut fresh = MemoryChain::new();
        fresh.sync_from(&owner, &stream).unwrap();
        assert_eq!(fresh, owner, "seed {seed}: fresh mirror");
        batched.sync_from(&owner, &stream).unwrap();
        assert_eq!(batched, owner, "seed {seed}: batched mirror at the end");
    }
    // The sequences did exercise deletion, of the newest record too, the
    // placeholder's replacement, and crdr repairs.
    if seeds.len() == 200 {
        assert!(
            deletes > 500 && tip_deletes > 500 && refills > 300 && repairs > 500,
            "{deletes} deletes, {tip_deletes} of the ID tip, {refills} refills, {repairs} repairs"
        );
    }
}

#[test]
fn deferred_signing_makes_the_same_chain_as_signing_each_write() {
    // `set_many` writes records unsigned and seals them as signatures come
    // back from another thread, in any order and possibly after later
    // writes of the batch touched the same record. Ed25519 is
    // deterministic, so the result must equal signing each write.
    let mut sealed_late = 0;
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let (mut signed, mut deferred) = (MemoryChain::new(), MemoryChain::new());
        let mut now = T0;
        let mut step = 0;
        while step < 60 {
            let batch = 1 + rng.below(12) as usize;
            let mut ops = Vec::new();
            for _ in 0..batch {
                now += rng.below(2_000) as i64 - 300;
                let key = format!("k{}", rng.below(6));
                let value = (rng.below(10) >= 2).then(|| rng.next().to_le_bytes());
                ops.push((now, key, value));
                step += 1;
            }
            for (now, key, value) in &ops {
                match value {
                    Some(v) => drop(put(&mut signed, key, v, *now)),
                    None => drop(del(&mut signed, key, *now)),
                }
            }
            deferred
                .transaction(|c| {
                    let mut unsealed = Vec::new();
                    for (now, key, value) in &ops {
                        match value {
                            Some(v) => unsealed.push(
                                set_unsigned(
                                    c,
                                    &owner_key(),
                                    key,
                                    "obj",
                                    hash(v),
                                    body(key, v),
                                    *now,
                                    None,
                                )
                                .unwrap(),
                            ),
                            None => drop(delete(c, &owner_key(), key, "obj", *now)),
                        }
                        // Some signatures come back at once, others later.
                        while !unsealed.is_empty() && rng.below(3) == 0 {
                            let i = rng.below(unsealed.len() as u64) as usize;
                            let mut meta = unsealed.swap_remove(i);
                            meta.sign(&owner_key());
                            seal(c, &meta).unwrap();
                        }
                    }
                    sealed_late += unsealed.len();
                    while !unsealed.is_empty() {
                        let i = rng.below(unsealed.len() as u64) as usize;
                        let mut meta = unsealed.swap_remove(i);
                        meta.sign(&owner_key());
                        seal(c, &meta).unwrap();
                    }
                    Ok::<_, ()>(())
                })
                .unwrap();
            assert_eq!(deferred, signed, "seed {seed} step {step}");
            assert_consistent(&deferred);
        }
    }
    assert!(sealed_late > 1000, "{sealed_late}");

    // A record left unsealed does not verify: the property above would see it.
    let mut chain = MemoryChain::new();
    chain
        .transaction(|c| {
            set_unsigned(
                c,
                &owner_key(),
                "a",
                "obj",
                hash(b"1"),
                body("a", b"1"),
                T0,
                None,
            )
        })
        .unwrap();
    let stream = owner_key().verifying_key();
    let (meta, _) = chain.in_mchain_order().next().unwrap();
    assert_eq!(meta.verify(&stream), Err(RecordError::Signature));
}

/// Applies `meta` to a copy of `mirror`, asserting the error and that
/// nothing was stored.
fn refused(mirror: &mut MemoryChain, meta: &Meta, body: MemoryBody) -> ApplyError<Conflict> {
    let before = mirror.clone();
    let stream = owner_key().verifying_key();
    let err = mirror
        .transaction(|c| {
            let value = body.value.clone();
            apply(
                c,
                &stream,
                meta,
                body,
                value.as_deref(),
                &Mender::Mirror(&[]),
            )
        })
        .unwrap_err();
    assert_eq!(*mirror, before, "nothing stored after {err:?}");
    err
}

#[test]
fn tampered_and_forked_records_are_refused_and_nothing_is_stored() {
    let key = owner_key();
    let stream = key.verifying_key();
    let mut owner = MemoryChain::new();
    put(&mut owner, "a", b"1", T0);
    put(&mut owner, "b", b"2", T0 + 10);
    let mut mirror = MemoryChain::new();
    mirror.sync_from(&owner, &stream).unwrap();
    let c = put(&mut owner, "c", b"3", T0 + 20);

    let mut bad_sig = c;
    bad_sig.signature[5] ^= 1;
    assert_eq!(
        refused(&mut mirror, &bad_sig, body("c", b"3")),
        ApplyError::Record(RecordError::Signature)
    );
    assert_eq!(
        refused(&mut mirror, &c, body("c", b"4")),
        ApplyError::Record(RecordError::ValueHash)
    );
    // Signed by the owner, but pointing at a record nobody holds.
    let dangling = c.repointed(T0 + 15, &key);
    assert_eq!(
        refused(&mut mirror, &dangling, body("c", b"3")),
        ApplyError::Gap {
            prevchange: T0 + 15
        }
    );
    // A second writer with the key made another record at b's time.
    let b = mirror.by_key("b", "obj").unwrap().unwrap();
    let mut fork = Meta::new(
        9,
        b.modified,
        b.modified,
        2,
        b.prevchange,
        "x",
        "obj",
        hash(b"x"),
    );
    fork.sign(&key);
    assert!(matches!(
        refused(&mut mirror, &fork, body("x", b"x")),
        ApplyError::Fork {
            held: 2,
            offered: 9,
            ..
        }
    ));
    // Out-of-range fields never reach the store either.
    let mut zero = c;
    zero.id = 0;
    assert_eq!(
        refused(&mut mirror, &zero, body("c", b"3")),
        ApplyError::Record(RecordError::OutOfRange)
    );
    // The genuine record still applies.
    mirror.sync_from(&owner, &stream).unwrap();
    assert_eq!(mirror, owner);
}
