//! Drayer for Python: a stream file, its HTTP sync and LAN discovery, on
//! Keyway's `Stream` (SQLite, the original's schema).

use std::path::PathBuf;
use std::sync::Arc;

use keyway_drayer::discovery::{Discovery, DiscoveryConfig};
use keyway_drayer::http::{DeadlineListener, HttpSource, Limits, router_with, serve};
use keyway_drayer::sync::pull;
use keyway_drayer::{Stream, StreamError, parse_public_key};
use pyo3::exceptions::{PyConnectionError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex;

use crate::bridge::spawn;

fn to_py(e: StreamError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// One stream file (owner or mirror). Calls are serialised on the file.
#[pyclass(module = "keyway._native", frozen)]
#[derive(Debug)]
struct DrayerFile {
    stream: Arc<Mutex<Stream>>,
}

/// Opens the stream at `path`; creates it (with a new key, or as a mirror
/// of `pubkey`, base64) when the file does not exist.
#[pyfunction]
#[pyo3(signature = (path, pubkey=None))]
fn drayer_open(path: PathBuf, pubkey: Option<&str>) -> PyResult<DrayerFile> {
    let stream = if path.exists() {
        let stream = Stream::open(&path).map_err(to_py)?;
        if let Some(pubkey) = pubkey {
            let wanted = parse_public_key(pubkey).map_err(to_py)?;
            if wanted != *stream.public_key() {
                return Err(PyValueError::new_err(
                    "You specified a pubkey, but the file already contains one that does not match",
                ));
            }
        }
        stream
    } else if let Some(pubkey) = pubkey {
        Stream::mirror(&path, parse_public_key(pubkey).map_err(to_py)?).map_err(to_py)?
    } else {
        Stream::create(&path).map_err(to_py)?
    };
    Ok(DrayerFile {
        stream: Arc::new(Mutex::new(stream)),
    })
}

#[pymethods]
impl DrayerFile {
    /// The public key, base64 (the `PublicKey` attribute).
    fn public_key(&self, py: Python<'_>) -> String {
        py.detach(|| self.stream.blocking_lock().public_key_base64())
    }

    fn is_owner(&self, py: Python<'_>) -> bool {
        py.detach(|| self.stream.blocking_lock().is_owner())
    }

    /// The value of (key, kind), verified; None when absent.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        kind: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let value = py
            .detach(|| self.stream.blocking_lock().get(key, kind))
            .map_err(to_py)?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    /// Sets (key, kind) to `value` (signed, one transaction).
    fn set(&self, py: Python<'_>, key: &str, kind: &str, value: &[u8]) -> PyResult<()> {
        py.detach(|| self.stream.blocking_lock().set(key, kind, value).map(drop))
            .map_err(to_py)
    }

    /// Deletes (key, kind); KeyError-worthy absence is `False`.
    fn delete(&self, py: Python<'_>, key: &str, kind: &str) -> PyResult<bool> {
        match py.detach(|| self.stream.blocking_lock().delete(key, kind)) {
            Ok(()) => Ok(true),
            Err(StreamError::Write(keyway_core::drayer::WriteError::NotFound)) => Ok(false),
            Err(e) => Err(to_py(e)),
        }
    }

    /// (key, kind) of every record, of `kind` if given, by id.
    #[pyo3(signature = (kind=None))]
    fn keys(&self, py: Python<'_>, kind: Option<&str>) -> PyResult<Vec<(String, String)>> {
        let entries = py
            .detach(|| self.stream.blocking_lock().list(kind))
            .map_err(to_py)?;
        Ok(entries.into_iter().map(|e| (e.key, e.kind)).collect())
    }

    /// Awaitable: pulls everything newer from a Drayer HTTP server at
    /// `url` (Keyway's or the original's); returns the records inserted.
    fn sync<'py>(&self, py: Python<'py>, url: String) -> PyResult<Bound<'py, PyAny>> {
        let stream = self.stream.clone();
        spawn(
            py,
            async move {
                let mut stream = stream.lock().await;
                let mut source = HttpSource::new(&url, *stream.public_key());
                let pulled = pull(&mut stream, &mut source)
                    .await
                    .map_err(|e| PyConnectionError::new_err(e.to_string()))?;
                Ok(pulled.inserted)
            },
            |py, n| Ok(n.into_pyobject(py)?.into_any().unbind()),
        )
    }
}

/// Awaitable: serves the streams at `paths` over the Drayer HTTP sync
/// API on `listen` ("host:port"); returns the bound "host:port". Runs
/// until the process ends (`drayer_discover` adds LAN discovery).
#[pyfunction]
fn drayer_serve(py: Python<'_>, paths: Vec<PathBuf>, listen: String) -> PyResult<Bound<'_, PyAny>> {
    spawn(
        py,
        async move {
            let served = paths
                .iter()
                .map(|p| Stream::open(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(to_py)?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| PyOSError::new_err(format!("listening on {listen}: {e}")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| PyOSError::new_err(e.to_string()))?;
            let limits = Limits::default();
            let listener = DeadlineListener::with_limits(listener, &limits);
            let app = router_with(served, limits);
            tokio::spawn(serve(listener, app));
            Ok(bound.to_string())
        },
        |py, bound| Ok(bound.into_pyobject(py)?.into_any().unbind()),
    )
}

/// Awaitable: joins DrayerUDP discovery for the streams at `paths`,
/// announcing `http_port` as where they are served; pulls from peers that
/// announce newer records. Runs until the process ends.
#[pyfunction]
fn drayer_discover(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    http_port: u16,
) -> PyResult<Bound<'_, PyAny>> {
    spawn(
        py,
        async move {
            let config = DiscoveryConfig {
                http_port,
                ..DiscoveryConfig::default()
            };
            let node = Discovery::bind(config, &paths)
                .map_err(|e| PyOSError::new_err(format!("joining the DrayerUDP group: {e}")))?;
            node.announce()
                .await
                .map_err(|e| PyOSError::new_err(e.to_string()))?;
            tokio::spawn(node.run());
            Ok(())
        },
        |py, ()| Ok(py.None()),
    )
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DrayerFile>()?;
    m.add_function(wrap_pyfunction!(drayer_open, m)?)?;
    m.add_function(wrap_pyfunction!(drayer_serve, m)?)?;
    m.add_function(wrap_pyfunction!(drayer_discover, m)?)?;
    Ok(())
}
