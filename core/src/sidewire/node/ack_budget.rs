//! How much work one delivered MSG's ACK may take, for a shell that runs
//! ACKs on a bounded number of tasks (the tokio Router's ACK tasks).
//!
//! A first copy's ACK is always signed (on the verifier, within the
//! verification budget) and kept; with a task free it also walks to the
//! sender's own set, otherwise it goes only back the way the MSG came
//! (the sender's resend is answered from the kept bytes). A later copy
//! whose kept ACK is gone is signed in a task, and only from the tasks
//! beyond the quarter reserved for first copies: a flood of copies must
//! not starve the ACKs of new messages.

/// What to do with one ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckWork {
    /// Publish on the arrival link, then walk to the sender's set in a task.
    Walk,
    /// Publish on the arrival link only.
    ArrivedOnly,
    /// Sign and publish on the arrival link in a task.
    InTask,
    /// Nothing: the sender's resend finds the next free task.
    Drop,
}

/// Tasks of `max` kept for first copies.
pub fn reserved(max: usize) -> usize {
    max / 4
}

/// The work for an ACK (`first`: the first copy of its MSG) with `free`
/// of `max` ACK tasks free.
pub fn ack_work(first: bool, free: usize, max: usize) -> AckWork {
    match (first, free) {
        (true, 0) => AckWork::ArrivedOnly,
        (true, _) => AckWork::Walk,
        (false, f) if f > reserved(max) => AckWork::InTask,
        (false, _) => AckWork::Drop,
    }
}
