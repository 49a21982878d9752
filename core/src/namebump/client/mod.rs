//! The namebump client as a sans-I/O machine (spec §4.5, issue 13).
//!
//! [`Exchange`] decides everything about one GET, PUT, DEL or USAGE: the
//! request's bytes, which legs ({UDP, TCP} × {IPv4, IPv6}) race, which
//! replies count, when to retry, and what an error reply means. Shells
//! open the sockets, feed what arrives and sleep until `poll_timeout`.

pub mod behavior;
pub mod error_kind;
pub mod exchange;
pub mod leg;
mod matching;
pub mod outcome;
pub mod policy;
mod request;
pub mod target;

pub use behavior::Behavior;
pub use error_kind::ErrorKind;
pub use exchange::{Event, Exchange, TRANSMIT_LEN};
pub use leg::{Family, LEGS, Leg, LegFault, Transmit, Transport};
pub use outcome::{Failure, Outcome};
pub use policy::Policy;
pub use target::{Families, Target};
