//! What the application hears from [`super::Sidewire::run_until`].

use keyway_core::sidewire::node::{BrokerId, SendFailure, SendId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Happening<'p> {
    /// A verified MSG, delivered once; `data` is lent until the call returns.
    Delivered {
        from: [u8; 33],
        data: &'p [u8],
    },
    SendAcked(SendId),
    SendFailed(SendId, SendFailure),
    /// `dest` answered through `broker` (worth remembering as a hint).
    Reached {
        dest: [u8; 33],
        broker: BrokerId,
    },
}
