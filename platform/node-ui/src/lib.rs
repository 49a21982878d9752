//! placeholder
pub mod channel;
pub mod key_schedule;
pub mod pairing;
pub mod token;
