//! Bytes queued for the broker, in a buffer the session's owner provides.
//!
//! One FIFO holds every packet in the order it must go out. A gate holds
//! back what follows CONNECT until the CONNACK accepts it (the link always
//! waited for CONNACK before subscribing or publishing), and packets are
//! admitted against a reserve so that the control packets that keep a
//! session alive (PUBACK, PINGREQ, DISCONNECT) find room behind a queue
//! full of PUBLISHes.

use super::error::MqttError;

/// How much of the queue may be sent now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Nothing: no connection yet.
    Shut,
    /// Only this many bytes at the front (the rest of CONNECT).
    Front(usize),
    Open,
}

/// Why a packet was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// No room now; there will be once queued bytes are sent.
    Full,
    /// It can never fit (or cannot be encoded at all).
    Never(MqttError),
}

pub(super) struct Outbox<B> {
    buf: B,
    start: usize,
    end: usize,
    gate: Gate,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Outbox<B> {
    pub(super) fn new(buf: B) -> Self {
        Self {
            buf,
            start: 0,
            end: 0,
            gate: Gate::Shut,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Lets the first `n` queued bytes (CONNECT) go.
    pub(super) fn open_front(&mut self, n: usize) {
        self.gate = Gate::Front(n);
    }

    pub(super) fn open(&mut self) {
        self.gate = Gate::Open;
    }

    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Queues the packet `encode` writes, leaving `reserve` bytes of the
    /// buffer free. Returns its length.
    pub(super) fn push(
        &mut self,
        reserve: usize,
        encode: impl Fn(&mut [u8]) -> Result<usize, MqttError>,
    ) -> Result<usize, Refused> {
        let limit = self.capacity().saturating_sub(reserve);
        for attempt in 0..2 {
            let tail = self
                .buf
                .as_mut()
                .get_mut(self.end..limit)
                .unwrap_or_default();
            match encode(tail) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(MqttError::BufferTooSmall { needed, .. }) => {
                    if needed > limit {
                        return Err(Refused::Never(MqttError::BufferTooSmall {
                            needed,
                            got: limit,
                        }));
                    }
                    if attempt == 0 && self.start > 0 && needed <= limit - self.len() {
                        self.buf.as_mut().copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                        continue;
                    }
                    return Err(Refused::Full);
                }
                Err(e) => return Err(Refused::Never(e)),
            }
        }
        Err(Refused::Full)
    }

    /// Moves what may be sent now (at most `out.len()` bytes) into `out`.
    pub(super) fn pop(&mut self, out: &mut [u8]) -> usize {
        let sendable = match self.gate {
            Gate::Shut => 0,
            Gate::Front(n) => n.min(self.len()),
            Gate::Open => self.len(),
        };
        let n = sendable.min(out.len());
        out[..n].copy_from_slice(&self.buf.as_ref()[self.start..self.start + n]);
        if let Gate::Front(front) = &mut self.gate {
            *front -= n;
        }
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &'static [u8]) -> impl Fn(&mut [u8]) -> Result<usize, MqttError> {
        move |out: &mut [u8]| {
            if out.len() < b.len() {
                return Err(MqttError::BufferTooSmall {
                    needed: b.len(),
                    got: out.len(),
                });
            }
            out[..b.len()].copy_from_slice(b);
            Ok(b.len())
        }
    }

    #[test]
    fn the_gate_holds_back_what_follows_connect() {
        let mut outbox = Outbox::new([0u8; 16]);
        outbox.push(0, bytes(b"conn")).unwrap();
        outbox.push(0, bytes(b"sub")).unwrap();
        let mut out = [0u8; 16];
        assert_eq!(outbox.pop(&mut out), 0, "no connection yet");
        outbox.open_front(4);
        assert_eq!(outbox.pop(&mut out[..3]), 3);
        assert_eq!(outbox.pop(&mut out[3..]), 1);
        assert_eq!(outbox.pop(&mut out), 0, "SUBSCRIBE waits for CONNACK");
        outbox.open();
        assert_eq!(outbox.pop(&mut out), 3);
        assert_eq!(&out[..3], b"sub");
    }

    #[test]
    fn the_reserve_is_kept_and_room_is_made_by_compacting() {
        let mut outbox = Outbox::new([0u8; 8]);
        outbox.open();
        outbox.push(2, bytes(b"abcd")).unwrap();
        assert_eq!(outbox.push(2, bytes(b"efg")), Err(Refused::Full));
        assert_eq!(
            outbox.push(0, bytes(b"efg")),
            Ok(3),
            "the reserve is for this"
        );
        assert!(matches!(
            outbox.push(2, bytes(b"123456789")),
            Err(Refused::Never(_))
        ));
        let mut out = [0u8; 5];
        assert_eq!(outbox.pop(&mut out), 5);
        assert_eq!(outbox.push(2, bytes(b"xyz")), Ok(3), "compacted");
        let mut out = [0u8; 8];
        assert_eq!(outbox.pop(&mut out), 5);
        assert_eq!(&out[..5], b"fgxyz");
    }
}
