//! What the handles' methods share: how long a blocking call waits with
//! the GIL released, the check that a handle is used by the process that
//! made it, and timeouts in seconds.

use pyo3::prelude::*;

/// How long a blocking call waits with the GIL released before it runs
/// Python's signal handlers (so that Ctrl-C interrupts it within 100 ms).
pub(crate) const SLICE: std::time::Duration = std::time::Duration::from_millis(50);

/// Raises if called in a process other than the one that made the handle
/// (a forked child): the handle's frames and slots are the parent's.
pub(crate) fn check_pid(creator: u32, what: &str) -> PyResult<()> {
    if framering_ring::process_id() == creator {
        Ok(())
    } else {
        Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "this {what} belongs to the process that made it (pid {creator}), not to this forked \
             child: make a new one here"
        )))
    }
}

/// The instant `t` from now. A `t` past a century (no deadline, in effect:
/// `timeout=1e18`) counts as a century, so that no timeout a user gives
/// overflows the clock.
pub(crate) fn deadline_after(t: std::time::Duration) -> std::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
    std::time::Instant::now() + t.min(CENTURY)
}

/// Seconds from Python as a duration (`None` stays `None`: no limit).
pub(crate) fn seconds(t: Option<f64>) -> PyResult<Option<std::time::Duration>> {
    t.map(|s| {
        std::time::Duration::try_from_secs_f64(s).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "timeout must be a non-negative number of seconds, not {s}"
            ))
        })
    })
    .transpose()
}
