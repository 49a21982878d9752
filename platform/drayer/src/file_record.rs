//! The `file` record (spec §10.3): `u32 LE header length` ‖ msgpack header
//! `{"enc": "gzip", "time": µs}` ‖ gzip data; the key is the path relative
//! to the imported directory, with `/` separators.

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Files larger than this are not imported (the original's limit).
pub const MAX_FILE: u64 = 50 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileRecordError {
    #[error("not a file record: {0}")]
    Malformed(&'static str),
    #[error("unsupported encoding {0:?} (only gzip)")]
    Encoding(String),
    #[error("the file is larger than {MAX_FILE} bytes")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A decoded file record.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord<'a> {
    /// Modification time in µs (the original wrote a float).
    pub time: f64,
    /// The gzip stream, as stored.
    pub gzip: &'a [u8],
}

/// Builds the value of a file record.
pub fn encode(contents: &[u8], mtime_micros: i64) -> Result<Vec<u8>, FileRecordError> {
    let mut header = Vec::new();
    header.push(0x82);
    header.extend_from_slice(&[0xa3, b'e', b'n', b'c', 0xa4, b'g', b'z', b'i', b'p']);
    header.extend_from_slice(&[0xa4, b't', b'i', b'm', b'e']);
    // As the original: a float64 of µs.
    header.push(0xcb);
    header.extend_from_slice(&(mtime_micros as f64).to_be_bytes());
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(contents)?;
    let data = gzip.finish()?;
    let mut value = Vec::with_capacity(4 + header.len() + data.len());
    value.extend_from_slice(&u32::try_from(header.len()).unwrap_or(0).to_le_bytes());
    value.extend_from_slice(&header);
    value.extend_from_slice(&data);
    Ok(value)
}

/// Splits a file record's value (header fields in any order; `time` int or
/// float).
pub fn decode(value: &[u8]) -> Result<FileRecord<'_>, FileRecordError> {
    let malformed = FileRecordError::Malformed;
    let len = value.get(..4).ok_or(malformed("short"))?;
    let len = u32::from_le_bytes(len.try_into().map_err(|_| malformed("short"))?) as usize;
    let end = len.checked_add(4).ok_or(malformed("header length"))?;
    let header = value.get(4..end).ok_or(malformed("header length"))?;
    let gzip = &value[end..];
    let mut rest = header;
    let fields = match rest.first() {
        Some(m) if m & 0xf0 == 0x80 => usize::from(m & 0x0f),
        _ => return Err(malformed("header is not a map")),
    };
    rest = &rest[1..];
    let mut time = 0.0;
    let mut enc = None;
    for _ in 0..fields {
        let name = read_str(&mut rest).ok_or(malformed("header key"))?;
        match name {
            b"enc" => {
                enc = Some(read_str(&mut rest).ok_or(malformed("enc"))?.to_vec());
            }
            b"time" => time = read_number(&mut rest).ok_or(malformed("time"))?,
            _ => return Err(malformed("unknown header field")),
        }
    }
    match enc.as_deref() {
        Some(b"gzip") => Ok(FileRecord { time, gzip }),
        Some(other) => Err(FileRecordError::Encoding(
            String::from_utf8_lossy(other).into_owned(),
        )),
        None => Err(malformed("no enc")),
    }
}

/// The file's contents, refusing to inflate past `limit` bytes.
pub fn inflate(record: &FileRecord<'_>, limit: u64) -> Result<Vec<u8>, FileRecordError> {
    let mut out = Vec::new();
    GzDecoder::new(record.gzip)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(FileRecordError::TooLarge);
    }
    Ok(out)
}

/// The record key for `file` under `root`: relative, `/`-separated.
pub fn key_for(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

fn read_str<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, skip) = match *buf.first()? {
        m @ 0xa0..=0xbf => (usize::from(m & 0x1f), 1),
        0xd9 | 0xc4 => (usize::from(*buf.get(1)?), 2),
        0xda | 0xc5 => (
            usize::from(u16::from_be_bytes([*buf.get(1)?, *buf.get(2)?])),
            3,
        ),
        _ => return None,
    };
    let s = buf.get(skip..skip + len)?;
    *buf = &buf[skip + len..];
    Some(s)
}

fn read_number(buf: &mut &[u8]) -> Option<f64> {
    let marker = *buf.first()?;
    let take = |n: usize| -> Option<u64> {
        let bytes = buf.get(1..1 + n)?;
        Some(bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    };
    let (value, used) = match marker {
        0x00..=0x7f => (f64::from(marker), 1),
        0xcb => (f64::from_bits(take(8)?), 9),
        0xca => (f64::from(f32::from_bits(take(4)? as u32)), 5),
        0xcc => (take(1)? as f64, 2),
        0xcd => (take(2)? as f64, 3),
        0xce => (take(4)? as f64, 5),
        0xcf => (take(8)? as f64, 9),
        0xd3 => (take(8)? as i64 as f64, 9),
        _ => return None,
    };
    *buf = &buf[used..];
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_file_record_decodes() {
        // Spec §13.3 R3 / §13.5.
        let hex = "1800000082a3656e63a4677a6970a474696d65cb431606ddfd5e77001f8b0800801f635c02ffb3c928c9cdb1b349ca4fa9b4cbc8b4d107336cf4c1a25c0067757fa51d000000";
        let value: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let record = decode(&value).unwrap();
        assert_eq!(record.time, 1_549_999_999_000_000.0);
        assert_eq!(
            inflate(&record, 1024).unwrap(),
            b"<html><body>hi</body></html>\n"
        );
        assert!(matches!(
            inflate(&record, 10),
            Err(FileRecordError::TooLarge)
        ));
        // Ours has the same header bytes for the same time.
        let ours = encode(b"<html><body>hi</body></html>\n", 1_549_999_999_000_000).unwrap();
        assert_eq!(ours[..28], value[..28]);
        let back = decode(&ours).unwrap();
        assert_eq!(
            inflate(&back, 1024).unwrap(),
            b"<html><body>hi</body></html>\n"
        );
    }

    #[test]
    fn only_plain_relative_keys_are_safe_to_write() {
        assert!(safe_relative("css/a.css"));
        for key in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b"] {
            assert!(!safe_relative(key), "{key:?}");
        }
    }

    #[test]
    fn keys_use_slashes() {
        let root = Path::new("/site");
        assert_eq!(
            key_for(root, Path::new("/site/css/a.css")).as_deref(),
            Some("css/a.css")
        );
        assert_eq!(key_for(root, Path::new("/elsewhere/a")), None);
    }
}

/// What [`import_dir`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Paths over [`MAX_FILE`] or not valid UTF-8.
    pub skipped: Vec<String>,
}

/// Imports every regular file under `dir` as a `file` record, skipping
/// files whose contents are already stored (the original rewrote every
/// file on every import: O17).
pub fn import_dir(
    stream: &mut crate::Stream,
    dir: &Path,
) -> Result<ImportReport, crate::StreamError> {
    let mut report = ImportReport::default();
    let mut pending = vec![dir.to_owned()];
    let io = |e: std::io::Error| crate::StreamError::from(FileRecordError::Io(e));
    while let Some(folder) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let Some(key) = key_for(dir, &path) else {
                report.skipped.push(path.display().to_string());
                continue;
            };
            let meta = entry.metadata().map_err(io)?;
            if meta.len() > MAX_FILE {
                report.skipped.push(key);
                continue;
            }
            let contents = std::fs::read(&path).map_err(io)?;
            let stored = stream.get(&key, "file")?;
            let same = stored.as_deref().and_then(|v| {
                let record = decode(v).ok()?;
                inflate(&record, MAX_FILE).ok()
            });
            match same {
                Some(old) if old == contents => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.updated += 1,
                None if stored.is_some() => report.updated += 1,
                None => report.added += 1,
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            let value = encode(&contents, mtime).map_err(crate::StreamError::from)?;
            stream.set(&key, "file", &value)?;
        }
    }
    Ok(report)
}

/// Whether a record key is safe to use as a relative path.
pub fn safe_relative(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
}

/// Writes every `file` record into `dir`, skipping files already equal
/// and keys that are not safe relative paths (records come from peers).
pub fn export_dir(stream: &crate::Stream, dir: &Path) -> Result<ImportReport, crate::StreamError> {
    let io = |e: std::io::Error| crate::StreamError::from(FileRecordError::Io(e));
    let mut report = ImportReport::default();
    for entry in stream.list(Some("file"))? {
        let Some(value) = entry.value else { continue };
        if !safe_relative(&entry.key) {
            report.skipped.push(entry.key);
            continue;
        }
        let contents = decode(&value)
            .and_then(|r| inflate(&r, MAX_FILE))
            .map_err(crate::StreamError::from)?;
        let path = dir.join(&entry.key);
        if std::fs::read(&path).is_ok_and(|old| old == contents) {
            report.unchanged += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &contents).map_err(io)?;
        report.added += 1;
    }
    Ok(report)
}
