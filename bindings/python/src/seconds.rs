//! Seconds handed over by Python (timeouts, expiries, ttls, clock
//! readings), checked before they become a `Duration` or go on the wire.
//! `Duration::from_secs_f64` panics on NaN, infinities and negatives, and
//! a clamp lets NaN through: every such value is a `ValueError` naming
//! the argument instead.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// `seconds` as a `Duration`, at most `max` (a longer span means "as long
/// as allowed"); `ValueError` when it is NaN, infinite or negative.
pub(crate) fn span(what: &str, seconds: f64, max: Duration) -> PyResult<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds; got {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds.min(max.as_secs_f64())))
}

/// An optional [`span`].
pub(crate) fn optional_span(
    what: &str,
    seconds: Option<f64>,
    max: Duration,
) -> PyResult<Option<Duration>> {
    seconds.map(|s| span(what, s, max)).transpose()
}

/// A clock reading in Unix seconds; `ValueError` when it is NaN, infinite
/// or negative (a NaN time signed into a namebump request passes the
/// reference server's freshness checks: spec bug 25).
pub(crate) fn clock_reading(what: &str, seconds: f64) -> PyResult<f64> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must return Unix seconds (a finite, non-negative number); got {seconds}"
        )))
    }
}

/// The result of calling a Python clock, checked as [`clock_reading`].
pub(crate) fn read_clock(what: &str, returned: PyResult<Bound<'_, PyAny>>) -> PyResult<f64> {
    clock_reading(what, returned?.extract::<f64>()?)
}
