//! The namebump packet as the reference's Python `Packet` packs and
//! unpacks it: lenient where the reference is (names and values clamped
//! to their limits, any trailing signature bytes), byte-identical output.

use keyway_core::PublicKey;
use keyway_core::namebump::packet::{HEADER_LEN, MAX_PACKET_LEN};
use keyway_core::namebump::{MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet};
use keyway_core::signature::{SIGNATURE_LEN, sha1_digest, verify_digest};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

const KEY_LEN: usize = 33;

fn key33(bytes: Option<&[u8]>, what: &str) -> PyResult<Option<[u8; KEY_LEN]>> {
    bytes
        .map(|b| {
            b.try_into().map_err(|_| {
                PyValueError::new_err(format!("{what} must be 33 bytes, got {}", b.len()))
            })
        })
        .transpose()
}

/// Packs the fields as `namebump.packet.Packet.pack` does: name and value
/// cut to 50 and 1024 bytes, then the vkc and whatever signature bytes
/// are given.
#[pyfunction]
#[pyo3(signature = (op, pkid, reply_pk, behavior, updated, ttl, name, value, vkc, sig))]
#[allow(clippy::too_many_arguments)]
fn packet_pack<'py>(
    py: Python<'py>,
    op: u8,
    pkid: u32,
    reply_pk: Option<&[u8]>,
    behavior: u8,
    updated: f64,
    ttl: f64,
    name: &[u8],
    value: &[u8],
    vkc: Option<&[u8]>,
    sig: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    let reply_pk = key33(reply_pk, "reply_pk")?;
    let mut packet = Packet::new(
        Op::from(op),
        pkid,
        updated,
        &name[..name.len().min(MAX_NAME_LEN)],
        &value[..value.len().min(MAX_VALUE_LEN)],
    );
    packet.reply_pk = reply_pk;
    packet.behavior = behavior;
    packet.ttl = ttl;
    let mut out = vec![0u8; MAX_PACKET_LEN];
    let n = packet
        .encode(&mut out)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    out.truncate(n);
    // Appended as given, as the reference does (a vkc is checked to be 33
    // bytes when a Packet is made, not when it is packed).
    out.extend_from_slice(vkc.unwrap_or_default());
    out.extend_from_slice(sig.unwrap_or_default());
    Ok(PyBytes::new(py, &out))
}

type Unpacked<'py> = (
    u8,
    u32,
    Option<Bound<'py, PyBytes>>,
    u8,
    f64,
    f64,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Option<Bound<'py, PyBytes>>,
    Bound<'py, PyBytes>,
);

/// Unpacks as `Packet.unpack` does: lengths clamped to the limits, a vkc
/// when 33 bytes or more remain, the rest the signature. Shorter than the
/// 59-byte header is a `ValueError`.
#[pyfunction]
fn packet_unpack<'py>(py: Python<'py>, buf: &[u8]) -> PyResult<Unpacked<'py>> {
    if buf.len() < HEADER_LEN {
        return Err(PyValueError::new_err(format!(
            "a namebump packet has a {HEADER_LEN}-byte header; got {} bytes",
            buf.len()
        )));
    }
    let u16_at = |i: usize| usize::from(u16::from_le_bytes([buf[i], buf[i + 1]]));
    let f64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        f64::from_le_bytes(b)
    };
    let name_len = u16_at(55).min(MAX_NAME_LEN);
    let value_len = u16_at(57).min(MAX_VALUE_LEN);
    let body = &buf[HEADER_LEN..];
    let name = &body[..name_len.min(body.len())];
    let body = &body[name.len()..];
    let value = &body[..value_len.min(body.len())];
    let body = &body[value.len()..];
    let (vkc, sig) = if body.len() >= KEY_LEN {
        let (vkc, sig) = body.split_at(KEY_LEN);
        (Some(vkc), sig)
    } else {
        (None, body)
    };
    let reply_pk = &buf[5..38];
    let bytes = |b: &[u8]| PyBytes::new(py, b);
    Ok((
        buf[0],
        u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]),
        (reply_pk != [0u8; KEY_LEN]).then(|| bytes(reply_pk)),
        buf[38],
        f64_at(39),
        f64_at(47),
        bytes(name),
        bytes(value),
        vkc.map(bytes),
        bytes(sig),
    ))
}

/// ECDSA-secp256k1 over SHA-1 of `msg` with a raw 64-byte `r‖s`, as
/// python-ecdsa's default `verify` (high-S accepted). `False` for a bad or
/// malformed signature; `ValueError` for a vkc that is not a point.
#[pyfunction]
fn ecdsa_sha1_verify(py: Python<'_>, vkc: &[u8], sig: &[u8], msg: &[u8]) -> PyResult<bool> {
    let key = PublicKey::from_bytes(vkc)
        .map_err(|e| PyValueError::new_err(format!("vkc is not a public key: {e}")))?;
    let Ok(sig) = <[u8; SIGNATURE_LEN]>::try_from(sig) else {
        return Ok(false);
    };
    let msg = msg.to_vec();
    Ok(py.detach(move || verify_digest(&key, &sha1_digest([msg.as_slice()]), &sig).is_ok()))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(packet_pack, m)?)?;
    m.add_function(wrap_pyfunction!(packet_unpack, m)?)?;
    m.add_function(wrap_pyfunction!(ecdsa_sha1_verify, m)?)?;
    Ok(())
}
