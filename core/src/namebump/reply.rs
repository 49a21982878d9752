//! How a server answers (spec §6). Every reply carries the server's key in
//! `reply_pk`, no signature, and is sealed to the request's `reply_pk`.

use crate::identity::PublicKey;
use crate::namebump::packet::{Op, Packet};

/// `name` of an error reply.
pub const ERROR_NAME: &[u8] = b"Error";
/// `value` of an error reply, misspelt as the reference sends it (bug 38).
pub const ERROR_VALUE: &[u8] = b"Unknown error occured.";

/// The request echoed back: PUT and DEL successes, GET misses (with the
/// request's vkc) and the base of every other reply.
pub fn echo<'a>(request: &Packet<'a>, server: &PublicKey) -> Packet<'a> {
    Packet {
        reply_pk: Some(*server.as_bytes()),
        sig: None,
        ..*request
    }
}

/// A GET that found nothing: the echo with an empty value and `updated` 0.
pub fn not_found<'a>(request: &Packet<'a>, server: &PublicKey) -> Packet<'a> {
    Packet {
        value: b"",
        updated: 0.0,
        ..echo(request, server)
    }
}

/// A GET hit: the stored value, the row's whole-second timestamp and the owner.
pub fn found<'a>(
    request: &Packet<'a>,
    server: &PublicKey,
    value: &'a [u8],
    timestamp: f64,
    owner: &[u8; 33],
) -> Packet<'a> {
    Packet {
        value,
        updated: timestamp,
        vkc: Some(*owner),
        ..echo(request, server)
    }
}

/// A PUT refused at quota: the echo with an empty value and `updated` 0,
/// which reference clients raise as `PutRejected` (spec §6.2 step 4).
pub fn rejected<'a>(request: &Packet<'a>, server: &PublicKey) -> Packet<'a> {
    not_found(request, server)
}

/// The error reply. Unlike the reference it echoes the request's pkid, so
/// clients can match it (bug 31); reference clients ignore pkid.
pub fn error(pkid: u32, now: f64, server: &PublicKey) -> Packet<'static> {
    Packet {
        reply_pk: Some(*server.as_bytes()),
        vkc: Some(*server.as_bytes()),
        ..Packet::new(Op::Error, pkid, now, ERROR_NAME, ERROR_VALUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::namebump::packet::HEADER_LEN;

    #[test]
    fn error_reply_is_119_bytes_like_the_reference() {
        let server = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let e = error(77, 1.0, server.public());
        assert_eq!(e.encoded_len(), 119);
        assert_eq!(e.encoded_len(), HEADER_LEN + 5 + 22 + 33);
        assert_eq!(e.pkid, 77);
    }

    #[test]
    fn replies_drop_the_signature_and_carry_the_server_key() {
        let server = Keypair::from_secret_bytes(&[1u8; 32]).unwrap();
        let owner = Keypair::from_secret_bytes(&[2u8; 32]).unwrap();
        let mut put = Packet::new(Op::Put, 5, 10.0, b"n", b"v");
        put.sign(&owner).unwrap();
        let r = echo(&put, server.public());
        assert_eq!(
            (r.sig, r.reply_pk),
            (None, Some(*server.public().as_bytes()))
        );
        assert_eq!((r.name, r.value, r.vkc), (put.name, put.value, put.vkc));
        let q = rejected(&put, server.public());
        assert_eq!((q.value, q.updated), (&b""[..], 0.0));
    }
}
