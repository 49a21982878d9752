//! Harness for Keyway's cross-crate and interop tests.
//!
//! [`reference`](mod@reference) runs the published Python reference implementations as
//! peers: it owns one virtualenv under `target/`, installed on first use.
//! [`mosquitto`] runs private MQTT brokers on loopback, [`wedged`] a
//! hostile one that stops reading after the handshake.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod mosquitto;
pub mod reference;
pub mod wedged;
