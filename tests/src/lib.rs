//! Harness for Keyway's cross-crate and interop tests.
//!
//! [`reference`](mod@reference) runs the published Python reference implementations as
//! peers: it owns one virtualenv under `target/`, installed on first use.
//! [`mosquitto`] runs private MQTT brokers on loopback, [`wedged`] a
//! hostile one that stops reading after the handshake. [`netns`] gives the
//! firmware example (issue 14) a network namespace with a TAP device.
//! [`inbox`](mod@inbox) collects a router's delivered messages.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod inbox;
pub mod mosquitto;
pub mod netns;
pub mod reference;
pub mod wedged;
