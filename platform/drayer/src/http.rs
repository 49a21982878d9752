//! The HTTP sync API (spec §8), server and client.
//!
//! Routes are `/<PK>/<operation>/<rest…>` with the public key
//! percent-encoded inside its segment (`%2F` stays in the segment) and
//! read leniently (padded or not, standard or URL-safe). Unknown streams
//! and an empty `crdr` are 404, not the original's 500 (O14). `newRecords`
//! pages at [`PAGE`] records (O4). Reads never modify a stream (O15).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyway_core::drayer::{Meta, VerifyingKey};

use crate::file_record;
use crate::sqlite::{Body, Listing};
use crate::stream::{Stream, StreamError, parse_public_key};
use crate::sync::{PAGE, Source};
use crate::wire;

/// Largest response the client reads (a page of large values).
pub const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// Most value bytes in one `newRecords` page.
pub const PAGE_BYTES: usize = 32 * 1024 * 1024;

/// Records per JSON listing (the original's limit).
const LIST_LIMIT: usize = 250;

type Streams = Arc<HashMap<[u8; 32], Arc<Mutex<Stream>>>>;

/// The API over `streams`, keyed by their public keys.
pub fn router(streams: Vec<Stream>) -> Router {
    let map: HashMap<[u8; 32], Arc<Mutex<Stream>>> = streams
        .into_iter()
        .map(|s| (*s.public_key().as_bytes(), Arc::new(Mutex::new(s))))
        .collect();
    Router::new()
        .route("/", get(|| async { "Hello World!" }))
        .route("/{pk}/newRecords/{t}", get(new_records))
        .route("/{pk}/crdr/{t}", get(crdr))
        .route("/{pk}/newest/{n}", get(newest))
        .route("/{pk}/newestRecordsJSON/{kind}", get(newest_json))
        .route("/{pk}/listRecordsJSON/{kind}", get(list_json))
        .route("/{pk}/webAccess/{*path}", get(web_access))
        .with_state(Arc::new(map))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "drayer request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

/// Runs `f` on the stream named by `pk`, off the async threads.
async fn with_stream<T: Send + 'static>(
    streams: &Streams,
    pk: &str,
    f: impl FnOnce(&Stream) -> Result<T, StreamError> + Send + 'static,
) -> Result<T, Response> {
    let key = parse_public_key(pk).map_err(|_| not_found("no such stream"))?;
    let stream = streams
        .get(key.as_bytes())
        .cloned()
        .ok_or_else(|| not_found("no such stream"))?;
    tokio::task::spawn_blocking(move || {
        let stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        f(&stream)
    })
    .await
    .map_err(server_error)?
    .map_err(server_error)
}

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

#[derive(serde::Deserialize)]
struct Values {
    /// `values=0`: leave values out (metadata-only mirrors, spec §9).
    values: Option<u8>,
}

async fn new_records(
    State(streams): State<Streams>,
    Path((pk, t)): Path<(String, i64)>,
    Query(q): Query<Values>,
) -> Response {
    let with_values = q.values != Some(0);
    match with_stream(&streams, &pk, move |s| {
        let mut records = s.modified_after(t, PAGE)?;
        if !with_values {
            records.iter_mut().for_each(|(_, b)| b.value = None);
        }
        // At most PAGE_BYTES of values (always one record): a page of
        // large files must not be gigabytes. Keyway clients ask again until
        // a page is empty; an original client stops at a short page and
        // gets the rest at its next sync.
        let mut bytes = 0usize;
        let keep = records
            .iter()
            .take_while(|(_, b)| {
                let before = bytes;
                bytes += b.value.as_ref().map_or(0, Vec::len);
                before == 0 || bytes <= PAGE_BYTES
            })
            .count();
        records.truncate(keep.max(1).min(records.len()));
        Ok(wire::encode_records(&records, s.public_key()))
    })
    .await
    {
        Ok(bytes) => octets(bytes),
        Err(response) => response,
    }
}

async fn crdr(State(streams): State<Streams>, Path((pk, t)): Path<(String, i64)>) -> Response {
    match with_stream(&streams, &pk, move |s| {
        Ok(s.crdr(t)?.map(|(meta, body)| {
            let mut out = Vec::new();
            wire::encode_record(&mut out, &meta, &body, s.public_key());
            out
        }))
    })
    .await
    {
        Ok(Some(bytes)) => octets(bytes),
        Ok(None) => not_found("nothing to repair"),
        Err(response) => response,
    }
}

/// Most records `newest` returns at once.
pub const MAX_NEWEST: usize = 10_000;

/// Keyway's addition: the `n` most recently modified records, oldest
/// first, for partial mirrors (spec D8). The original has no equivalent.
async fn newest(State(streams): State<Streams>, Path((pk, n)): Path<(String, usize)>) -> Response {
    let n = n.min(MAX_NEWEST);
    match with_stream(&streams, &pk, move |s| {
        Ok(wire::encode_records(&s.newest_records(n)?, s.public_key()))
    })
    .await
    {
        Ok(bytes) => octets(bytes),
        Err(response) => response,
    }
}

#[derive(serde::Deserialize)]
struct Bounds {
    after: Option<i64>,
    before: Option<i64>,
}

/// A JSON string as Python's `json.dumps` writes it (ASCII only).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// `[[key, n], …]` with Python's default separators.
fn json_pairs(pairs: &[(String, i64)]) -> Response {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, n)| format!("[{}, {n}]", json_string(k)))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("[{}]", items.join(", ")),
    )
        .into_response()
}

/// Up to 250 `[key, modified]`, by id descending, ids strictly between
/// `after` and `before` (the README says `[key, id]`; the code sent the
/// modified time, and so do we).
async fn newest_json(
    State(streams): State<Streams>,
    Path((pk, kind)): Path<(String, String)>,
    Query(b): Query<Bounds>,
) -> Response {
    let bounds = (b.after.unwrap_or(0), b.before.unwrap_or(1 << 62));
    listing(&streams, &pk, kind, bounds, Listing::NewestId).await
}

/// Up to 250 `[key, id]`, by modified descending, ids strictly between
/// `after` and `before`.
async fn list_json(
    State(streams): State<Streams>,
    Path((pk, kind)): Path<(String, String)>,
    Query(b): Query<Bounds>,
) -> Response {
    let bounds = (b.after.unwrap_or(0), b.before.unwrap_or(1 << 60));
    listing(&streams, &pk, kind, bounds, Listing::NewestModified).await
}

/// Either JSON listing: the second column is the modified time when
/// ordered by id, and the id when ordered by modified time.
async fn listing(
    streams: &Streams,
    pk: &str,
    kind: String,
    bounds: (i64, i64),
    order: Listing,
) -> Response {
    match with_stream(streams, pk, move |s| {
        s.listing(&kind, bounds, order, LIST_LIMIT)
    })
    .await
    {
        Ok(rows) => {
            let pairs: Vec<(String, i64)> = rows
                .into_iter()
                .map(|(key, id, modified)| match order {
                    Listing::NewestId => (key, modified),
                    Listing::NewestModified => (key, id),
                })
                .collect();
            json_pairs(&pairs)
        }
        Err(response) => response,
    }
}

/// A `file` record: gzip passed through to clients that accept it,
/// inflated for the others; the Content-Type guessed from the name (the
/// original always said gzip and text/html: O16).
async fn web_access(
    State(streams): State<Streams>,
    Path((pk, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let key = path.clone();
    let value = match with_stream(&streams, &pk, move |s| s.get(&key, "file")).await {
        Ok(Some(value)) => value,
        Ok(None) => return not_found("no such file"),
        Err(response) => return response,
    };
    let Ok(record) = file_record::decode(&value) else {
        return server_error("malformed file record");
    };
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let content_type = HeaderValue::from_str(mime.as_ref())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let gzip_ok = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.trim().split(';').next() == Some("gzip"));
    let mut response = if gzip_ok {
        let mut r = Response::new(HttpBody::from(record.gzip.to_vec()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        match file_record::inflate(&record, file_record::MAX_FILE) {
            Ok(bytes) => Response::new(HttpBody::from(bytes)),
            Err(e) => return server_error(e),
        }
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// A peer's stream over HTTP, as a [`Source`].
#[derive(Debug)]
pub struct HttpSource {
    fetcher: Fetcher,
    /// Pages read ahead, in order: (after which time, the page).
    ahead: Option<tokio::sync::mpsc::Receiver<(i64, Result<Page, ClientError>)>>,
}

/// Pages a read-ahead holds before waiting for the reader: enough that the
/// serving peer keeps working while this node verifies and applies.
const READ_AHEAD: usize = 2;

type Page = Vec<(Meta, Body)>;

/// What a request needs; cloned into prefetching tasks.
#[derive(Debug, Clone)]
struct Fetcher {
    /// `None` if the client could not be built (reported per request).
    client: Option<reqwest::Client>,
    /// `<url>/<quote_plus(base64 pk)>/`
    base: String,
    stream: VerifyingKey,
    with_values: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response over {MAX_RESPONSE} bytes")]
    TooLarge { url: String },
    #[error("{url}: {source}")]
    Wire {
        url: String,
        source: wire::WireError,
    },
    #[error("{url}: the HTTP client could not be set up")]
    NoClient { url: String },
    #[error("{url}: the runtime shut down")]
    Interrupted { url: String },
}

/// How long a connection to a peer may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may go without a byte arriving.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The sync client: deadlines on every request, and no redirects. A
/// redirect would send this node's requests somewhere neither its user
/// nor a discovery datagram's source named (discovery contacts only the
/// source: O9); a 3xx is an error like any other status.
fn client(connect: Duration, read: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .read_timeout(read)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .ok()
}

/// Decodes a response on the blocking pool: a page may be hundreds of
/// megabytes, and a runtime thread has other work.
async fn decode_off_thread<T: Send + 'static>(
    url: String,
    bytes: Vec<u8>,
    decode: impl FnOnce(&[u8]) -> Result<T, wire::WireError> + Send + 'static,
) -> Result<T, ClientError> {
    match tokio::task::spawn_blocking(move || decode(&bytes)).await {
        Ok(decoded) => decoded.map_err(|source| ClientError::Wire { url, source }),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(ClientError::Interrupted { url }),
        },
    }
}

/// Percent-encodes base64 as Python's `quote_plus` does.
fn quote_plus(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

impl HttpSource {
    /// The stream `stream` at the server `url` (e.g. `http://host:33125/`).
    pub fn new(url: &str, stream: VerifyingKey) -> Self {
        Self {
            fetcher: Fetcher::new(url, stream),
            ahead: None,
        }
    }

    /// Waits at most `connect` for a connection and `read` between two
    /// reads of a response (defaults [`CONNECT_TIMEOUT`], [`READ_TIMEOUT`]).
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.fetcher.client = client(connect, read);
        self
    }

    /// Ask for records without their values (metadata-only mirrors).
    #[must_use]
    pub fn without_values(mut self) -> Self {
        self.fetcher.with_values = false;
        self
    }
}

impl Fetcher {
    fn new(url: &str, stream: VerifyingKey) -> Self {
        let b64 = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            stream.as_bytes(),
        );
        let url = url.trim_end_matches('/');
        Self {
            client: client(CONNECT_TIMEOUT, READ_TIMEOUT),
            base: format!("{url}/{}/", quote_plus(&b64)),
            stream,
            with_values: true,
        }
    }

    /// GET `path` under the stream; `None` on 404.
    async fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let url = format!("{}{path}", self.base);
        let http = |source| ClientError::Http {
            url: url.clone(),
            source,
        };
        let Some(client) = &self.client else {
            return Err(ClientError::NoClient { url });
        };
        let mut response = client.get(&url).send().await.map_err(http)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(ClientError::Status { url, status }),
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(ClientError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

impl Fetcher {
    async fn page(&self, t: i64) -> Result<Page, ClientError> {
        let query = if self.with_values { "" } else { "?values=0" };
        let path = format!("newRecords/{t}{query}");
        let Some(bytes) = self.fetch(&path).await? else {
            return Err(ClientError::Status {
                url: format!("{}{path}", self.base),
                status: 404,
            });
        };
        let stream = self.stream;
        let mut records = decode_off_thread(format!("{}{path}", self.base), bytes, move |b| {
            wire::decode_records(b, &stream)
        })
        .await?;
        if !self.with_values {
            // An original server ignores `values=0`: drop them here.
            records.iter_mut().for_each(|(_, b)| b.value = None);
        }
        Ok(records)
    }
}

impl Source for HttpSource {
    type Error = ClientError;

    async fn modified_after(&mut self, t: i64) -> Result<Page, ClientError> {
        if let Some(ahead) = &mut self.ahead {
            match ahead.recv().await {
                Some((at, page)) if at == t => return page,
                // Not the page asked for (or the read-ahead ended): stop
                // reading ahead and ask directly.
                _ => self.ahead = None,
            }
        }
        self.fetcher.page(t).await
    }

    async fn newest(&mut self, n: usize) -> Result<Option<Page>, ClientError> {
        let path = format!("newest/{}", n.min(MAX_NEWEST));
        let Some(bytes) = self.fetcher.fetch(&path).await? else {
            return Ok(None);
        };
        let stream = self.fetcher.stream;
        let mut records =
            decode_off_thread(format!("{}{path}", self.fetcher.base), bytes, move |b| {
                wire::decode_records(b, &stream)
            })
            .await?;
        if !self.fetcher.with_values {
            records.iter_mut().for_each(|(_, b)| b.value = None);
        }
        Ok(Some(records))
    }

    /// Reads ahead from `t`: each page's last record says where the next
    /// starts, so a background task fetches page after page (at most
    /// two pages waiting) until an empty page or an error. A reader
    /// that asks for something else drops it.
    fn prefetch(&mut self, t: i64) {
        if self.ahead.is_some() {
            return;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let fetcher = self.fetcher.clone();
        tokio::spawn(async move {
            let mut t = t;
            loop {
                let page = fetcher.page(t).await;
                // As the reader: on until an empty page (a page cut by
                // size is short but not the last).
                let next = match &page {
                    Ok(records) => records.last().map(|(m, _)| m.modified),
                    Err(_) => None,
                };
                if tx.send((t, page)).await.is_err() {
                    return;
                }
                match next {
                    Some(n) => t = n,
                    None => return,
                }
            }
        });
        self.ahead = Some(rx);
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, ClientError> {
        let path = format!("crdr/{pdest}");
        let Some(bytes) = self.fetcher.fetch(&path).await? else {
            return Ok(None);
        };
        let stream = self.fetcher.stream;
        let url = format!("{}{path}", self.fetcher.base);
        let meta = decode_off_thread(url, bytes, move |b| {
            wire::decode_record(b, &stream).map(|(meta, _)| meta)
        })
        .await?;
        Ok(Some(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pythons() {
        assert_eq!(json_string("a\"b"), "\"a\\\"b\"");
        assert_eq!(json_string("Grüß😀"), "\"Gr\\u00fc\\u00df\\ud83d\\ude00\"");
        assert_eq!(quote_plus("A+/="), "A%2B%2F%3D");
    }
}
