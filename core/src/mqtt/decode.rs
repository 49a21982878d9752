//! Streaming, size-capped decoding of the MQTT 3.1.1 packets sidewire uses
//! (spec `sidewire.md` §2).
//!
//! [`decode`] returns `Ok(None)` until a whole packet is buffered. Unlike
//! the reference reader (spec §10 item 8, §2.7) it has a hard maximum
//! packet size, checked from the fixed header before the body arrives, and
//! a malformed remaining length is an error, not a wait for ever. Reserved
//! flag bits are checked; QoS 2 is refused (never used).

use super::error::{MqttError, expect};
use super::length::remaining_length;
/// Quality of service of a PUBLISH or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
}

/// The CONNACK a sidewire client expects: no session, accepted (`20 02 00 00`).
pub const CONNACK_ACCEPTED: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// A decoded packet, borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect {
        client_id: &'a [u8],
        keep_alive: u16,
        clean_session: bool,
    },
    Connack {
        session_present: bool,
        return_code: u8,
    },
    Publish {
        dup: bool,
        qos: QoS,
        retain: bool,
        topic: &'a [u8],
        packet_id: Option<u16>,
        payload: &'a [u8],
    },
    Puback {
        packet_id: u16,
    },
    /// The topic filters, as (filter, requested QoS) pairs: see [`filters`].
    Subscribe {
        packet_id: u16,
        filters: &'a [u8],
    },
    Suback {
        packet_id: u16,
        return_codes: &'a [u8],
    },
    Pingreq,
    Pingresp,
    Disconnect,
}

/// Decodes one packet from the front of `buf`. `Ok(None)`: more bytes
/// needed; `Ok(Some((packet, n)))`: the packet took the first `n` bytes.
/// Packets longer than `max_packet` bytes in all are refused as soon as
/// their header says so.
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Option<(Packet<'_>, usize)>, MqttError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, varint)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + varint + len;
    if total > max_packet {
        return Err(MqttError::TooLarge {
            len: total,
            max: max_packet,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[1 + varint..total];
    let flags = first & 0x0f;
    let packet = match first >> 4 {
        1 => connect(flags, body)?,
        2 => {
            expect(flags == 0 && body.len() == 2, "CONNACK")?;
            expect(body[0] & 0xfe == 0, "CONNACK acknowledge flags")?;
            Packet::Connack {
                session_present: body[0] == 1,
                return_code: body[1],
            }
        }
        3 => publish(flags, body)?,
        4 => {
            expect(flags == 0 && body.len() == 2, "PUBACK")?;
            Packet::Puback {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
            }
        }
        8 => {
            expect(flags == 0x2 && body.len() >= 2, "SUBSCRIBE")?;
            let filters = &body[2..];
            expect(!filters.is_empty(), "SUBSCRIBE without a filter")?;
            for filter in Filters(filters) {
                filter?;
            }
            Packet::Subscribe {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
                filters,
            }
        }
        9 => {
            expect(flags == 0 && body.len() >= 3, "SUBACK")?;
            Packet::Suback {
                packet_id: u16::from_be_bytes([body[0], body[1]]),
                return_codes: &body[2..],
            }
        }
        12 => empty(flags, body, Packet::Pingreq)?,
        13 => empty(flags, body, Packet::Pingresp)?,
        14 => empty(flags, body, Packet::Disconnect)?,
        other => return Err(MqttError::UnsupportedType(other)),
    };
    Ok(Some((packet, total)))
}

fn empty<'a>(flags: u8, body: &[u8], packet: Packet<'a>) -> Result<Packet<'a>, MqttError> {
    expect(flags == 0 && body.is_empty(), "packet that must be empty")?;
    Ok(packet)
}

/// Splits an MQTT string (u16 length + bytes) off the front of `buf`.
fn string(buf: &[u8]) -> Result<(&[u8], &[u8]), MqttError> {
    expect(buf.len() >= 2, "truncated string length")?;
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    expect(buf.len() >= 2 + len, "truncated string")?;
    Ok((&buf[2..2 + len], &buf[2 + len..]))
}

fn connect(flags: u8, body: &[u8]) -> Result<Packet<'_>, MqttError> {
    expect(flags == 0, "CONNECT flags")?;
    let (protocol, rest) = string(body)?;
    expect(protocol == b"MQTT", "protocol name")?;
    expect(rest.len() >= 4, "CONNECT header")?;
    expect(rest[0] == 4, "protocol level (only 3.1.1)")?;
    let connect_flags = rest[1];
    // No will, user name or password in this subset; bit 0 is reserved.
    expect(
        connect_flags & !0x02 == 0,
        "CONNECT flags beyond clean session",
    )?;
    let keep_alive = u16::from_be_bytes([rest[2], rest[3]]);
    let (client_id, rest) = string(&rest[4..])?;
    expect(rest.is_empty(), "trailing CONNECT payload")?;
    Ok(Packet::Connect {
        client_id,
        keep_alive,
        clean_session: connect_flags & 0x02 != 0,
    })
}

fn publish(flags: u8, body: &[u8]) -> Result<Packet<'_>, MqttError> {
    let qos = match (flags >> 1) & 0x3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => return Err(MqttError::UnsupportedQoS),
        _ => return Err(MqttError::Malformed("PUBLISH QoS 3")),
    };
    let dup = flags & 0x08 != 0;
    expect(!(dup && qos == QoS::AtMostOnce), "DUP on a QoS 0 PUBLISH")?;
    let (topic, rest) = string(body)?;
    let (packet_id, payload) = match qos {
        QoS::AtMostOnce => (None, rest),
        QoS::AtLeastOnce => {
            expect(rest.len() >= 2, "PUBLISH packet id")?;
            let id = u16::from_be_bytes([rest[0], rest[1]]);
            expect(id != 0, "packet id 0")?;
            (Some(id), &rest[2..])
        }
    };
    Ok(Packet::Publish {
        dup,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        payload,
    })
}

/// The packet id of a QoS 1 PUBLISH from its first bytes alone (fixed
/// header, topic, id): lets a reader acknowledge a PUBLISH it refuses as
/// too large, so the broker does not keep it in flight. `None` if `prefix`
/// is not (the start of) a QoS 1 PUBLISH or is too short to tell.
pub fn publish_packet_id(prefix: &[u8]) -> Option<u16> {
    let first = *prefix.first()?;
    if first >> 4 != 3 || (first >> 1) & 0x3 != 1 {
        return None;
    }
    let (_, varint) = remaining_length(prefix.get(1..)?).ok()??;
    let body = prefix.get(1 + varint..)?;
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let id = body.get(2 + topic_len..4 + topic_len)?;
    Some(u16::from_be_bytes([id[0], id[1]])).filter(|id| *id != 0)
}

/// The (filter, QoS) pairs of a SUBSCRIBE's payload.
pub fn filters(payload: &[u8]) -> impl Iterator<Item = Result<(&[u8], u8), MqttError>> {
    Filters(payload)
}

struct Filters<'a>(&'a [u8]);

impl<'a> Iterator for Filters<'a> {
    type Item = Result<(&'a [u8], u8), MqttError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = string(self.0).and_then(|(filter, rest)| {
            let (&qos, rest) = rest
                .split_first()
                .ok_or(MqttError::Malformed("filter QoS"))?;
            expect(qos <= 2, "filter QoS")?;
            self.0 = rest;
            Ok((filter, qos))
        });
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::encode::{encode_publish, encode_subscribe};

    #[test]
    fn partial_input_waits_and_bad_input_is_refused() {
        let mut buf = [0u8; 64];
        let n = encode_publish(b"t", QoS::AtLeastOnce, 5, b"hello", &mut buf).unwrap();
        for cut in 0..n {
            assert_eq!(decode(&buf[..cut], 1024), Ok(None), "cut at {cut}");
        }
        assert!(decode(&buf[..n], 1024).unwrap().is_some());
        assert_eq!(
            decode(&buf[..n], n - 1),
            Err(MqttError::TooLarge { len: n, max: n - 1 })
        );
        // A huge announced length is refused at once, not buffered.
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0x7f], 4096),
            Err(MqttError::TooLarge {
                len: 268_435_460,
                max: 4096
            })
        );
        // A fifth length byte: malformed, not a wait for ever (reference bug).
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
            Err(MqttError::Malformed("remaining length longer than 4 bytes"))
        );
        assert_eq!(decode(&[0x34, 0x00], 64), Err(MqttError::UnsupportedQoS));
        assert_eq!(
            decode(&[0x41, 0x02, 0, 1], 64),
            Err(MqttError::Malformed("PUBACK"))
        );
        assert_eq!(
            decode(&[0xf0, 0x00], 64),
            Err(MqttError::UnsupportedType(15))
        );
        assert_eq!(
            decode(&[0x32, 0x04, 0, 0, 0, 0], 64),
            Err(MqttError::Malformed("packet id 0"))
        );
    }

    #[test]
    fn an_oversize_publish_still_names_its_packet_id() {
        let mut buf = alloc::vec![0u8; 5000];
        let n = encode_publish(b"topic", QoS::AtLeastOnce, 0x1234, &[1u8; 4000], &mut buf).unwrap();
        assert_eq!(
            decode(&buf[..n], 1000),
            Err(MqttError::TooLarge { len: n, max: 1000 })
        );
        assert_eq!(publish_packet_id(&buf[..12]), Some(0x1234));
        assert_eq!(publish_packet_id(&buf[..8]), None, "not enough bytes yet");
        let q0 = encode_publish(b"topic", QoS::AtMostOnce, 0, b"x", &mut buf).unwrap();
        assert_eq!(publish_packet_id(&buf[..q0]), None);
    }

    #[test]
    fn subscribe_filters_iterate() {
        let mut buf = [0u8; 64];
        let n = encode_subscribe(3, b"topic", QoS::AtLeastOnce, &mut buf).unwrap();
        let Some((
            Packet::Subscribe {
                packet_id,
                filters: f,
            },
            used,
        )) = decode(&buf[..n], 64).unwrap()
        else {
            panic!("not a SUBSCRIBE");
        };
        assert_eq!((packet_id, used), (3, n));
        let all: alloc::vec::Vec<_> = filters(f).collect();
        assert_eq!(all, alloc::vec![Ok((&b"topic"[..], 1))]);
    }
}
