//! DLPack export of a frame (`__dlpack__`), so that
//! `np.from_dlpack(frame)` / `torch.from_dlpack(frame)` view the slot
//! without a copy. DLPack 1.0 (a versioned managed tensor, flagged read-only
//! for a consumer's frame) when the caller's `max_version` allows it, the
//! legacy capsule otherwise — but only for a writable slot: the legacy
//! capsule has no flags, so an importer would get a writable tensor over a
//! consumer's frame (memory other consumers read). A read-only export without
//! `max_version >= (1, 0)` is refused with a `BufferError` that names
//! DLPack 1.0. The tensor holds one counted view ([`Export`]); its deleter
//! hands that view back.

use crate::array::{Export, Held, Layout, Slot};
use framering_ring::Dtype;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_void, CStr};
use std::sync::Arc;

const KDL_CPU: i32 = 1;
const KDL_UINT: u8 = 1;
const KDL_FLOAT: u8 = 2;
const FLAG_READ_ONLY: u64 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// A managed tensor and what it points at, in one allocation (the tensor
/// first, so that a pointer to it is a pointer to the whole).
#[repr(C)]
struct Managed<M> {
    tensor: M,
    shape: [i64; 3],
    strides: [i64; 3],
    _export: Export,
}

const NAME: &CStr = c"dltensor";
const NAME_VERSIONED: &CStr = c"dltensor_versioned";

fn tensor(export: &Export, layout: &Layout) -> DLTensor {
    let (code, bits) = match layout.dtype {
        Dtype::U8 => (KDL_UINT, 8),
        Dtype::U16 => (KDL_UINT, 16),
        Dtype::F32 => (KDL_FLOAT, 32),
    };
    DLTensor {
        data: export.address().cast(),
        device: DLDevice {
            device_type: KDL_CPU,
            device_id: 0,
        },
        ndim: 3,
        dtype: DLDataType {
            code,
            bits,
            lanes: 1,
        },
        // Filled in once the box is at its final address.
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    }
}

fn dims(v: [isize; 3]) -> [i64; 3] {
    v.map(|x| x as i64)
}

/// The deleter of a legacy tensor made by [`capsule`]: frees it, handing its
/// view back.
///
/// # Safety
/// `t` is null, or a tensor made by [`capsule`] as a legacy
/// `DLManagedTensor` (the first field of a boxed `Managed`) that was not
/// freed yet; after the call it is dangling. DLPack calls the deleter once.
unsafe extern "C" fn delete_legacy(t: *mut DLManagedTensor) {
    if !t.is_null() {
        // SAFETY: `t` came from Box::into_raw of a Managed<DLManagedTensor>
        // (the tensor is its first field) and the protocol calls the deleter
        // once.
        drop(unsafe { Box::from_raw(t.cast::<Managed<DLManagedTensor>>()) });
    }
}

/// The deleter of a DLPack 1.0 tensor made by [`capsule`].
///
/// # Safety
/// As for [`delete_legacy`], for a `DLManagedTensorVersioned`.
unsafe extern "C" fn delete_versioned(t: *mut DLManagedTensorVersioned) {
    if !t.is_null() {
        // SAFETY: as in `delete_legacy`, for the versioned tensor.
        drop(unsafe { Box::from_raw(t.cast::<Managed<DLManagedTensorVersioned>>()) });
    }
}

/// Frees a capsule's tensor if no consumer took it (a consumer renames the
/// capsule to `used_dltensor…`).
unsafe extern "C" fn capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls this with the capsule being destroyed; the names
    // are checked before the pointer is used, and IsValid sets no error.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, NAME_VERSIONED.as_ptr()) == 1 {
            let t = ffi::PyCapsule_GetPointer(capsule, NAME_VERSIONED.as_ptr())
                .cast::<DLManagedTensorVersioned>();
            if let Some(d) = (*t).deleter {
                d(t);
            }
        } else if ffi::PyCapsule_IsValid(capsule, NAME.as_ptr()) == 1 {
            let t = ffi::PyCapsule_GetPointer(capsule, NAME.as_ptr()).cast::<DLManagedTensor>();
            if let Some(d) = (*t).deleter {
                d(t);
            }
        }
    }
}

/// `__dlpack__` of a slot.
pub(crate) fn capsule<'py, T: Slot>(
    py: Python<'py>,
    held: &Arc<Held<T>>,
    layout: &Layout,
    read_only: bool,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(dev) = dl_device {
        if dev != (KDL_CPU, 0) {
            return Err(PyValueError::new_err(
                "a frame lives in host memory (kDLCPU, 0)",
            ));
        }
    }
    if copy == Some(true) {
        return Err(PyBufferError::new_err(
            "__dlpack__(copy=True): framering exports the slot itself; copy it with numpy",
        ));
    }
    let versioned = max_version.is_some_and(|(major, _)| major >= 1);
    if read_only && !versioned {
        return Err(PyBufferError::new_err(
            "a consumer's frame is read-only, which only DLPack 1.0 can say: call __dlpack__(max_version=(1, 0)), as numpy's from_dlpack does (the legacy capsule would be writable)",
        ));
    }
    let export = Export::new(held)?;
    let t = tensor(&export, layout);
    let (ptr, name) = if versioned {
        let m = Box::into_raw(Box::new(Managed {
            tensor: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 0 },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: if read_only { FLAG_READ_ONLY } else { 0 },
                dl_tensor: t,
            },
            shape: dims(layout.shape),
            strides: dims(layout.strides).map(|s| s / layout.dtype.size() as i64),
            _export: export,
        }));
        // SAFETY: `m` is the live allocation made just above; the tensor's
        // shape and strides point into it and live as long as it does.
        unsafe {
            (*m).tensor.manager_ctx = m.cast();
            (*m).tensor.dl_tensor.shape = (*m).shape.as_mut_ptr();
            (*m).tensor.dl_tensor.strides = (*m).strides.as_mut_ptr();
        }
        (m.cast::<c_void>(), NAME_VERSIONED)
    } else {
        let m = Box::into_raw(Box::new(Managed {
            tensor: DLManagedTensor {
                dl_tensor: t,
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_legacy),
            },
            shape: dims(layout.shape),
            strides: dims(layout.strides).map(|s| s / layout.dtype.size() as i64),
            _export: export,
        }));
        // SAFETY: as above.
        unsafe {
            (*m).tensor.manager_ctx = m.cast();
            (*m).tensor.dl_tensor.shape = (*m).shape.as_mut_ptr();
            (*m).tensor.dl_tensor.strides = (*m).strides.as_mut_ptr();
        }
        (m.cast::<c_void>(), NAME)
    };
    // SAFETY: `ptr` is a live managed tensor of the kind `name` says; the
    // destructor frees it unless a consumer took it (and renamed the capsule).
    let capsule = unsafe { ffi::PyCapsule_New(ptr, name.as_ptr(), Some(capsule_destructor)) };
    if capsule.is_null() {
        // SAFETY: the capsule was not made, so the tensor is still ours.
        unsafe { capsule_destructor_fallback(ptr, name) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference we own.
    Ok(unsafe { Bound::from_owned_ptr(py, capsule) })
}

/// Frees a tensor that never made it into a capsule.
///
/// # Safety
/// `ptr` must be a tensor made by [`capsule`] with the same `name`, not yet
/// freed.
unsafe fn capsule_destructor_fallback(ptr: *mut c_void, name: &CStr) {
    // SAFETY: per the contract.
    unsafe {
        if name == NAME_VERSIONED {
            delete_versioned(ptr.cast());
        } else {
            delete_legacy(ptr.cast());
        }
    }
}
