//! The fixed header's remaining length: a 1–4 byte base-128 varint
//! (MQTT 3.1.1 §2.2.3).

use super::error::MqttError;

/// Largest remaining length MQTT can express (four varint bytes).
pub(super) const MAX_REMAINING: usize = 268_435_455;

/// Decodes the remaining-length varint at the start of `buf`:
/// `Ok(None)` if incomplete, else (value, bytes used).
pub(super) fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, MqttError> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(MqttError::Malformed("remaining length longer than 4 bytes"));
    }
    Ok(None)
}

/// Encodes `len` into `out`; returns how many bytes it took. `len` must be
/// at most [`MAX_REMAINING`].
pub(super) fn encode_remaining_length(len: usize, out: &mut [u8; 4]) -> usize {
    let mut n = 0;
    let mut rest = len;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        out[n] = byte;
        n += 1;
        if rest == 0 || n == 4 {
            return n;
        }
    }
}
