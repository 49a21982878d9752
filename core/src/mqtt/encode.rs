//! Encoding the MQTT 3.1.1 packets sidewire uses into the caller's buffer.

use super::decode::QoS;
use super::error::{MqttError, expect};
use super::length::{MAX_REMAINING, encode_remaining_length};

/// Writes packets into a caller's buffer.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn string(&mut self, s: &[u8]) {
        // Callers check that strings fit in u16 before writing.
        self.put(&(s.len() as u16).to_be_bytes());
        self.put(s);
    }
}

/// Writes a packet with fixed-header byte `first` and a body of `len`
/// bytes produced by `body`. Returns the total length.
fn write(
    out: &mut [u8],
    first: u8,
    len: usize,
    body: impl FnOnce(&mut Writer<'_>),
) -> Result<usize, MqttError> {
    if len > MAX_REMAINING {
        return Err(MqttError::TooLarge {
            len,
            max: MAX_REMAINING,
        });
    }
    let mut varint = [0u8; 4];
    let n = encode_remaining_length(len, &mut varint);
    let total = 1 + n + len;
    if out.len() < total {
        return Err(MqttError::BufferTooSmall {
            needed: total,
            got: out.len(),
        });
    }
    let mut w = Writer { out, at: 0 };
    w.put(&[first]);
    w.put(&varint[..n]);
    body(&mut w);
    debug_assert_eq!(w.at, total);
    Ok(total)
}

fn check_string(s: &[u8], what: &'static str) -> Result<(), MqttError> {
    expect(s.len() <= usize::from(u16::MAX), what)
}

/// CONNECT with a clean session, no will and no credentials.
pub fn encode_connect(
    client_id: &[u8],
    keep_alive: u16,
    out: &mut [u8],
) -> Result<usize, MqttError> {
    check_string(client_id, "client id longer than 65535 bytes")?;
    write(out, 0x10, 10 + 2 + client_id.len(), |w| {
        w.string(b"MQTT");
        w.put(&[4, 0x02]);
        w.put(&keep_alive.to_be_bytes());
        w.string(client_id);
    })
}

pub fn encode_connack(
    session_present: bool,
    return_code: u8,
    out: &mut [u8],
) -> Result<usize, MqttError> {
    write(out, 0x20, 2, |w| {
        w.put(&[u8::from(session_present), return_code])
    })
}

/// SUBSCRIBE to one topic filter.
pub fn encode_subscribe(
    packet_id: u16,
    topic: &[u8],
    qos: QoS,
    out: &mut [u8],
) -> Result<usize, MqttError> {
    check_string(topic, "topic longer than 65535 bytes")?;
    expect(packet_id != 0, "packet id 0")?;
    write(out, 0x82, 2 + 2 + topic.len() + 1, |w| {
        w.put(&packet_id.to_be_bytes());
        w.string(topic);
        w.put(&[qos as u8]);
    })
}

pub fn encode_suback(
    packet_id: u16,
    return_codes: &[u8],
    out: &mut [u8],
) -> Result<usize, MqttError> {
    write(out, 0x90, 2 + return_codes.len(), |w| {
        w.put(&packet_id.to_be_bytes());
        w.put(return_codes);
    })
}

/// PUBLISH, no retain, DUP clear. QoS 1 needs a non-zero packet id.
pub fn encode_publish(
    topic: &[u8],
    qos: QoS,
    packet_id: u16,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, MqttError> {
    check_string(topic, "topic longer than 65535 bytes")?;
    let id_len = match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => {
            expect(packet_id != 0, "packet id 0")?;
            2
        }
    };
    write(
        out,
        0x30 | ((qos as u8) << 1),
        2 + topic.len() + id_len + payload.len(),
        |w| {
            w.string(topic);
            if id_len > 0 {
                w.put(&packet_id.to_be_bytes());
            }
            w.put(payload);
        },
    )
}

pub fn encode_puback(packet_id: u16, out: &mut [u8]) -> Result<usize, MqttError> {
    write(out, 0x40, 2, |w| w.put(&packet_id.to_be_bytes()))
}

pub fn encode_pingreq(out: &mut [u8]) -> Result<usize, MqttError> {
    write(out, 0xc0, 0, |_| {})
}

pub fn encode_pingresp(out: &mut [u8]) -> Result<usize, MqttError> {
    write(out, 0xd0, 0, |_| {})
}

pub fn encode_disconnect(out: &mut [u8]) -> Result<usize, MqttError> {
    write(out, 0xe0, 0, |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::length::remaining_length;

    #[test]
    fn remaining_lengths_round_trip_at_every_boundary() {
        for len in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
            let mut out = alloc::vec![0u8; len + 5];
            let n = write(&mut out, 0xd0, len, |w| w.at += len).unwrap();
            let (value, used) = remaining_length(&out[1..n]).unwrap().unwrap();
            assert_eq!((value, 1 + used + value), (len, n));
        }
    }
}
