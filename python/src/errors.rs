//! Python exceptions for the ring's errors: timeouts are `TimeoutError`,
//! bad arguments `ValueError`, garbage in the segment
//! `framering.RingCorrupt`, the rest `framering.Error`.

use framering_ring::{
    AttachError, CreateError, DetachError, LoanError, OpenError, PublishError,
    RingCorrupt as Corrupt, TakeError,
};
use pyo3::exceptions::{
    PyException, PyFileNotFoundError, PyMemoryError, PyTimeoutError, PyValueError,
};
use pyo3::{create_exception, PyErr};

create_exception!(
    framering,
    Error,
    PyException,
    "An error of the ring (attaching, taking, publishing)."
);
create_exception!(
    framering,
    RingCorrupt,
    Error,
    "The shared segment holds garbage: the ring cannot be used."
);
create_exception!(
    framering,
    ProducerFailed,
    Error,
    "The producer marked the ring failed (its input failed, or it found the ring corrupt)."
);

pub(crate) fn corrupt(e: Corrupt) -> PyErr {
    RingCorrupt::new_err(e.to_string())
}

pub(crate) fn take(e: TakeError) -> PyErr {
    match e {
        e if e.is_timeout() => PyTimeoutError::new_err(e.to_string()),
        TakeError::Corrupt(c) => corrupt(c),
        e => Error::new_err(e.to_string()),
    }
}

pub(crate) fn loan(e: LoanError) -> PyErr {
    match e {
        e if e.is_timeout() => PyTimeoutError::new_err(e.to_string()),
        LoanError::Corrupt(c) => corrupt(c),
        e => Error::new_err(e.to_string()),
    }
}

pub(crate) fn publish(e: PublishError) -> PyErr {
    match e {
        e @ PublishError::UserMetaTooLong { .. } => PyValueError::new_err(e.to_string()),
        PublishError::Corrupt(c) => corrupt(c),
        e => Error::new_err(e.to_string()),
    }
}

pub(crate) fn attach(e: AttachError) -> PyErr {
    match e {
        e @ (AttachError::InvalidGroup(_) | AttachError::Open(OpenError::InvalidName(_))) => {
            PyValueError::new_err(e.to_string())
        }
        e @ AttachError::Open(OpenError::NotFound { .. }) => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        e => Error::new_err(e.to_string()),
    }
}

pub(crate) fn create(e: CreateError) -> PyErr {
    match e {
        e @ (CreateError::InvalidName(_)
        | CreateError::InvalidGroup(_)
        | CreateError::Shape { .. }
        | CreateError::NoShape { .. }
        | CreateError::InvalidMode { .. }
        | CreateError::TooManyGroups { .. }) => PyValueError::new_err(e.to_string()),
        e => Error::new_err(e.to_string()),
    }
}

/// A frame kept alive (by views, or the frame itself) while the consumer
/// waits could not be copied out of its slot: the ring would stall.
pub(crate) fn detach(e: DetachError) -> PyErr {
    PyMemoryError::new_err(format!(
        "{e}: frames you keep (or views of them) hold slots the producer needs; \
         delete them, or keep copies (np.array(f.array()))"
    ))
}
