//! How far down a destination's ranking each publish of a send reaches
//! (spec §5.4, §10 item 10).
//!
//! Every hint, then the destination's set, then 1, 3, 7… brokers more per
//! family with each resend: a Keyway destination also listens on a spare
//! (in case its set is unreachable from here but not from it), and a
//! reference destination subscribed wherever its connects finished first,
//! anywhere in the top 10 it raced, so only widening is sure to reach it;
//! doubling covers the bundled pool's top 10 by the fourth publish, within
//! the default 4 s timeout.

use crate::sidewire::rendezvous::set_size;

/// How far down a ranking a reference node's walk looks: it races its
/// first 10 candidates and subscribes wherever connects finish (spec
/// §5.4), so no send needs to go further.
pub const REFERENCE_RACE_WIDTH: usize = 10;

/// Hints (the caller's, then remembered ones) used per send, at most: all
/// are connected at once, so their number bounds a send's connects.
pub const MAX_HINTS: usize = 16;

/// Brokers per family beyond the set size on publish number `attempt`
/// (0 for the first): 0, 1, 3, 7, 15, then 15 again.
pub fn extra(attempt: u32) -> usize {
    (1usize << attempt.min(4)) - 1
}

/// How many of a family of `family_len` brokers publish number `attempt`
/// of a send reaches: the set size plus [`extra`], at most the top 10.
pub fn reach(family_len: usize, extra: usize) -> usize {
    set_size(family_len)
        .saturating_add(extra)
        .min(REFERENCE_RACE_WIDTH)
        .min(family_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_resend_reaches_further_down_to_the_tenth() {
        let extras: [usize; 7] = core::array::from_fn(|a| extra(a as u32));
        assert_eq!(extras, [0, 1, 3, 7, 15, 15, 15]);
        // The bundled pool's shape: 12 brokers in a family, set size 3.
        let reached: [usize; 5] = core::array::from_fn(|a| reach(12, extra(a as u32)));
        assert_eq!(reached, [3, 4, 6, 10, 10]);
        assert_eq!(reach(2, extra(9)), 2, "never past the family");
        assert_eq!(reach(0, extra(9)), 0);
    }
}
