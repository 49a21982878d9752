//! Keyway's core: everything that decides bytes, and nothing that does I/O.
//!
//! `#![no_std]` and allocation-free on every codec and crypto path: callers
//! pass buffers, the current time and a random number generator. The same
//! code therefore runs in the tokio server, in firmware and behind the C ABI.
//!
//! - [`identity`]: secp256k1 keypairs and 33-byte compressed public keys.
//! - [`signature`]: ECDSA over SHA-1 with raw `r‖s`, as namebump and sidewire sign.
//! - [`ecies`]: aionetiface's hybrid encryption (raw ECDH, RC6-CBC, HMAC-SHA256).
//! - [`namebump`]: the namebump packet, request freshness, quota address helpers,
//!   server replies, the TCP framing and the client exchange machine.
//! - [`address_family`]: the AF_INET/AF_INET6 bytes both protocols put on the wire.
//! - [`rate`]: the token bucket behind per-source rate limits.
//! - [`sidewire`]: the signed AppPacket, rendezvous broker ranking, and the
//!   node as a sans-I/O state machine (`sidewire::node`).
//! - [`mqtt`]: the MQTT 3.1.1 packets sidewire uses, streaming and size-capped.
//! - [`drayer`]: Drayer's signed, mutable single-writer record chains: the
//!   record string, and the owner and receiver algorithms over any store.
//! - `registry` (feature `registry`): the name registry's usernames, owner-signed
//!   write requests (also its stream records) and write replies.
//! - `link` (feature `link`): secure node links (Noise XXpsk3, identity proofs, capabilities,
//!   limits) as a sans-I/O machine; needs `alloc`.
//!
//! Protocols are features (`namebump`, `mqtt`, `sidewire`, `drayer`, `link`), so
//! firmware compiles only what it uses; [`time`] is the monotonic clock
//! every state machine takes as an argument.
//!
//! A namebump PUT from client to server, with no heap and no I/O:
//!
//! ```
//! # #[cfg(feature = "namebump")] {
//! use keyway_core::namebump::freshness::check_freshness;
//! use keyway_core::namebump::{Op, Packet, packet::MAX_PACKET_LEN};
//! use keyway_core::{ecies, Keypair};
//! # use keyway_core::rand_core::UnwrapErr;
//! # let mut rng = UnwrapErr(getrandom::SysRng);
//! # let (owner, server, reply) =
//! #     (Keypair::generate(&mut rng), Keypair::generate(&mut rng), Keypair::generate(&mut rng));
//! let now = 1_795_000_000.0; // Unix seconds, from the caller's clock
//!
//! // Client: build, sign (sets vkc), encode, encrypt to the server's key.
//! let mut put = Packet::new(Op::Put, 0x1234_5678, now, b"alice", b"hello world");
//! put.reply_pk = Some(*reply.public().as_bytes());
//! put.sign(&owner)?;
//! let mut plain = [0u8; MAX_PACKET_LEN];
//! let n = put.encode(&mut plain)?;
//! let mut wire = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
//! let m = ecies::seal(server.public(), &plain[..n], &mut rng, &mut wire)?;
//!
//! // Server: decrypt, decode, verify the signature and the freshness window.
//! let mut buf = [0u8; MAX_PACKET_LEN + ecies::BLOCK_LEN];
//! let request = Packet::decode(ecies::open(&server, &wire[..m], &mut buf)?)?;
//! assert_eq!(request.verify_self_signed()?, *owner.public());
//! check_freshness(now, request.updated, request.ttl)?;
//! assert_eq!(request.value, b"hello world");
//! # }
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod address_family;
#[cfg(feature = "drayer")]
pub mod drayer;
pub mod ecies;
pub mod identity;
#[cfg(feature = "link")]
pub mod link;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "namebump")]
pub mod namebump;
pub mod rate;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "sidewire")]
pub mod sidewire;
pub mod signature;
pub mod time;

pub use identity::{KeyError, Keypair, PublicKey};
/// The RNG traits the core takes randomness through.
pub use rand_core;
