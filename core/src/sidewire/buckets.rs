//! Where a key lands in a set-associative table: the bucket named by a
//! keyed hash (the caller's secret seed, so senders cannot aim at one
//! bucket). The screen's peer table, the node's ACK and key caches share
//! this rule.

use sha2::{Digest, Sha256};

/// The slots of the bucket SHA-256(`seed` ‖ `parts`…) names in a table of
/// `len` slots in buckets of `ways` (fewer if the table is smaller); empty
/// for an empty table.
pub fn bucket(
    seed: &[u8; 16],
    parts: &[&[u8]],
    len: usize,
    ways: usize,
) -> core::ops::Range<usize> {
    let ways = ways.min(len);
    let Some(buckets) = len.checked_div(ways) else {
        return 0..0;
    };
    let mut hash = Sha256::new().chain_update(seed);
    for part in parts {
        hash.update(part);
    }
    let hash = hash.finalize();
    let mut low = [0u8; 8];
    low.copy_from_slice(&hash[..8]);
    let at = (u64::from_le_bytes(low) % buckets as u64) as usize * ways;
    at..at + ways
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_whole_and_inside_the_table() {
        for len in [0usize, 1, 3, 4, 9, 64] {
            for i in 0..50u8 {
                let b = bucket(&[i; 16], &[&[i]], len, 4);
                assert!(b.end <= len);
                assert_eq!(b.len(), 4.min(len));
                assert_eq!(b.start % 4.min(len).max(1), 0);
            }
        }
    }
}
