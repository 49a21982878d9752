//! sidewire for Python: Keyway's Router and SmartPipe, with inbound
//! messages handed to the asyncio loop that started the Router.

use std::sync::Arc;
use std::time::Duration;

use keyway_core::{Keypair, PublicKey};
use keyway_sidewire::{BrokerEntry, Message, Pool, Router, RouterError, SmartPipe, system_time};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bridge::{spawn, with_python};
use crate::seconds::{clock_reading, read_clock, span};

/// The longest wait a `send` may ask for (a longer timeout waits this long).
const MAX_SEND_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest broker-cache expiry.
const MAX_CACHE_EXPIRY: Duration = Duration::from_secs(1_000_000_000);
/// The longest grace `close` gives ACKs in flight.
const MAX_CLOSE_GRACE: Duration = Duration::from_secs(60);

fn to_py(e: RouterError) -> PyErr {
    match e {
        RouterError::Timeout(_) => PyTimeoutError::new_err(e.to_string()),
        RouterError::NoBroker => PyConnectionError::new_err(e.to_string()),
        RouterError::TooLarge { .. } => PyValueError::new_err(e.to_string()),
        RouterError::Closed => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A sidewire node.
#[pyclass(module = "keyway._native", frozen)]
struct SidewireRouter {
    router: Router,
}

impl std::fmt::Debug for SidewireRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidewireRouter").finish_non_exhaustive()
    }
}

/// A destination to send to.
#[pyclass(module = "keyway._native", frozen)]
#[derive(Debug)]
struct SidewirePipe {
    pipe: SmartPipe,
}

/// `brokers`: `(host, port)` pairs; empty means the bundled public pool.
/// `deliver(msg: bytes, src_pk: bytes, queue_id: bytes)` is called on
/// `loop` (with `call_soon_threadsafe`) for every inbound message.
/// `get_time`: None for the system clock, else a callable returning Unix
/// seconds (read once here: `ValueError` unless finite and non-negative).
#[pyfunction]
#[pyo3(signature = (secret, brokers, event_loop, deliver, get_time=None))]
fn sidewire_router(
    py: Python<'_>,
    secret: &[u8],
    brokers: Vec<(String, u16)>,
    event_loop: Py<PyAny>,
    deliver: Py<PyAny>,
    get_time: Option<Py<PyAny>>,
) -> PyResult<SidewireRouter> {
    let key = Keypair::from_secret_bytes(secret)
        .map_err(|e| PyValueError::new_err(format!("not a secp256k1 secret key: {e}")))?;
    if let Some(clock) = &get_time {
        read_clock("get_time", clock.bind(py).call0())?;
    }
    let pool = if brokers.is_empty() {
        Pool::public()
    } else {
        Pool {
            brokers: brokers
                .iter()
                .map(|(host, port)| BrokerEntry::new(host, *port))
                .collect(),
            ..Pool::default()
        }
    };
    let handler = Arc::new(move |message: &Message| {
        with_python(|py| {
            let args = (
                deliver.clone_ref(py),
                PyBytes::new(py, &message.data),
                PyBytes::new(py, message.from.as_bytes()),
                PyBytes::new(py, &message.queue_id),
            );
            // A closed loop drops the message: the application is gone.
            let _ = event_loop.call_method1(py, "call_soon_threadsafe", args);
        });
    });
    let router = match get_time {
        None => Router::new(key, Some(handler), system_time, pool),
        Some(clock) => Router::new(
            key,
            Some(handler),
            move || {
                with_python(|py| {
                    clock
                        .call0(py)
                        .and_then(|t| t.extract::<f64>(py))
                        .and_then(|t| clock_reading("get_time", t))
                        .map(|t| t as u64)
                        // A failing clock (an exception, NaN, a negative
                        // or infinite time) stamps 0: peers refuse the
                        // message as stale, which the sender sees.
                        .unwrap_or(0)
                })
                // The interpreter is exiting: the system clock will do.
                .unwrap_or_else(system_time)
            },
            pool,
        ),
    };
    Ok(SidewireRouter { router })
}

#[pymethods]
impl SidewireRouter {
    /// Awaitable: joins the pool.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let router = self.router.clone();
        spawn(
            py,
            async move { router.start().await.map_err(to_py) },
            |py, ()| Ok(py.None()),
        )
    }

    /// Awaitable: leaves the pool (ACKs in flight get `grace` seconds).
    #[pyo3(signature = (grace=1.0))]
    fn close<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let router = self.router.clone();
        let grace = span("grace", grace, MAX_CLOSE_GRACE)?;
        spawn(
            py,
            async move {
                router.close(grace).await;
                Ok(())
            },
            |py, ()| Ok(py.None()),
        )
    }

    /// This node's compressed public key.
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.router.public_key().as_bytes())
    }

    /// A pipe to `dest` (33 bytes), publishing on `hints` ((host, port)
    /// pairs) first.
    #[pyo3(signature = (dest, hints, use_cache=false, expiry=3600.0))]
    fn pipe(
        &self,
        dest: &[u8],
        hints: Vec<(String, u16)>,
        use_cache: bool,
        expiry: f64,
    ) -> PyResult<SidewirePipe> {
        let dest = PublicKey::from_bytes(dest)
            .map_err(|e| PyValueError::new_err(format!("not a public key: {e}")))?;
        let hints = hints
            .iter()
            .map(|(host, port)| BrokerEntry::new(host, *port))
            .collect();
        let pipe = self
            .router
            .pipe(dest)
            .with_hints(hints)
            .use_cache(use_cache)
            .cache_expiry(span("expiry", expiry, MAX_CACHE_EXPIRY)?);
        Ok(SidewirePipe { pipe })
    }
}

#[pymethods]
impl SidewirePipe {
    /// Awaitable: sends and waits for the destination's ACK; `TimeoutError`
    /// when none came within `timeout` seconds (`ValueError` for a NaN,
    /// infinite or negative one). Cancelling it stops the sending.
    fn send<'py>(
        &self,
        py: Python<'py>,
        data: Vec<u8>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pipe = self.pipe.clone();
        let timeout = span("timeout", timeout, MAX_SEND_TIMEOUT)?;
        spawn(
            py,
            async move { pipe.send(&data, timeout).await.map_err(to_py) },
            |py, ()| Ok(py.None()),
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SidewireRouter>()?;
    m.add_class::<SidewirePipe>()?;
    m.add_function(wrap_pyfunction!(sidewire_router, m)?)?;
    Ok(())
}
