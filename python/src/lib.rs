//! `framering` for Python: take frames from a framering ring as read-only
//! numpy arrays whose memory is the slot in shared memory, and publish
//! frames from numpy arrays. See `framering.pyi` for the API and the README's
//! "Python" section for a session.
//!
//! `unsafe` is confined to the buffer exports ([`array`]: numpy arrays and
//! the buffer protocol; [`dlpack`]), each block with its `// SAFETY:`.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod array;
mod consumer;
mod dlpack;
mod errors;
mod producer;

use pyo3::prelude::*;

/// How long a blocking call waits with the GIL released before it runs
/// Python's signal handlers (so that Ctrl-C interrupts it within 100 ms).
pub(crate) const SLICE: std::time::Duration = std::time::Duration::from_millis(50);

/// Raises if called in a process other than the one that made the handle
/// (a forked child): the handle's frames and slots are the parent's.
pub(crate) fn check_pid(creator: u32, what: &str) -> PyResult<()> {
    if framering_ring::signals::pid() == creator {
        Ok(())
    } else {
        Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "this {what} belongs to the process that made it (pid {creator}), not to this forked \
             child: make a new one here"
        )))
    }
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

#[pymodule]
fn framering(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<consumer::Frame>()?;
    m.add_class::<producer::Producer>()?;
    m.add_class::<producer::Loan>()?;
    m.add("Error", py.get_type::<errors::Error>())?;
    m.add("RingCorrupt", py.get_type::<errors::RingCorrupt>())?;
    m.add("ProducerFailed", py.get_type::<errors::ProducerFailed>())?;
    m.add(
        "DTYPES",
        framering_ring::Dtype::NAMES.map(|n| n.to_string()).to_vec(),
    )?;
    Ok(())
}
