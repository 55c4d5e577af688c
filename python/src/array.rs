//! Views of a slot: numpy arrays and buffer-protocol exports whose memory is
//! the slot in shared memory, and the count of them that decides when the
//! slot may be handed back.
//!
//! A frame (or loaned slot) lives in a [`Held`]: the slot's owner (a
//! a ring `Frame`, a loaned `WriteSlot`) plus the number of views of it that
//! are alive. Every view holds an [`Export`], which counts one; numpy keeps
//! the array's `base` (a [`ViewBase`] holding the export) alive as long as
//! the array or any slice of it, so the count never misses a derived view.
//! The slot is handed back ([`Held::close`]) only once the count is 0: a view
//! never dangles and its pixels never change under it.

use framering_ring::Dtype;
use numpy::npyffi::{
    self, npy_intp, NpyTypes, NPY_ARRAY_ALIGNED, NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_WRITEABLE,
    PY_ARRAY_API,
};
use numpy::PyArrayDescrMethods;
use parking_lot::Mutex;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use std::ffi::{c_int, c_void, CStr};
use std::sync::Arc;

/// What a [`Held`] keeps: the owner of a slot, whose memory stays put while
/// it lives.
pub(crate) trait Slot: Send + 'static {
    /// The address of the slot's first element.
    fn address(&mut self) -> *mut u8;
}

struct State<T> {
    slot: Option<T>,
    exports: usize,
    /// The owner asked for the slot to go as soon as the last view does.
    closing: bool,
}

/// A slot and its live views. Shared (`Arc`) by the Python object that
/// owns the slot and every [`Export`].
pub(crate) struct Held<T: Slot> {
    state: Mutex<State<T>>,
}

/// Why a view cannot be made.
pub(crate) const RELEASED: &str = "the frame was handed back: its pixels are gone";

impl<T: Slot> Held<T> {
    pub(crate) fn new(slot: T) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                slot: Some(slot),
                exports: 0,
                closing: false,
            }),
        })
    }

    /// Counts one more view and returns the slot's address.
    fn export(&self) -> PyResult<*mut u8> {
        let mut st = self.state.lock();
        let st = &mut *st;
        match (&mut st.slot, st.closing) {
            (Some(slot), false) => {
                st.exports += 1;
                Ok(slot.address())
            }
            _ => Err(PyBufferError::new_err(RELEASED)),
        }
    }

    /// One view fewer; the slot goes if it was the last and the owner is
    /// done.
    fn unexport(&self) {
        let gone = {
            let mut st = self.state.lock();
            st.exports = st.exports.saturating_sub(1);
            if st.exports == 0 && st.closing {
                st.slot.take()
            } else {
                None
            }
        };
        drop(gone); // outside the lock
    }

    /// The owner is done: the slot goes now, or when its last view does.
    pub(crate) fn close(&self) {
        let gone = {
            let mut st = self.state.lock();
            st.closing = true;
            if st.exports == 0 {
                st.slot.take()
            } else {
                None
            }
        };
        drop(gone);
    }

    /// Takes the slot out now, or `BufferError` if views of it are alive.
    pub(crate) fn take_strict(&self, what: &str) -> PyResult<Option<T>> {
        let mut st = self.state.lock();
        if st.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of this {what} are alive (arrays, slices, memoryviews): \
                 delete them first",
                st.exports
            )));
        }
        st.closing = true;
        Ok(st.slot.take())
    }

    /// Runs `f` on the slot if it is still held and not closing.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> PyResult<R> {
        let mut st = self.state.lock();
        let st = &mut *st;
        match (&mut st.slot, st.closing) {
            (Some(slot), false) => Ok(f(slot)),
            _ => Err(PyValueError::new_err(RELEASED)),
        }
    }

    /// Runs `f` on the slot if it is still held (by its owner or by views).
    pub(crate) fn with_present<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.state.lock().slot.as_mut().map(f)
    }

    /// Live views.
    pub(crate) fn exports(&self) -> usize {
        self.state.lock().exports
    }

    /// Whether the slot is still held (by its owner or by views).
    pub(crate) fn is_held(&self) -> bool {
        self.state.lock().slot.is_some()
    }
}

/// One live view of a slot: counted while it lives.
pub(crate) struct Export {
    held: Arc<dyn Unexport>,
    address: *mut u8,
}

// SAFETY: `address` is only a number to the export (it never dereferences
// it); the memory it names is kept mapped by `held`, which is Send + Sync.
unsafe impl Send for Export {}
// SAFETY: as above: the export gives no access through `address`.
unsafe impl Sync for Export {}

trait Unexport: Send + Sync {
    fn unexport(&self);
}

impl<T: Slot> Unexport for Held<T> {
    fn unexport(&self) {
        Held::unexport(self)
    }
}

impl Export {
    pub(crate) fn new<T: Slot>(held: &Arc<Held<T>>) -> PyResult<Self> {
        let address = held.export()?;
        Ok(Self {
            held: held.clone(),
            address,
        })
    }

    pub(crate) fn address(&self) -> *mut u8 {
        self.address
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        self.held.unexport();
    }
}

/// The `base` of the numpy arrays made by `array()`: holds their export.
#[pyclass(module = "framering", frozen)]
pub(crate) struct ViewBase {
    _export: Export,
}

/// The shape, strides and element type of a slot's view.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) shape: [isize; 3],
    pub(crate) strides: [isize; 3],
    pub(crate) dtype: Dtype,
}

impl Layout {
    pub(crate) fn new(shape: framering_ring::FrameShape) -> Self {
        let item = shape.dtype.size() as isize;
        let (h, w, c) = (
            shape.height as isize,
            shape.width as isize,
            shape.channels as isize,
        );
        Self {
            shape: [h, w, c],
            strides: [w * c * item, c * item, item],
            dtype: shape.dtype,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        (self.shape.iter().product::<isize>() as usize) * self.dtype.size()
    }

    /// The buffer protocol's format string of the element type.
    pub(crate) fn format(&self) -> &'static CStr {
        match self.dtype {
            Dtype::U8 => c"B",
            Dtype::U16 => c"H",
            Dtype::F32 => c"f",
        }
    }

    pub(crate) fn shape_tuple(&self) -> (usize, usize, usize) {
        (
            self.shape[0] as usize,
            self.shape[1] as usize,
            self.shape[2] as usize,
        )
    }
}

pub(crate) fn descr<'py>(py: Python<'py>, dtype: Dtype) -> Bound<'py, numpy::PyArrayDescr> {
    match dtype {
        Dtype::U8 => numpy::dtype::<u8>(py),
        Dtype::U16 => numpy::dtype::<u16>(py),
        Dtype::F32 => numpy::dtype::<f32>(py),
    }
}

/// A numpy array over the slot's memory, counted as one view while it (or
/// any array derived from it) lives. Read-only unless `writable`.
pub(crate) fn ndarray<'py, T: Slot>(
    py: Python<'py>,
    held: &Arc<Held<T>>,
    layout: &Layout,
    writable: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let export = Export::new(held)?;
    let data = export.address().cast::<c_void>();
    // Made before the array so that a failure leaves nothing to undo but
    // dropping the export.
    let base = Bound::new(py, ViewBase { _export: export })?;
    let mut dims: [npy_intp; 3] = layout.shape;
    let mut flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED;
    if writable {
        flags |= NPY_ARRAY_WRITEABLE;
    }
    let descr = descr(py, layout.dtype).into_dtype_ptr();
    // SAFETY: `data` is the start of the slot, which holds
    // shape.product() elements of `dtype`, page-aligned, and stays mapped
    // and owned by us while `base` lives (its export keeps the slot held);
    // the array keeps `base` alive (PyArray_SetBaseObject below). The
    // descriptor reference is stolen by the call, as numpy documents;
    // `dims` is read during the call only; strides NULL means C order.
    let array = unsafe {
        PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, NpyTypes::PyArray_Type),
            descr,
            3,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            data,
            flags as c_int,
            std::ptr::null_mut(),
        )
    };
    if array.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `array` is a new, non-null reference that we own.
    let array = unsafe { Bound::from_owned_ptr(py, array) };
    // SAFETY: `array` is a numpy array (made just above) without a base;
    // the call steals the reference to `base`, also when it fails.
    let set =
        unsafe { PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), base.into_ptr()) };
    if set < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(array)
}

/// Fills a `Py_buffer` for a buffer-protocol export of the slot (one counted
/// view until `__releasebuffer__`).
///
/// # Safety
/// `view` must be the `Py_buffer` that Python passed to `__getbuffer__` of
/// `owner`, and `layout` must live inside `owner` (a frozen pyclass), so
/// that the shape and strides it points at outlive the export.
pub(crate) unsafe fn fill_buffer<T: Slot>(
    owner: Bound<'_, PyAny>,
    held: &Arc<Held<T>>,
    layout: &Layout,
    view: *mut pyo3::ffi::Py_buffer,
    flags: c_int,
    writable: bool,
) -> PyResult<()> {
    use pyo3::ffi;
    if view.is_null() {
        return Err(PyBufferError::new_err("NULL view in __getbuffer__"));
    }
    if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE && !writable {
        return Err(PyBufferError::new_err("a consumer's frame is read-only"));
    }
    let address = held.export()?;
    // SAFETY: the caller passes the view Python gave us; every pointer we
    // store points into `layout` inside `owner`, which the view keeps alive
    // (`obj` holds a reference to it) until `__releasebuffer__`.
    unsafe {
        let v = &mut *view;
        v.obj = owner.into_ptr();
        v.buf = address.cast();
        v.len = layout.bytes() as ffi::Py_ssize_t;
        v.readonly = c_int::from(!writable);
        v.itemsize = layout.dtype.size() as ffi::Py_ssize_t;
        v.format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            layout.format().as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        let nd = flags & ffi::PyBUF_ND == ffi::PyBUF_ND;
        // Without PyBUF_ND the consumer asked for plain bytes.
        v.ndim = if nd { 3 } else { 1 };
        v.shape = if nd {
            layout.shape.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        v.strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
            layout.strides.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        v.suboffsets = std::ptr::null_mut();
        v.internal = std::ptr::null_mut();
    }
    Ok(())
}

/// Undoes one [`fill_buffer`].
pub(crate) fn release_buffer<T: Slot>(held: &Held<T>) {
    held.unexport();
}
