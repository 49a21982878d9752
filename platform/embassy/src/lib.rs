//! Keyway on microcontrollers: the namebump client and a sidewire node on
//! embassy-net, `#![no_std]`, no allocator.
//!
//! This crate only moves bytes and time: every protocol decision (what to
//! send, when to retry, which broker, what to deliver) is made by
//! `keyway-core`'s machines (issue 14), which this crate feeds with what
//! its sockets receive and its timers fire, and drains of what they ask
//! to send.
//!
//! - [`namebump`]: get, put, delete and usage against a namebump server,
//!   over UDP and TCP ([`keyway_core::namebump::client::Exchange`]).
//! - [`sidewire`]: a node on a pool of MQTT brokers
//!   ([`keyway_core::sidewire::node::Node`], one
//!   [`keyway_core::mqtt::Session`] per link).
//!
//! The application provides the network stack ([`embassy_net::Stack`]),
//! the monotonic clock (an embassy-time driver), the wall clock
//! ([`keyway_core::time::Clock`]), a `rand_core` RNG and its keys.

#![no_std]
#![forbid(unsafe_code)]

pub mod clock;
pub mod namebump;
pub mod sidewire;

pub use keyway_core;
