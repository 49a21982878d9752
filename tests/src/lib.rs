//! Harness for Keyway's cross-crate and interop tests.
//!
//! [`reference`](mod@reference) runs the published Python reference implementations as
//! peers: it owns one virtualenv under `target/`, installed on first use.
//! [`mosquitto`] runs private MQTT brokers on loopback.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod mosquitto;
pub mod reference;
