//! The one error type of the MQTT codec.

use core::fmt;

/// Why bytes are not an acceptable MQTT packet, or one cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MqttError {
    /// The packet announces more than the configured maximum.
    TooLarge { len: usize, max: usize },
    /// A packet type this codec does not handle (or reserved).
    UnsupportedType(u8),
    /// QoS 2, which sidewire never uses.
    UnsupportedQoS,
    /// The bytes break the MQTT 3.1.1 rules; names what.
    Malformed(&'static str),
    /// The caller's output buffer is too small.
    BufferTooSmall { needed: usize, got: usize },
}

impl fmt::Display for MqttError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(f, "MQTT packet of {len} bytes exceeds {max}"),
            Self::UnsupportedType(t) => write!(f, "unsupported MQTT packet type {t}"),
            Self::UnsupportedQoS => f.write_str("QoS 2 is not supported"),
            Self::Malformed(what) => write!(f, "malformed MQTT packet: {what}"),
            Self::BufferTooSmall { needed, got } => {
                write!(
                    f,
                    "buffer of {got} bytes cannot hold a {needed}-byte packet"
                )
            }
        }
    }
}

impl core::error::Error for MqttError {}

/// `Ok` if `ok`, else [`MqttError::Malformed`] naming `what`.
pub(super) fn expect(ok: bool, what: &'static str) -> Result<(), MqttError> {
    if ok {
        Ok(())
    } else {
        Err(MqttError::Malformed(what))
    }
}
