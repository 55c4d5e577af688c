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
mod calls;
mod consumer;
mod dlpack;
mod errors;
mod producer;

use pyo3::prelude::*;

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
