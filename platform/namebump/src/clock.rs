//! Where "now" comes from: the workspace's one wall-clock type, from the
//! core, so the server and client take a [`Clock`] and tests move time
//! (expiry, freshness) without sleeping.

pub use keyway_core::time::{Clock, ManualClock, SystemClock};
