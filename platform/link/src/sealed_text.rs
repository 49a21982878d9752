//! The text layout shared by the identity file and other sealed secret
//! files: `name=value` lines in a fixed order after a first line naming
//! the format and its version. Files are parsed strictly (every line, in
//! order, nothing else); the header that the AEAD authenticates is rebuilt
//! from the values read, so any change to a value fails to open.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Sealed files are small; a larger file is not one of ours and is not read
/// whole into memory.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Why a sealed file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file system refused.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file exists; secrets are never overwritten.
    #[error("{} already exists (a secret file is never overwritten)", .path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file is not in the expected format.
    #[error("{} is not a {what}: {why}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The format expected.
        what: &'static str,
        /// The first thing that did not fit.
        why: String,
    },
}

/// Reads a file of at most [`MAX_FILE_LEN`] bytes as UTF-8.
pub(crate) fn read(path: &Path, what: &'static str) -> Result<String, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => FileError::Malformed {
                path: path.to_owned(),
                what,
                why: "not text".into(),
            },
            _ => io(e),
        })?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(FileError::Malformed {
            path: path.to_owned(),
            what,
            why: format!("longer than {MAX_FILE_LEN} bytes"),
        });
    }
    Ok(text)
}

/// Creates `path` with mode 0600 from its first byte (never chmod-ed
/// afterwards, so no other user can open it in between) and writes `text`.
pub(crate) fn create_private(path: &Path, text: &str) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => FileError::Exists {
                path: path.to_owned(),
            },
            _ => io(e),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// A strict reader of `name=value` lines.
pub(crate) struct Lines<'a> {
    lines: std::str::Lines<'a>,
    path: &'a Path,
    what: &'static str,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str, path: &'a Path, what: &'static str) -> Self {
        Self {
            lines: text.lines(),
            path,
            what,
        }
    }

    pub(crate) fn malformed(&self, why: impl Into<String>) -> FileError {
        FileError::Malformed {
            path: self.path.to_owned(),
            what: self.what,
            why: why.into(),
        }
    }

    /// The next line, which must be exactly `line`.
    pub(crate) fn expect(&mut self, line: &str) -> Result<(), FileError> {
        match self.lines.next() {
            Some(l) if l == line => Ok(()),
            Some(l) => Err(self.malformed(format!("expected {line:?}, found {l:?}"))),
            None => Err(self.malformed(format!("expected {line:?}, found the end"))),
        }
    }

    /// The value of the next line, which must be `name=…`.
    pub(crate) fn value(&mut self, name: &str) -> Result<&'a str, FileError> {
        let line = self
            .lines
            .next()
            .ok_or_else(|| self.malformed(format!("no {name}= line")))?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .ok_or_else(|| self.malformed(format!("expected {name}=…, found {line:?}")))
    }

    /// The next value as a decimal `u32`.
    pub(crate) fn number(&mut self, name: &str) -> Result<u32, FileError> {
        let text = self.value(name)?;
        // `parse` would take a leading '+'; the canonical form has none.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.malformed(format!("{name} is not a number")));
        }
        text.parse()
            .map_err(|_| self.malformed(format!("{name} is too large")))
    }

    /// The next value as exactly `N` bytes of lowercase hex.
    pub(crate) fn hex<const N: usize>(&mut self, name: &str) -> Result<[u8; N], FileError> {
        let text = self.value(name)?;
        let mut out = [0u8; N];
        if text.len() != 2 * N {
            return Err(self.malformed(format!("{name} must be {N} bytes")));
        }
        base16ct::lower::decode(text, &mut out)
            .map_err(|_| self.malformed(format!("{name} is not lowercase hex")))?;
        Ok(out)
    }

    /// The next value as lowercase hex of any length up to `max` bytes.
    pub(crate) fn hex_vec(&mut self, name: &str, max: usize) -> Result<Vec<u8>, FileError> {
        let text = self.value(name)?;
        if text.len() > 2 * max {
            return Err(self.malformed(format!("{name} is longer than {max} bytes")));
        }
        base16ct::lower::decode_vec(text)
            .map_err(|_| self.malformed(format!("{name} is not lowercase hex")))
    }

    /// Nothing may follow the last line.
    pub(crate) fn end(&mut self) -> Result<(), FileError> {
        match self.lines.next() {
            None => Ok(()),
            Some(l) => Err(self.malformed(format!("unexpected line {l:?}"))),
        }
    }
}
