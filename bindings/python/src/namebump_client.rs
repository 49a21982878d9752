//! The namebump client for Python: Keyway's async client, awaited from
//! asyncio through pyo3-async-runtimes (one tokio runtime per process).

use std::sync::Arc;
use std::time::Duration;

use keyway_core::namebump::freshness::MAX_REQUEST_TTL;
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{Behavior, Client, ClientConfig, ClientError, Clock, ErrorKind};
use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bridge::spawn;
use crate::seconds::{clock_reading, optional_span, read_clock};

/// The longest reply timeout and retry pause a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The most attempts a request may make.
const MAX_ATTEMPTS: i64 = 100;

create_exception!(
    _native,
    Refused,
    PyException,
    "The server refused a request: args are (kind, message), kind one of rejected_at_quota, would_bump, not_owner, clock_skew, server_error, bad_reply."
);

/// A Python clock object (anything with `.time()`), read when a request is
/// signed.
struct PyClock(Py<PyAny>);

impl PyClock {
    /// Reads the clock now, from Python: a clock that fails or returns
    /// NaN, an infinity or a negative time is a `ValueError` before any
    /// request is made.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        read_clock("the clock's time()", self.0.bind(py).call_method0("time")).map(drop)
    }
}

impl Clock for PyClock {
    fn now(&self) -> f64 {
        crate::bridge::with_python(|py| {
            self.0
                .call_method0(py, "time")
                .and_then(|t| t.extract::<f64>(py))
                .and_then(|t| clock_reading("time()", t))
                // A clock that fails later than `check` is reported by
                // the request it spoils (the server refuses a time of 0),
                // not by a panic here; never a NaN on the wire, which the
                // reference server would accept as fresh (spec bug 25).
                .unwrap_or(0.0)
        })
        // The interpreter is exiting: nobody waits for this request.
        .unwrap_or(0.0)
    }
}

/// The exception of each error kind (the one classification, issue 13):
/// `Refused`'s first argument is the kind's word, as the CLI prints it.
fn to_py(e: ClientError) -> PyErr {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Network => PyConnectionError::new_err(e.to_string()),
        ErrorKind::InvalidInput => PyValueError::new_err(e.to_string()),
        kind => Refused::new_err((kind.as_str(), e.to_string())),
    }
}

fn keypair(secret: &[u8]) -> PyResult<Keypair> {
    Keypair::from_secret_bytes(secret)
        .map_err(|e| PyValueError::new_err(format!("not a secp256k1 secret key: {e}")))
}

/// A ttl in seconds as the servers accept it, `(0, 60]`; `ValueError`
/// otherwise (NaN and infinities included).
fn request_ttl(ttl: Option<f64>) -> PyResult<Option<f64>> {
    match ttl {
        Some(t) if !(t > 0.0 && t <= MAX_REQUEST_TTL) => Err(PyValueError::new_err(format!(
            "ttl must be a number of seconds in (0, {MAX_REQUEST_TTL}]; got {t}"
        ))),
        _ => Ok(ttl),
    }
}

/// A connected client of one server.
#[pyclass(module = "keyway._native", frozen)]
struct NamebumpClient {
    client: Client,
    clock: Option<Arc<PyClock>>,
}

impl NamebumpClient {
    /// Checks what a request is about to be signed with.
    fn check(&self, py: Python<'_>, ttl: Option<f64>) -> PyResult<Option<f64>> {
        if let Some(clock) = &self.clock {
            clock.check(py)?;
        }
        request_ttl(ttl)
    }
}

impl std::fmt::Debug for NamebumpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

/// Resolves `host:port` and returns a client (awaitable). `timeout`: how
/// long one attempt waits for a reply; `attempts`: how many are made;
/// `retry_pause`: the wait between them (None: 2 s, 3, 0.5 s). NaN,
/// infinite or negative seconds, and attempts outside 1..=100, are a
/// `ValueError`, as is a clock whose `time()` is not Unix seconds.
#[pyfunction]
#[pyo3(signature = (host, port, server_pk, clock=None, timeout=None, attempts=None, retry_pause=None))]
#[allow(clippy::too_many_arguments)]
fn namebump_connect<'py>(
    py: Python<'py>,
    host: String,
    port: u16,
    server_pk: &[u8],
    clock: Option<Py<PyAny>>,
    timeout: Option<f64>,
    attempts: Option<i64>,
    retry_pause: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let key = PublicKey::from_bytes(server_pk)
        .map_err(|e| PyValueError::new_err(format!("dest_pk is not a public key: {e}")))?;
    let mut config = ClientConfig::default();
    if let Some(timeout) = optional_span("timeout", timeout, MAX_WAIT)? {
        config.reply_timeout = timeout;
    }
    if let Some(pause) = optional_span("retry_pause", retry_pause, MAX_WAIT)? {
        config.retry_pause = pause;
    }
    if let Some(attempts) = attempts {
        config.attempts = u32::try_from(attempts)
            .ok()
            .filter(|a| (1..=MAX_ATTEMPTS).contains(&i64::from(*a)))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "attempts must be in 1..={MAX_ATTEMPTS}; got {attempts}"
                ))
            })?;
    }
    let clock = clock.map(|c| Arc::new(PyClock(c)));
    if let Some(clock) = &clock {
        clock.check(py)?;
    }
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    spawn(
        py,
        async move {
            let mut client = Client::new(&address, key)
                .await
                .map_err(to_py)?
                .with_config(config);
            if let Some(clock) = &clock {
                client = client.with_clock(clock.clone());
            }
            Ok(NamebumpClient { client, clock })
        },
        |py, client| Ok(Py::new(py, client)?.into_any()),
    )
}

#[pymethods]
impl NamebumpClient {
    /// The IP versions (4, 6) the server resolved to, IPv4 first.
    fn ip_versions(&self) -> Vec<u8> {
        let mut versions = Vec::new();
        for addr in self.client.addresses() {
            let version = if addr.is_ipv6() { 6 } else { 4 };
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        versions
    }

    /// Awaitable `(pkid, updated, name, value, vkc)` of the server's reply.
    #[pyo3(signature = (name, value, secret, behavior, ttl=None))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        name: Vec<u8>,
        value: Vec<u8>,
        secret: &[u8],
        behavior: u8,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = keypair(secret)?;
        let ttl = self.check(py, ttl)?;
        let behavior = match behavior {
            0 => Behavior::DontBump,
            2 => Behavior::Throw,
            _ => Behavior::Bump,
        };
        let client = self.client.clone();
        spawn(
            py,
            async move {
                client
                    .put_reply(&name, &value, &key, behavior, ttl)
                    .await
                    .map_err(to_py)
            },
            |py, reply| {
                let tuple = (
                    reply.pkid,
                    reply.updated,
                    PyBytes::new(py, &reply.name),
                    PyBytes::new(py, &reply.value),
                    reply.vkc.map(|k| PyBytes::new(py, &k)),
                );
                Ok(tuple.into_pyobject(py)?.into_any().unbind())
            },
        )
    }

    /// Awaitable `(value, owner_vkc, timestamp)`, or `None` when absent.
    fn get<'py>(&self, py: Python<'py>, name: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        self.check(py, None)?;
        let client = self.client.clone();
        spawn(
            py,
            async move { client.get(&name).await.map_err(to_py) },
            |py, record| {
                let tuple = record.map(|r| {
                    (
                        PyBytes::new(py, &r.value),
                        PyBytes::new(py, &r.owner),
                        r.timestamp,
                    )
                });
                Ok(tuple.into_pyobject(py)?.into_any().unbind())
            },
        )
    }

    /// Awaitable `None` once deleted (a missing name is deleted too).
    #[pyo3(signature = (name, secret, ttl=None))]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        name: Vec<u8>,
        secret: &[u8],
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = keypair(secret)?;
        let ttl = self.check(py, ttl)?;
        let client = self.client.clone();
        spawn(
            py,
            async move { client.delete(&name, &key, ttl).await.map_err(to_py) },
            |py, ()| Ok(py.None()),
        )
    }

    /// Awaitable `(af, names_used, name_limit)`.
    #[pyo3(signature = (secret, ttl=None))]
    fn usage<'py>(
        &self,
        py: Python<'py>,
        secret: &[u8],
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = keypair(secret)?;
        let ttl = self.check(py, ttl)?;
        let client = self.client.clone();
        spawn(
            py,
            async move { client.usage(&key, ttl).await.map_err(to_py) },
            |py, usage| {
                let tuple = (usage.af, usage.names_used, usage.name_limit);
                Ok(tuple.into_pyobject(py)?.into_any().unbind())
            },
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NamebumpClient>()?;
    m.add_function(wrap_pyfunction!(namebump_connect, m)?)?;
    m.add("Refused", m.py().get_type::<Refused>())?;
    Ok(())
}
