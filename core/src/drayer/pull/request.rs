//! The requests a pull makes of its source, and their HTTP paths under a
//! stream's URL (spec §8.2; `newest` is Keyway's, for partial mirrors).

use core::fmt::Write;

/// The largest `n` a server answers `newest/<n>` with.
pub const MAX_NEWEST: usize = 10_000;

/// What the pull asks its source for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `newRecords/<after>`: up to a page of records modified after `after`,
    /// oldest first. Answer with [`super::Pull::handle_page`].
    Page { after: i64 },
    /// `newest/<n>`: the `n` most recently modified records, oldest first.
    /// Answer with [`super::Pull::handle_newest`].
    Newest { n: usize },
    /// `crdr/<pdest>`: the record with the largest `prevchange` ≤ `pdest`.
    /// Answer with [`super::Pull::handle_crdr`].
    Crdr { pdest: i64 },
}

/// A request written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub request: Request,
    /// Bytes of the path (relative to the stream's URL) written at the
    /// start of the buffer; 0 if the buffer was too small (the request
    /// still stands in `request`).
    pub len: usize,
}

/// Writes into a slice; fails when it is full.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let to = self.buf.get_mut(self.at..end).ok_or(core::fmt::Error)?;
        to.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

impl Request {
    /// Writes the path relative to the stream's URL (`newRecords/123`);
    /// `values: false` asks for records without their values. `None` if
    /// `buf` is too small (48 bytes always suffice).
    pub fn write_path(&self, values: bool, buf: &mut [u8]) -> Option<usize> {
        let mut out = Cursor { buf, at: 0 };
        let query = if values { "" } else { "?values=0" };
        let written = match *self {
            Self::Page { after } => write!(out, "newRecords/{after}{query}"),
            Self::Newest { n } => write!(out, "newest/{}{query}", n.min(MAX_NEWEST)),
            Self::Crdr { pdest } => write!(out, "crdr/{pdest}"),
        };
        written.ok().map(|()| out.at)
    }
}
