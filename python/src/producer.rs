//! `framering.Producer` and `framering.Loan`.

use crate::array::{self, Held, Layout, Slot};
use crate::calls::{check_pid, deadline_after, seconds, SLICE};
use crate::errors;
use framering_ring::{
    Backpressure, Dtype, FrameMeta, FrameShape, Producer as RingProducer, SlotReuse, WriteSlot,
};
use numpy::{Element, PyArrayDescrMethods, PyReadonlyArray3, PyUntypedArrayMethods};
use parking_lot::Mutex;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::ffi::c_int;
use std::sync::Arc;
use std::time::{Duration, Instant};

type MaybeSlot<'p> = Option<WriteSlot<'p>>;

self_cell::self_cell!(
    /// A loaned slot together with the producer it borrows.
    pub(crate) struct Loaned {
        owner: Arc<RingProducer>,
        #[covariant]
        dependent: MaybeSlot,
    }
);

impl Slot for Loaned {
    fn address(&mut self) -> *mut u8 {
        self.with_dependent_mut(|_, slot| {
            slot.as_mut()
                .map_or(std::ptr::null_mut(), |s| s.pixels_mut().as_mut_ptr())
        })
    }
}

/// Loans a slot, waiting in slices with the GIL released (Ctrl-C
/// interrupts it); `timeout` None: as long as it takes.
fn loan_slot(
    py: Python<'_>,
    producer: &Arc<RingProducer>,
    timeout: Option<Duration>,
) -> PyResult<Loaned> {
    let deadline = timeout.map(deadline_after);
    loop {
        let slice = deadline.map_or(SLICE, |d| {
            SLICE.min(d.saturating_duration_since(Instant::now()))
        });
        let loaned = py.detach(|| Loaned::try_new(producer.clone(), |p| p.loan(slice).map(Some)));
        match loaned {
            Ok(l) => return Ok(l),
            Err(e) if e.is_timeout() => {
                py.check_signals()?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(errors::loan(e));
                }
            }
            Err(e) => return Err(errors::loan(e)),
        }
    }
}

/// What travels with a frame besides its pixels.
#[derive(Default, Clone)]
struct Meta {
    user: Vec<u8>,
    source: Vec<u8>,
    capture_ns: u64,
    pts_ns: Option<i64>,
    src_size: (u32, u32),
}

impl Meta {
    fn frame_meta(&self) -> FrameMeta<'_> {
        let mut m = FrameMeta::new()
            .user_meta(&self.user)
            .source(&self.source)
            .capture_ns(self.capture_ns)
            .src_size(self.src_size.0, self.src_size.1);
        m.pts_ns = self.pts_ns;
        m
    }
}

fn publish_loaned(loaned: Loaned, meta: &Meta) -> PyResult<u64> {
    let mut loaned = loaned;
    loaned.with_dependent_mut(|_, slot| match slot.take() {
        Some(s) => s.publish(&meta.frame_meta()).map_err(errors::publish),
        None => Err(PyValueError::new_err(array::RELEASED)),
    })
}

/// The producer of a framering ring (see the module's stub for the API).
#[pyclass(module = "framering", frozen)]
pub struct Producer {
    ring: Mutex<Option<Arc<RingProducer>>>,
    name: String,
    layout: Layout,
    slots: u32,
    pid: u32,
}

impl Producer {
    fn ring(&self) -> PyResult<Arc<RingProducer>> {
        check_pid(self.pid, "Producer")?;
        self.ring
            .lock()
            .clone()
            .ok_or_else(|| PyValueError::new_err("the producer was closed"))
    }
}

fn copy_in<T: Element + bytemuck::Pod>(
    array: &Bound<'_, PyAny>,
    pixels: &mut [u8],
) -> PyResult<()> {
    let a: PyReadonlyArray3<'_, T> = array.extract().map_err(|_| {
        PyValueError::new_err(format!(
            "expected a 3-d numpy array of {}",
            std::any::type_name::<T>()
        ))
    })?;
    let dst: &mut [T] = bytemuck::cast_slice_mut(pixels);
    match a.as_slice() {
        Ok(src) => dst.copy_from_slice(src),
        // Not contiguous: element by element, in C order.
        Err(_) => dst
            .iter_mut()
            .zip(a.as_array().iter())
            .for_each(|(d, s)| *d = *s),
    }
    Ok(())
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (ring, shape, dtype = "uint8", slots = 8, groups = None,
                        user_meta_bytes = 256, backpressure = "block", max_consumers = 16,
                        reuse = "last-freed"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        ring: &str,
        shape: (u32, u32, u32),
        dtype: &str,
        slots: u32,
        groups: Option<Vec<String>>,
        user_meta_bytes: u32,
        backpressure: &str,
        max_consumers: u32,
        reuse: &str,
    ) -> PyResult<Self> {
        let dtype: Dtype = dtype
            .parse()
            .map_err(|e: framering_ring::UnknownDtype| PyValueError::new_err(e.to_string()))?;
        let policy = match backpressure {
            "block" => Backpressure::Block,
            "drop-oldest" | "drop_oldest" => Backpressure::DropOldest,
            other => {
                return Err(PyValueError::new_err(format!(
                    "backpressure must be \"block\" or \"drop-oldest\", not {other:?}"
                )))
            }
        };
        let reuse = match reuse {
            "last-freed" | "last_freed" => SlotReuse::LastFreed,
            "first-freed" | "first_freed" => SlotReuse::FirstFreed,
            other => {
                return Err(PyValueError::new_err(format!(
                    "reuse must be \"last-freed\" or \"first-freed\", not {other:?}"
                )))
            }
        };
        let frame = FrameShape::new(shape.0, shape.1, shape.2).with_dtype(dtype);
        let mut b = RingProducer::builder(ring)
            .shape(frame)
            .slots(slots)
            .user_meta_bytes(user_meta_bytes)
            .max_consumers(max_consumers)
            .backpressure(policy)
            .reuse(reuse);
        if let Some(groups) = &groups {
            b = b.groups(groups.iter().map(String::as_str));
        }
        let p = py.detach(|| b.create()).map_err(errors::create)?;
        Ok(Self {
            name: ring.to_string(),
            layout: Layout::new(p.shape()),
            slots: p.slots(),
            ring: Mutex::new(Some(Arc::new(p))),
            pid: framering_ring::process_id(),
        })
    }

    /// Loans a free slot to fill in place (see `Loan`).
    #[pyo3(signature = (timeout = None))]
    fn loan(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Loan> {
        let ring = self.ring()?;
        let loaned = loan_slot(py, &ring, seconds(timeout)?)?;
        Ok(Loan {
            held: Held::new(loaned),
            layout: self.layout,
            meta: Mutex::new(Meta::default()),
        })
    }

    /// Copies `array` into a free slot and publishes it; returns its
    /// sequence number.
    #[pyo3(signature = (array, meta = None, source = None, capture_ns = 0, pts_ns = None,
                        timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        meta: Option<Vec<u8>>,
        source: Option<String>,
        capture_ns: u64,
        pts_ns: Option<i64>,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let ring = self.ring()?;
        let untyped = array
            .cast::<numpy::PyUntypedArray>()
            .map_err(|_| PyValueError::new_err("publish() takes a numpy array"))?;
        let (h, w, c) = self.layout.shape_tuple();
        if untyped.shape() != [h, w, c] {
            return Err(PyValueError::new_err(format!(
                "array of shape {:?} does not fit the ring's frames ({h}, {w}, {c})",
                untyped.shape()
            )));
        }
        if !untyped
            .dtype()
            .is_equiv_to(&array::descr(py, self.layout.dtype))
        {
            return Err(PyValueError::new_err(format!(
                "array of dtype {} does not fit the ring's {}",
                untyped.dtype(),
                self.layout.dtype.name()
            )));
        }
        let meta = Meta {
            user: meta.unwrap_or_default(),
            source: source.unwrap_or_default().into_bytes(),
            capture_ns,
            pts_ns,
            src_size: (w as u32, h as u32),
        };
        let mut loaned = loan_slot(py, &ring, seconds(timeout)?)?;
        let dtype = self.layout.dtype;
        loaned.with_dependent_mut(|_, slot| {
            let pixels = slot.as_mut().map(WriteSlot::pixels_mut).unwrap_or_default();
            match dtype {
                Dtype::U8 => copy_in::<u8>(array, pixels),
                Dtype::U16 => copy_in::<u16>(array, pixels),
                Dtype::F32 => copy_in::<f32>(array, pixels),
            }
        })?;
        publish_loaned(loaned, &meta)
    }

    /// Ends the stream, waits up to `timeout` seconds for the consumers to
    /// hand every frame back, and removes the ring (unless `keep`). Returns
    /// whether every frame came back. Bounded: never waits longer than
    /// `timeout` (Ctrl-C interrupts it).
    #[pyo3(signature = (timeout = 10.0, keep = false))]
    fn close(&self, py: Python<'_>, timeout: f64, keep: bool) -> PyResult<bool> {
        check_pid(self.pid, "Producer")?;
        let Some(ring) = self.ring.lock().take() else {
            return Ok(true);
        };
        ring.finish();
        let deadline = deadline_after(seconds(Some(timeout))?.unwrap_or_default());
        let drained = loop {
            let slice = SLICE.min(deadline.saturating_duration_since(Instant::now()));
            match py.detach(|| ring.drain(slice)) {
                Ok(()) => break true,
                Err(e) if e.is_timeout() && Instant::now() < deadline => {
                    if let Err(e) = py.check_signals() {
                        if !keep {
                            let _ = ring.unlink();
                        }
                        return Err(e);
                    }
                }
                Err(e) if e.is_timeout() => break false,
                Err(framering_ring::WaitError::Corrupt(e)) => {
                    if !keep {
                        let _ = ring.unlink();
                    }
                    return Err(errors::corrupt(e));
                }
                Err(e) => {
                    if !keep {
                        let _ = ring.unlink();
                    }
                    return Err(errors::Error::new_err(e.to_string()));
                }
            }
        };
        if !keep {
            ring.unlink()
                .map_err(|e| errors::Error::new_err(e.to_string()))?;
        }
        Ok(drained)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py, 10.0, false).map(drop)
    }

    /// The ring's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The frames' shape (height, width, channels).
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        self.layout.shape_tuple()
    }

    /// The frames' numpy dtype name.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.layout.dtype.name()
    }

    /// Slots in the ring.
    #[getter]
    fn slots(&self) -> u32 {
        self.slots
    }

    /// Frames published so far.
    #[getter]
    fn published(&self) -> PyResult<u64> {
        Ok(self.ring()?.published())
    }

    /// Bytes of user metadata a frame can carry.
    #[getter]
    fn user_meta_capacity(&self) -> PyResult<usize> {
        Ok(self.ring()?.user_meta_capacity())
    }

    fn __repr__(&self) -> String {
        let (h, w, c) = self.layout.shape_tuple();
        format!(
            "<framering.Producer ring={:?} shape=({h}, {w}, {c}) dtype={} slots={}>",
            self.name,
            self.layout.dtype.name(),
            self.slots
        )
    }
}

/// A slot loaned by `Producer.loan()`, filled in place through `array()`
/// and published when the `with` block ends (or by `publish()`).
#[pyclass(module = "framering", frozen)]
pub struct Loan {
    held: Arc<Held<Loaned>>,
    layout: Layout,
    meta: Mutex<Meta>,
}

impl Drop for Loan {
    fn drop(&mut self) {
        // Never published: the slot goes back unpublished once no view of
        // it is alive.
        self.held.close();
    }
}

#[pymethods]
impl Loan {
    /// A writable numpy array (H, W, C) over the slot.
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array::ndarray(py, &self.held, &self.layout, true)
    }

    /// Publishes the frame; `BufferError` while views of it are alive.
    /// Returns its sequence number.
    fn publish(&self) -> PyResult<u64> {
        match self.held.take_strict("slot")? {
            Some(loaned) => publish_loaned(loaned, &self.meta.lock()),
            None => Err(PyValueError::new_err(
                "the slot was already published or discarded",
            )),
        }
    }

    /// Hands the slot back unpublished (once no view of it is alive).
    fn discard(&self) {
        self.held.close();
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Publishes, unless the block raised (then the slot goes back
    /// unpublished).
    #[pyo3(signature = (exc_type, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if exc_type.is_some_and(|t| !t.is_none()) || !self.held.is_held() {
            self.held.close();
            return Ok(());
        }
        if self.held.exports() > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of the loaned slot are still alive: delete them (del a) before the \
                 `with` block ends, so that nobody writes to a published frame; the slot stays \
                 loaned (publish() it or discard() it)",
                self.held.exports()
            )));
        }
        self.publish().map(drop)
    }

    /// The user metadata published with the frame.
    #[getter]
    fn get_meta(&self) -> Vec<u8> {
        self.meta.lock().user.clone()
    }

    #[setter]
    fn set_meta(&self, meta: Vec<u8>) {
        self.meta.lock().user = meta;
    }

    /// Where the frame came from (a path, a URL).
    #[getter]
    fn get_source(&self) -> String {
        String::from_utf8_lossy(&self.meta.lock().source).into_owned()
    }

    #[setter]
    fn set_source(&self, source: String) {
        self.meta.lock().source = source.into_bytes();
    }

    /// Capture time, CLOCK_REALTIME ns (0: the time of publishing).
    #[getter]
    fn get_capture_ns(&self) -> u64 {
        self.meta.lock().capture_ns
    }

    #[setter]
    fn set_capture_ns(&self, ns: u64) {
        self.meta.lock().capture_ns = ns;
    }

    /// Presentation timestamp, ns.
    #[getter]
    fn get_pts_ns(&self) -> Option<i64> {
        self.meta.lock().pts_ns
    }

    #[setter]
    fn set_pts_ns(&self, ns: Option<i64>) {
        self.meta.lock().pts_ns = ns;
    }

    /// Views of the slot alive now.
    #[getter]
    fn views(&self) -> usize {
        self.held.exports()
    }

    /// # Safety
    /// Called by Python with the view to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let (held, layout) = (this.held.clone(), &this.layout as *const Layout);
        // SAFETY: as in Frame::__getbuffer__: `layout` lives in `slf`,
        // which the view keeps alive.
        unsafe { array::fill_buffer(slf.into_any(), &held, &*layout, view, flags, true) }
    }

    /// # Safety
    /// Called by Python with a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        array::release_buffer(&self.held);
    }
}
