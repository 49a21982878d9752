//! `keyway._native`: the one extension module behind the `namebump`,
//! `sidewire` and `drayer` Python packages. The Python side keeps the
//! reference packages' classes and signatures; the work happens here, with
//! the GIL released and async calls on one tokio runtime
//! (pyo3-async-runtimes).

use pyo3::prelude::*;

mod bridge;
mod drayer_stream;
mod namebump_client;
mod namebump_packet;
mod seconds;
mod sidewire_router;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    bridge::register(m)?;
    namebump_packet::register(m)?;
    namebump_client::register(m)?;
    sidewire_router::register(m)?;
    drayer_stream::register(m)?;
    Ok(())
}
