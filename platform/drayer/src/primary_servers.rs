//! The `primaryServers` record (key `primaryServers`, type `drayer`, spec
//! §10.2): a msgpack array of `{type, url[, udp: [host, port]]}` naming the
//! servers every mirror should sync from. Being a record, it travels with
//! the stream.

use crate::stream::{Stream, StreamError};
use crate::wire::{Reader, WireError, write_int};

pub const KEY: &str = "primaryServers";
pub const KIND: &str = "drayer";

/// One entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryServer {
    /// `http` is the only kind in use.
    pub kind: String,
    /// Base URL, ending in `/`.
    pub url: String,
    /// Where to send DrayerUDP announcements by unicast.
    pub udp: Option<(String, u16)>,
}

/// A str as msgpack ≥ 1.0 writes it (the record is packed with bin types).
fn write_str(out: &mut Vec<u8>, text: &str) {
    let _ = rmp::encode::write_str(out, text);
}

pub fn encode(servers: &[PrimaryServer]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmp::encode::write_array_len(&mut out, u32::try_from(servers.len()).unwrap_or(0));
    for server in servers {
        let _ = rmp::encode::write_map_len(&mut out, if server.udp.is_some() { 3 } else { 2 });
        write_str(&mut out, "type");
        write_str(&mut out, &server.kind);
        write_str(&mut out, "url");
        write_str(&mut out, &server.url);
        if let Some((host, port)) = &server.udp {
            write_str(&mut out, "udp");
            let _ = rmp::encode::write_array_len(&mut out, 2);
            write_str(&mut out, host);
            write_int(&mut out, i64::from(*port));
        }
    }
    out
}

pub fn decode(value: &[u8]) -> Result<Vec<PrimaryServer>, WireError> {
    let mut reader = Reader { buf: value };
    let count = reader.array_len()?;
    let mut servers = Vec::new();
    for _ in 0..count.min(value.len()) {
        let fields = reader.map_len()?;
        let (mut kind, mut url, mut udp) = (None, None, None);
        for _ in 0..fields.min(value.len()) {
            match reader.bytes("key name")? {
                b"type" => kind = Some(text(reader.bytes("type")?, "type")?),
                b"url" => url = Some(text(reader.bytes("url")?, "url")?),
                b"udp" => {
                    if reader.array_len()? != 2 {
                        return Err(WireError::Type("udp"));
                    }
                    let host = text(reader.bytes("udp host")?, "udp host")?;
                    let port = u16::try_from(reader.int("udp port")?)
                        .map_err(|_| WireError::Range("udp port"))?;
                    udp = Some((host, port));
                }
                _ => reader.skip(0)?,
            }
        }
        servers.push(PrimaryServer {
            kind: kind.ok_or(WireError::Missing("type"))?,
            url: url.ok_or(WireError::Missing("url"))?,
            udp,
        });
    }
    reader.end()?;
    Ok(servers)
}

fn text(bytes: &[u8], field: &'static str) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Utf8(field))
}

impl Stream {
    /// The stream's primary servers (none if the record is absent).
    pub fn primary_servers(&self) -> Result<Vec<PrimaryServer>, StreamError> {
        match self.get(KEY, KIND)? {
            Some(value) => decode(&value).map_err(|e| StreamError::Record(e.to_string())),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces the stream's primary servers.
    pub fn set_primary_servers(&mut self, servers: &[PrimaryServer]) -> Result<(), StreamError> {
        self.set(KEY, KIND, &encode(servers)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        base16ct::mixed::decode_vec(text).unwrap()
    }

    #[test]
    fn the_clocktower_and_golden_values() {
        // clocktower.drayer (2019): with a udp entry.
        let clocktower = unhex(
            "9183a474797065a468747470a375726cbc687474703a2f2f3138352e3139382e32362e3233303a33333132352fa375647092ae3138352e3139382e32362e323330cd3d6b",
        );
        let servers = decode(&clocktower).unwrap();
        assert_eq!(
            servers,
            [PrimaryServer {
                kind: "http".into(),
                url: "http://185.198.26.230:33125/".into(),
                udp: Some(("185.198.26.230".into(), 15723)),
            }]
        );
        assert_eq!(encode(&servers), clocktower);
        // Golden scenario R4.
        let golden = unhex(
            "9182a474797065a468747470a375726cb7687474703a2f2f3132372e302e302e313a33333132352f",
        );
        let servers = decode(&golden).unwrap();
        assert_eq!(servers[0].url, "http://127.0.0.1:33125/");
        assert_eq!(encode(&servers), golden);
        assert!(decode(&golden[..golden.len() - 1]).is_err());
    }
}
