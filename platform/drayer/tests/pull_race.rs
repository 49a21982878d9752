//! A mirror pulling from a stream file while its owner writes to it: each
//! page and each `crdr` answer comes from the owner's file as it is then
//! (as a server reading its stream while the owner writes serves them).
//! Pages from different states once broke the pull ("record follows one
//! modified at …, which this chain does not hold"); it now asks again
//! after its tip and ends equal to the owner.
#![allow(clippy::unwrap_used)]

use keyway_core::drayer::Meta;
use keyway_drayer::sqlite::Body;
use keyway_drayer::sync::{Source, pull};
use keyway_drayer::{Stream, StreamError};

/// The owner's file as a source, written before each of its first `busy`
/// answers; pages of `page` records.
struct Racing<'a> {
    owner: &'a mut Stream,
    rng: u64,
    keys: u64,
    busy: u32,
    page: usize,
}

impl Racing<'_> {
    fn below(&mut self, n: u64) -> u64 {
        // SplitMix64: a seeded sequence, the same on every run.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }

    fn write(&mut self) {
        let key = format!("k{}", self.below(self.keys));
        if self.below(3) == 0 {
            if self.owner.get(&key, "obj").unwrap().is_some() {
                self.owner.delete(&key, "obj").unwrap();
            }
        } else {
            let value = self.below(u64::MAX).to_le_bytes();
            self.owner.set(&key, "obj", &value).unwrap();
        }
    }

    fn writing(&mut self) {
        if self.busy > 0 {
            self.busy -= 1;
            self.write();
            self.write();
        }
    }
}

impl Source for Racing<'_> {
    type Error = StreamError;

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, StreamError> {
        self.writing();
        self.owner.modified_after(t, self.page)
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, StreamError> {
        self.writing();
        Ok(self.owner.crdr(pdest)?.map(|(m, _)| m))
    }
}

#[tokio::test]
async fn a_mirror_pulling_while_the_owner_writes_ends_equal_to_the_owner() {
    for seed in 0..12u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
        let mut mirror =
            Stream::mirror(&dir.path().join("mirror.stream"), *owner.public_key()).unwrap();
        let mut source = Racing {
            owner: &mut owner,
            rng: seed,
            keys: 4 + seed % 6,
            busy: 0,
            page: 1 + (seed % 3) as usize,
        };
        for _ in 0..30 {
            source.write();
        }
        source.busy = 20;
        if let Err(e) = pull(&mut mirror, &mut source).await {
            panic!("seed {seed}: {e}");
        }
        // A whole modification chain of records the owner signed (the ID
        // chain may wait on a record moved after the pull's last page).
        let report = mirror.verify().unwrap();
        let broken: Vec<_> = report
            .problems
            .iter()
            .filter(|p| !p.starts_with("ID chain: "))
            .collect();
        assert!(broken.is_empty(), "seed {seed}: {broken:?}");
        // The next page is read ahead, so a write made before a `crdr`
        // answer may follow the pull's last page: a quiet pull gets it.
        pull(&mut mirror, &mut source).await.unwrap();
        assert_eq!(
            mirror.modified_after(0, 1_000).unwrap(),
            owner.modified_after(0, 1_000).unwrap(),
            "seed {seed}"
        );
        assert!(mirror.verify().unwrap().problems.is_empty(), "seed {seed}");
    }
}
