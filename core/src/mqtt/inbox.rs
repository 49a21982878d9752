//! Bytes received from the broker and not yet consumed, in a buffer the
//! session's owner provides (no heap: firmware passes an array).
//!
//! The buffer never grows: a packet longer than the session's maximum is
//! skipped as it streams past ([`Inbox::skip_packet`]) instead of being
//! buffered (spec §10 item 8), so memory is bounded whatever a broker sends.

/// The receive buffer: live bytes are `buf[start..end]`.
pub(super) struct Inbox<B> {
    buf: B,
    start: usize,
    end: usize,
    /// Bytes of an oversize packet still to be discarded as they arrive.
    skip: usize,
    /// Bytes at the front lent out in the last message event; released at
    /// the session's next `&mut` call, when the borrow has ended.
    lent: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Inbox<B> {
    pub(super) fn new(buf: B) -> Self {
        Self {
            buf,
            start: 0,
            end: 0,
            skip: 0,
            lent: 0,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    /// The buffered bytes not yet consumed.
    pub(super) fn window(&self) -> &[u8] {
        &self.buf.as_ref()[self.start..self.end]
    }

    /// The window, from `from` to `to` (relative to the window's start).
    pub(super) fn slice(&self, from: usize, to: usize) -> &[u8] {
        let window = self.window();
        window.get(from..to).unwrap_or_default()
    }

    /// Whether the window fills the whole buffer: nothing more can arrive
    /// until something is consumed.
    pub(super) fn is_full(&self) -> bool {
        self.end - self.start >= self.capacity()
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Marks the first `n` bytes as lent out (a message event borrows them).
    pub(super) fn lend(&mut self, n: usize) {
        self.lent = n;
    }

    pub(super) fn release_lent(&mut self) {
        let n = core::mem::take(&mut self.lent);
        self.consume(n);
    }

    /// Drops a packet of `len` bytes at the front: what is buffered now,
    /// and the rest as it arrives.
    pub(super) fn skip_packet(&mut self, len: usize) {
        let buffered = len.min(self.end - self.start);
        self.consume(buffered);
        self.skip = len - buffered;
    }

    /// Forgets everything buffered (the session closed).
    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.skip = 0;
        self.lent = 0;
    }

    /// Takes what it can of `bytes`: first the rest of a skipped packet
    /// (discarded), then as much as fits. Returns how many bytes of
    /// `bytes` it took.
    pub(super) fn push(&mut self, bytes: &[u8]) -> usize {
        self.release_lent();
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        let rest = &bytes[skipped..];
        if rest.is_empty() {
            return skipped;
        }
        let capacity = self.capacity();
        if self.end + rest.len() > capacity && self.start > 0 {
            self.buf.as_mut().copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let take = (capacity - self.end).min(rest.len());
        self.buf.as_mut()[self.end..self.end + take].copy_from_slice(&rest[..take]);
        self.end += take;
        skipped + take
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_packet_is_discarded_as_it_arrives_and_never_buffered() {
        let mut inbox = Inbox::new([0u8; 8]);
        assert_eq!(inbox.push(&[1, 2, 3, 4, 5, 6]), 6);
        inbox.skip_packet(20);
        assert!(inbox.window().is_empty());
        // 14 bytes of the skipped packet are still to come.
        assert_eq!(inbox.push(&[0; 10]), 10);
        assert!(inbox.window().is_empty());
        assert_eq!(inbox.push(&[0, 0, 0, 0, 9, 8]), 6);
        assert_eq!(inbox.window(), &[9, 8]);
    }

    #[test]
    fn a_full_buffer_takes_what_fits_and_compacts_after_consuming() {
        let mut inbox = Inbox::new([0u8; 4]);
        assert_eq!(inbox.push(&[1, 2, 3, 4, 5]), 4);
        assert!(inbox.is_full());
        inbox.consume(2);
        assert_eq!(inbox.push(&[5, 6, 7]), 2);
        assert_eq!(inbox.window(), &[3, 4, 5, 6]);
        inbox.lend(3);
        assert_eq!(
            inbox.window(),
            &[3, 4, 5, 6],
            "lent bytes stay until released"
        );
        assert_eq!(inbox.push(&[7]), 1);
        assert_eq!(inbox.window(), &[6, 7]);
    }
}
