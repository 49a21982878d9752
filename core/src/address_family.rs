//! The address-family bytes Keyway puts on the wire and in its tables.
//!
//! Both protocols that carry a family use Linux's numbers on every OS:
//! namebump's quota rows and USAGE replies (bug 30) and sidewire's broker
//! ranking hash (spec §10 item 12). One definition, re-exported by
//! `namebump::address` and `sidewire::rendezvous`, so the
//! two cannot drift (issue 13).

/// IPv4.
pub const AF_INET: u8 = 2;
/// IPv6 (Linux's value, whatever the local OS calls `AF_INET6`).
pub const AF_INET6: u8 = 10;
