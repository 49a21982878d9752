//! The shipped pull (the core's machine) against both stores: the same
//! 200 seeded operation sequences as the core's property test
//! (`core/tests/drayer_chains.rs`), written to an owner in memory and an
//! owner stream file, and pulled by mirrors of each kind — every step,
//! every few steps, and partial (newest-N) — into chains in memory and
//! into SQLite stream files. After every pull the two stores hold the same
//! records as the owner (a partial mirror: those after its back pointer),
//! and the pull reports the same records inserted and repairs fetched on
//! both. `DRAYER_SEED=n` replays one sequence.
#![allow(clippy::unwrap_used)]

use keyway_core::drayer::memory::{MemoryBody, MemoryChain};
use keyway_core::drayer::pull::Pulled;
use keyway_core::drayer::{Chain, Meta, SigningKey, delete, hash, is_placeholder, set};
use keyway_drayer::Stream;
use keyway_drayer::sync::{Local, pull, pull_newest};

const T0: i64 = 1_550_000_000_000_000;

/// splitmix64, as in the core's property test.
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

/// A directory for one sequence's files: in memory where the system has
/// a tmpfs (the owner syncs every write; on disk 12,000 syncs are most of
/// this test's time, and durability is not what it checks).
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// A file's records in mchain order.
fn on_file(stream: &Stream) -> Vec<Meta> {
    let mut all = stream.modified_after(i64::MIN, usize::MAX).unwrap();
    all.sort_by_key(|(m, _)| m.modified);
    all.into_iter().map(|(m, _)| m).collect()
}

fn in_memory(chain: &MemoryChain) -> Vec<Meta> {
    chain.in_mchain_order().map(|(m, _)| *m).collect()
}

/// The key of the most recently added record that is not a placeholder.
fn newest_key(chain: &MemoryChain) -> Option<String> {
    chain
        .in_mchain_order()
        .filter(|(m, _)| !is_placeholder(m))
        .max_by_key(|(m, _)| m.id)
        .map(|(_, b)| b.key.clone())
}

/// One pull into memory and one into a file, from the owner of each kind:
/// the same outcome, the same records.
struct Pair {
    memory: MemoryChain,
    file: Stream,
}

#[tokio::test(flavor = "current_thread")]
async fn the_shipped_pull_leaves_memory_and_sqlite_mirrors_equal() {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let stream = key.verifying_key();
    let one = std::env::var("DRAYER_SEED")
        .ok()
        .map(|s| s.parse().unwrap());
    let seeds: Vec<u64> = one.map_or_else(|| (0..200).collect(), |s| vec![s]);
    let (mut pulls, mut repairs, mut deletes, mut partial_drops) = (0usize, 0, 0, 0);
    for &seed in &seeds {
        let dir = scratch();
        let mut rng = Rng(seed);
        let every = 2 + rng.below(6) as usize;
        let keep = 3 + rng.below(4) as usize;
        let mut owner = MemoryChain::new();
        let mut owner_file =
            Stream::create_with_key(&dir.path().join("owner"), key.clone()).unwrap();
        let mirror = |name: &str| Pair {
            memory: MemoryChain::new(),
            file: Stream::mirror(&dir.path().join(name), stream).unwrap(),
        };
        let (mut stepwise, mut batched, mut partial) =
            (mirror("stepwise"), mirror("batched"), mirror("partial"));
        let mut now = T0;
        for step in 0..60 {
            let at = format!("seed {seed} step {step}");
            now += rng.below(2_000) as i64 - 300;
            let mut k = format!("k{}", rng.below(10));
            let roll = rng.below(20);
            if roll < 5
                && let Some(newest) = newest_key(&owner)
            {
                k = newest;
            }
            if roll < 8 {
                let in_memory = owner.transaction(|c| delete(c, &key, &k, "obj", now));
                let on_disk = owner_file.delete_at(&k, "obj", now);
                assert_eq!(in_memory.is_ok(), on_disk.is_ok(), "{at}: delete {k}");
                deletes += usize::from(in_memory.is_ok());
            } else {
                let value = rng.next().to_le_bytes();
                let body = MemoryBody {
                    key: k.clone(),
                    kind: "obj".into(),
                    value: Some(value.to_vec()),
                };
                owner
                    .transaction(|c| set(c, &key, &k, "obj", hash(&value), body, now, None))
                    .unwrap();
                owner_file.set_at(&k, "obj", &value, now, None).unwrap();
            }
            let expected = in_memory(&owner);
            assert_eq!(on_file(&owner_file), expected, "{at}: owners");

            let (inserted, fetched) = stepwise.memory.sync_from(&owner, &stream).unwrap();
            let pulled = pull(&mut stepwise.file, &mut Local(&mut owner_file))
                .await
                .unwrap_or_else(|e| panic!("{at}: stepwise file: {e}"));
            assert_eq!(
                pulled,
                Pulled {
                    inserted,
                    repairs: fetched
                },
                "{at}: stepwise pulls"
            );
            assert_eq!(
                in_memory(&stepwise.memory),
                expected,
                "{at}: stepwise memory"
            );
            assert_eq!(on_file(&stepwise.file), expected, "{at}: stepwise file");
            pulls += 1;
            repairs += fetched;

            let (inserted, fetched) = partial
                .memory
                .sync_newest_from(&owner, &stream, keep)
                .unwrap_or_else(|e| panic!("{at}: partial memory: {e}"));
            let pulled = pull_newest(&mut partial.file, &mut Local(&mut owner_file), keep)
                .await
                .unwrap_or_else(|e| panic!("{at}: partial file: {e}"));
            assert_eq!(
                pulled,
                Pulled {
                    inserted,
                    repairs: fetched
                },
                "{at}: partial pulls"
            );
            let back = partial.memory.back().unwrap();
            assert_eq!(
                partial.file.back_pointer().unwrap(),
                back,
                "{at}: back pointers"
            );
            let after_back: Vec<Meta> = expected
                .iter()
                .filter(|m| m.modified > back)
                .copied()
                .collect();
            assert_eq!(
                in_memory(&partial.memory),
                after_back,
                "{at}: partial memory"
            );
            assert_eq!(on_file(&partial.file), after_back, "{at}: partial file");
            assert!(
                partial.memory.len() <= keep,
                "{at}: partial holds {keep} at most"
            );
            partial_drops += usize::from(back != 0);

            if step % every == every - 1 {
                let (inserted, fetched) = batched.memory.sync_from(&owner, &stream).unwrap();
                let pulled = pull(&mut batched.file, &mut Local(&mut owner_file))
                    .await
                    .unwrap_or_else(|e| panic!("{at}: batched file: {e}"));
                assert_eq!(
                    pulled,
                    Pulled {
                        inserted,
                        repairs: fetched
                    },
                    "{at}: batched pulls"
                );
                assert_eq!(in_memory(&batched.memory), expected, "{at}: batched memory");
                assert_eq!(on_file(&batched.file), expected, "{at}: batched file");
            }
        }
        assert!(
            stepwise.file.verify().unwrap().problems.is_empty(),
            "seed {seed}"
        );
        assert!(
            partial.file.verify().unwrap().problems.is_empty(),
            "seed {seed}"
        );
    }
    // The sequences did delete, repair, and let a partial mirror go of
    // its oldest records.
    eprintln!("{pulls} pulls, {deletes} deletes, {repairs} repairs, {partial_drops} partial drops");
    if seeds.len() == 200 {
        assert!(
            pulls == 200 * 60 && deletes > 1_000 && repairs > 500 && partial_drops > 5_000,
            "{pulls} pulls, {deletes} deletes, {repairs} repairs, {partial_drops} partial drops"
        );
    }
}

/// A pull without limits (a source in the same process) has no timer that
/// could overflow the clock, and takes everything.
#[tokio::test(flavor = "current_thread")]
async fn a_pull_without_limits_takes_everything() {
    use keyway_core::drayer::pull::PullLimits;
    use keyway_drayer::sync::pull_with;
    let dir = scratch();
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let mut owner = Stream::create_with_key(&dir.path().join("owner"), key.clone()).unwrap();
    for i in 0..250 {
        owner
            .set_at(&format!("k{i}"), "obj", b"v", T0 + i, None)
            .unwrap();
    }
    let mut mirror = Stream::mirror(&dir.path().join("mirror"), key.verifying_key()).unwrap();
    let pulled = pull_with(&mut mirror, &mut Local(&mut owner), &PullLimits::NONE)
        .await
        .unwrap();
    assert_eq!(pulled.inserted, 250);
    assert_eq!(on_file(&mirror), on_file(&owner));
}
