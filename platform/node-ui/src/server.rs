//! The HTTP shell: a loopback listener that serves the page and hands
//! WebSocket upgrades to [`crate::session`]. It only moves bytes; what is
//! accepted is decided in [`crate::origin`], [`crate::pairing`] and
//! [`crate::channel`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::channel::MAX_FRAME_LEN;
use crate::origin::{NotLoopback, allowed_hosts, check_bind, host_allowed, origin_allowed};
use crate::session::Deadlines;
use crate::status::StatusSource;
use crate::token::{PairingToken, TokenSlot};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const UI_JS: &str = include_str!("../assets/ui.js");
const UI_CSS: &str = include_str!("../assets/ui.css");

/// HTTP connections open at once (the page, its script and style, the WebSocket
/// upgrade; a browser opens about six per host). More are closed as accepted.
const MAX_CONNECTIONS: usize = 16;
/// WebSocket sessions open at once, paired or still pairing; more get 503.
pub const MAX_SESSIONS: usize = 4;
/// A request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP connection (before any upgrade) lives at most this long.
const HTTP_LIFETIME: Duration = Duration::from_secs(60);

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is not loopback.
    #[error(transparent)]
    NotLoopback(#[from] NotLoopback),
    /// The listener could not be bound.
    #[error("cannot listen for the UI on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No randomness for the pairing token.
    #[error("no randomness for the pairing token: {0}")]
    Random(getrandom::Error),
}

/// What the listener's tasks share.
pub(crate) struct Shared {
    pub(crate) local: SocketAddr,
    pub(crate) slot: Mutex<TokenSlot>,
    pub(crate) source: Box<dyn StatusSource>,
    pub(crate) sessions: Arc<Semaphore>,
    pub(crate) closed: watch::Sender<bool>,
    pub(crate) deadlines: Deadlines,
}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// The running UI. Dropping it stops the listener and closes every session.
#[derive(Debug)]
pub struct UiHandle {
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl UiHandle {
    /// The address the UI listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// A new one-time pairing URL; any unused earlier one stops working.
    pub fn new_pairing_url(&self) -> Result<String, ServeError> {
        let token = PairingToken::generate().map_err(ServeError::Random)?;
        let url = pairing_url(self.shared.local, &token);
        lock(&self.shared.slot).replace(token);
        Ok(url)
    }

    /// Stops the listener and closes every session.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for UiHandle {
    fn drop(&mut self) {
        self.shared.closed.send_replace(true);
        self.accept.abort();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `http://ADDR/#pair=TOKEN`: the token in the fragment, which the browser
/// keeps to itself (no server log, no `Referer` carries it).
pub fn pairing_url(local: SocketAddr, token: &PairingToken) -> String {
    format!("http://{local}/#pair={}", token.encode())
}

/// Starts the UI on `addr` (loopback only; port 0 picks one) with the
/// node's status from `source`. Returns the one-time pairing URL to print
/// (`ui=<url>`) and the handle that keeps the UI running.
pub async fn serve<S: StatusSource>(
    addr: SocketAddr,
    source: S,
) -> Result<(String, UiHandle), ServeError> {
    serve_with_deadlines(addr, source, Deadlines::default()).await
}

/// [`serve`] with other session deadlines (tests use short ones).
pub async fn serve_with_deadlines<S: StatusSource>(
    addr: SocketAddr,
    source: S,
    deadlines: Deadlines,
) -> Result<(String, UiHandle), ServeError> {
    check_bind(addr)?;
    let token = PairingToken::generate().map_err(ServeError::Random)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let shared = Arc::new(Shared {
        local,
        slot: Mutex::new(TokenSlot::new(token.clone())),
        source: Box::new(source),
        sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        closed: watch::Sender::new(false),
        deadlines,
    });
    let accept = tokio::spawn(accept_loop(listener, router(shared.clone())));
    Ok((pairing_url(local, &token), UiHandle { shared, accept }))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui.js", get(script))
        .route("/ui.css", get(style))
        .route("/ws", get(websocket))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

async fn accept_loop(listener: TcpListener, router: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Owned here, so aborting this task (UiHandle's drop) ends them too.
    let mut tasks = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::debug!(error = %e, "UI accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("UI connection refused: too many open");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            // An upgraded connection leaves this future at the upgrade; its
            // WebSocket then runs on its own deadlines (crate::session).
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            match tokio::time::timeout(HTTP_LIFETIME, connection).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "UI connection ended"),
                Err(_) => tracing::debug!("UI connection closed: lifetime over"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// Refuses a request whose `Host` does not name this listener (DNS
/// rebinding), and adds the headers every answer carries.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, shared.local) {
        return (
            StatusCode::FORBIDDEN,
            "unknown Host: this UI answers only to its loopback address",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The page loads only its own script and style and talks only to its own
    // WebSocket: no inline code, no other origin, no framing.
    let ws_sources = allowed_hosts(shared.local)
        .iter()
        .map(|h| format!("ws://{h}"))
        .collect::<Vec<_>>()
        .join(" ");
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {ws_sources}; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    for (name, value) in [
        ("content-security-policy", csp.as_str()),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", UI_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", UI_CSS)
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !origin_allowed(origin, shared.local) {
        return (
            StatusCode::FORBIDDEN,
            "foreign Origin: the UI's WebSocket serves its own page only",
        )
            .into_response();
    }
    let Ok(permit) = shared.sessions.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many UI sessions").into_response();
    };
    upgrade
        .max_message_size(MAX_FRAME_LEN)
        .max_frame_size(MAX_FRAME_LEN)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            crate::session::run(socket, shared).await;
        })
}
