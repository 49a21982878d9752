//! The HTTP sync API's client: a peer's stream as a pull [`Source`],
//! over reqwest (in the base crate: a mirror needs no server).

use std::sync::Arc;
use std::time::Duration;

use keyway_core::drayer::pull::Request;
use keyway_core::drayer::{Meta, VerifyingKey};
use tokio::sync::mpsc;

use crate::blocking;
use crate::sqlite::Body;
use crate::sync::Source;
use crate::wire;

/// Largest response the client reads (a page of large values).
pub const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// A peer's stream over HTTP, as a [`Source`].
#[derive(Debug)]
pub struct HttpSource {
    fetcher: Fetcher,
    /// Bytes of pages the read-ahead may hold before it waits.
    read_ahead_bytes: usize,
    ahead: Option<Ahead>,
}

/// Pages a read-ahead holds before waiting for the reader: enough that the
/// serving peer keeps working while this node verifies and applies.
const READ_AHEAD: usize = 2;

/// Bytes of pages downloaded ahead and not yet taken above which the
/// read-ahead starts no new download (default of
/// [`HttpSource::with_read_ahead`]). A page is up to [`MAX_RESPONSE`]: a
/// hostile peer sending only such pages gets one read ahead, not two
/// queued and a third on its way.
pub const READ_AHEAD_BYTES: usize = 64 * 1024 * 1024;

/// A read-ahead task and what it has queued.
#[derive(Debug)]
struct Ahead {
    /// Pages read ahead, in order: (after which time, the page, its bytes).
    pages: mpsc::Receiver<(i64, Result<Page, ClientError>, usize)>,
    /// Bytes of the pages in `pages`.
    queued: Arc<tokio::sync::watch::Sender<usize>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Ahead {
    /// A reader that stops reading ahead (or the pull ends) stops the
    /// download in progress too.
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

/// The sync client: deadlines on every request, and no redirects. No
/// deadline for a whole request: a 32 MiB page would need 4.5 Mbit/s to
/// beat any fixed one; the read timeout ends a stalled response, and
/// [`crate::sync::PullLimits::max_time`] a pull. A
/// redirect would send this node's requests somewhere neither its user
/// nor a discovery datagram's source named (discovery contacts only the
/// source: O9); a 3xx is an error like any other status.
fn client(connect: Duration, read: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .read_timeout(read)
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
    match blocking::run(move || decode(&bytes)).await {
        Ok(decoded) => decoded.map_err(|source| ClientError::Wire { url, source }),
        Err(blocking::Interrupted) => Err(ClientError::Interrupted { url }),
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
            read_ahead_bytes: READ_AHEAD_BYTES,
            ahead: None,
        }
    }

    /// Starts no download ahead while the pages read ahead and not yet
    /// taken hold `bytes` or more (default [`READ_AHEAD_BYTES`]; 0 reads
    /// one page ahead at most, and only once the one before is taken).
    #[must_use]
    pub fn with_read_ahead(mut self, bytes: usize) -> Self {
        self.read_ahead_bytes = bytes;
        self
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
    /// The path of `request` under the stream, as the pull machine writes
    /// it (the one spelling of the API's requests).
    fn path(&self, request: Request) -> String {
        let mut buf = [0u8; 64];
        let len = request.write_path(self.with_values, &mut buf).unwrap_or(0);
        String::from_utf8_lossy(buf.get(..len).unwrap_or(&[])).into_owned()
    }

    async fn page(&self, t: i64) -> Result<Page, ClientError> {
        self.sized_page(t).await.map(|(page, _)| page)
    }

    /// The page after `t`, and the bytes of the response it came in.
    async fn sized_page(&self, t: i64) -> Result<(Page, usize), ClientError> {
        let path = self.path(Request::Page { after: t });
        let Some(bytes) = self.fetch(&path).await? else {
            return Err(ClientError::Status {
                url: format!("{}{path}", self.base),
                status: 404,
            });
        };
        let stream = self.stream;
        let size = bytes.len();
        let mut records = decode_off_thread(format!("{}{path}", self.base), bytes, move |b| {
            wire::decode_records(b, &stream)
        })
        .await?;
        if !self.with_values {
            // An original server ignores `values=0`: drop them here.
            records.iter_mut().for_each(|(_, b)| b.value = None);
        }
        Ok((records, size))
    }
}

impl Source for HttpSource {
    type Error = ClientError;

    async fn modified_after(&mut self, t: i64) -> Result<Page, ClientError> {
        if let Some(ahead) = &mut self.ahead {
            match ahead.pages.recv().await {
                Some((at, page, size)) if at == t => {
                    ahead.queued.send_modify(|q| *q = q.saturating_sub(size));
                    return page;
                }
                // Not the page asked for (or the read-ahead ended): stop
                // reading ahead and ask directly.
                _ => self.ahead = None,
            }
        }
        self.fetcher.page(t).await
    }

    async fn newest(&mut self, n: usize) -> Result<Option<Page>, ClientError> {
        let path = self.fetcher.path(Request::Newest { n });
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
            // An older server ignores `values=0`: drop them here.
            records.iter_mut().for_each(|(_, b)| b.value = None);
        }
        Ok(Some(records))
    }

    /// Reads ahead from `t`: each page's last record says where the next
    /// starts, so a background task fetches page after page until an
    /// empty page, an error, or `max_bytes` downloaded (what is left of
    /// the pull's byte budget: pages past it would be thrown away). It
    /// holds at most two pages (`READ_AHEAD`), and starts a download only
    /// while those it holds are under the read-ahead's bytes. A reader
    /// that asks for something else drops it.
    fn prefetch(&mut self, t: i64, max_bytes: u64) {
        if self.ahead.is_some() {
            return;
        }
        let (tx, pages) = mpsc::channel(READ_AHEAD);
        let queued = Arc::new(tokio::sync::watch::Sender::new(0usize));
        let fetcher = self.fetcher.clone();
        let room = self.read_ahead_bytes;
        let held = queued.clone();
        let task = tokio::spawn(async move {
            let mut t = t;
            let mut downloaded = 0u64;
            let mut queued = held.subscribe();
            loop {
                let may_go = tokio::select! {
                    () = tx.closed() => false,
                    waited = queued.wait_for(|q| *q == 0 || *q < room) => waited.is_ok(),
                };
                if !may_go {
                    return;
                }
                let (page, size) = match fetcher.sized_page(t).await {
                    Ok((page, size)) => (Ok(page), size),
                    Err(e) => (Err(e), 0),
                };
                downloaded = downloaded.saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
                // As the reader: on until an empty page (a page cut by
                // size is short but not the last).
                let next = match &page {
                    Ok(records) => records.last().map(|(m, _)| m.modified),
                    Err(_) => None,
                };
                held.send_modify(|q| *q = q.saturating_add(size));
                if tx.send((t, page, size)).await.is_err() {
                    return;
                }
                match next {
                    Some(n) if downloaded < max_bytes => t = n,
                    _ => return,
                }
            }
        })
        .abort_handle();
        self.ahead = Some(Ahead {
            pages,
            queued,
            task,
        });
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, ClientError> {
        let path = self.fetcher.path(Request::Crdr { pdest });
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
    fn keys_are_quoted_as_pythons_quote_plus() {
        assert_eq!(quote_plus("A+/="), "A%2B%2F%3D");
    }
}
