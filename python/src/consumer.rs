//! `framering.Consumer` and `framering.Frame`.

use crate::array::{self, Held, Layout, Slot};
use crate::calls::{check_pid, deadline_after, seconds, SLICE};
use crate::{dlpack, errors};
use framering_ring::{
    AttachError, Consumer as RingConsumer, DetachError, DetachedFrame, Frame as RingFrame,
    FrameInfo, OpenError, Take,
};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a consumer that holds frames waits between two looks at
/// whether they keep the producer from a free slot (see `next_frame`).
const HOLDING_SLICE: Duration = Duration::from_millis(5);

/// A taken frame: in its slot, counted among its consumer's outstanding
/// frames until it is handed back, or detached from it (a private copy at
/// the same address, see `Consumer::detach_held`).
pub(crate) struct Taken {
    pixels: Pixels,
    outstanding: Arc<AtomicUsize>,
}

enum Pixels {
    InSlot(RingFrame),
    Detached(DetachedFrame),
    /// Only inside `Taken::detach`, under the frame's lock.
    Moving,
}

impl Slot for Taken {
    fn address(&mut self) -> *mut u8 {
        // Never written through: a consumer's views are read-only. Detached,
        // the address is the same.
        match &self.pixels {
            Pixels::InSlot(l) => l.pixels().as_ptr().cast_mut(),
            Pixels::Detached(d) => d.pixels().as_ptr().cast_mut(),
            Pixels::Moving => std::ptr::null_mut(),
        }
    }
}

impl Taken {
    fn user_meta(&self) -> &[u8] {
        match &self.pixels {
            Pixels::InSlot(l) => l.user_meta(),
            Pixels::Detached(d) => d.user_meta(),
            Pixels::Moving => &[],
        }
    }

    /// Whether the frame holds a slot that the producer, out of free slots,
    /// would get back if we handed it over.
    fn blocks_producer(&mut self) -> bool {
        matches!(&self.pixels, Pixels::InSlot(l) if l.blocks_producer())
    }

    /// Copies the frame out of its slot if it holds one (that the producer
    /// waits for, unless `all`), and hands the slot back; the views keep
    /// their address and pixels. Whether it did.
    fn detach(&mut self, all: bool) -> Result<bool, DetachError> {
        if !(matches!(self.pixels, Pixels::InSlot(_)) && (all || self.blocks_producer())) {
            return Ok(false);
        }
        let Pixels::InSlot(frame) = std::mem::replace(&mut self.pixels, Pixels::Moving) else {
            return Ok(false); // checked just above
        };
        match frame.detach() {
            Ok(d) => {
                self.pixels = Pixels::Detached(d);
                self.outstanding.fetch_sub(1, Ordering::Relaxed);
                Ok(true)
            }
            Err((frame, e)) => {
                self.pixels = Pixels::InSlot(frame);
                Err(e)
            }
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        // The frame (a field) drops right after: the slot goes back.
        if matches!(self.pixels, Pixels::InSlot(_)) {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What a wait for a frame ended with.
enum Got {
    Frame(RingFrame),
    End,
    Failed(String),
}

/// A consumer of a framering ring (see the module's stub for the API).
#[pyclass(module = "framering", frozen)]
pub struct Consumer {
    ring: RingConsumer,
    layout: Layout,
    /// Frames taken and not yet handed back (held by the user or views).
    outstanding: Arc<AtomicUsize>,
    /// The frame of the current iteration (`for f in c:`), closed at the
    /// next one.
    current: Mutex<Option<Arc<Held<Taken>>>>,
    /// The last frame taken from each slot (index: slot): the frames that
    /// may hold slots, for `detach_held`.
    by_slot: Mutex<Vec<Weak<Held<Taken>>>>,
    /// Frames copied out of their slots so far.
    detached: AtomicU64,
    pid: u32,
}

impl Consumer {
    fn wrap(&self, frame: RingFrame) -> Frame {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let info = *frame.info();
        let held = Held::new(Taken {
            pixels: Pixels::InSlot(frame),
            outstanding: self.outstanding.clone(),
        });
        if let Some(w) = self.by_slot.lock().get_mut(info.slot as usize) {
            *w = Arc::downgrade(&held);
        }
        Frame {
            held,
            info,
            layout: self.layout,
        }
    }

    /// Runs `f` on every frame that may still hold a slot (alive through the
    /// frame object or views of it) until it returns true; whether it did.
    fn any_held(&self, mut f: impl FnMut(&mut Taken) -> bool) -> bool {
        let table = self.by_slot.lock();
        table
            .iter()
            .filter_map(Weak::upgrade)
            .any(|held| held.with_present(&mut f).unwrap_or(false))
    }

    /// Copies out of their slots the frames this consumer holds (through
    /// views, or the frames themselves) that keep a producer without free
    /// slot waiting (`all`: every one), and hands those slots back: their
    /// views keep their address and pixels (a private copy now), and the
    /// ring goes on. This is what lets `for f in c: a = f.array()` (whose
    /// `a` keeps the previous frame while the next is awaited) run with as
    /// many consumers as slots. Returns the copies made.
    fn detach_held(&self, all: bool) -> Result<u64, DetachError> {
        let mut made = 0;
        let mut failed = None;
        self.any_held(|t| {
            match t.detach(all) {
                Ok(copied) => made += u64::from(copied),
                Err(e) => failed = Some(e),
            }
            failed.is_some()
        });
        self.detached.fetch_add(made, Ordering::Relaxed);
        failed.map_or(Ok(made), Err)
    }

    /// The next frame, `None` at the end of the stream.
    fn next_frame(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Frame>> {
        check_pid(self.pid, "Consumer")?;
        if let Some(f) = self.ring.take_now().map_err(errors::take)? {
            return Ok(Some(self.wrap(f)));
        }
        let deadline = timeout.map(deadline_after);
        loop {
            let holding = self.outstanding.load(Ordering::Relaxed) > 0;
            // `take` reports the end only once every frame came back, which
            // frames the user holds never will.
            if holding && self.ring.stream_ended().map_err(errors::take)? {
                // The producer waits for every frame to come back before it
                // exits: let the ones still kept go, as copies.
                py.detach(|| self.detach_held(true))
                    .map_err(errors::detach)?;
                return Ok(None);
            }
            // We are about to wait while holding frames: if the producer
            // waits for one of their slots, both would wait forever. Copy
            // those frames out and hand the slots back.
            if holding && self.any_held(Taken::blocks_producer) {
                // One more look first: a frame queued meanwhile needs no copy.
                if let Some(f) = self.ring.take_now().map_err(errors::take)? {
                    return Ok(Some(self.wrap(f)));
                }
                py.detach(|| self.detach_held(false))
                    .map_err(errors::detach)?;
            }
            // Holding frames, look again soon: the producer may run out of
            // slots while we wait (another group handing its share back),
            // and nothing would wake us then.
            let most = if holding { HOLDING_SLICE } else { SLICE };
            let slice = deadline.map_or(most, |d| {
                most.min(d.saturating_duration_since(Instant::now()))
            });
            let got = py.detach(|| match self.ring.take(slice) {
                Ok(Take::Frame(f)) => Ok(Got::Frame(f)),
                Ok(Take::EndOfStream | Take::ProducerGone { .. }) => Ok(Got::End),
                Ok(Take::ProducerFailed { reason }) => Ok(Got::Failed(reason.to_string())),
                Err(e) => Err(e),
            });
            match got {
                Ok(Got::Frame(f)) => return Ok(Some(self.wrap(f))),
                Ok(Got::End) => return Ok(None),
                Ok(Got::Failed(reason)) => {
                    return Err(errors::ProducerFailed::new_err(format!(
                        "ring {:?}: the producer failed: {reason}",
                        self.ring.name()
                    )))
                }
                Err(e) if e.is_timeout() => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(errors::take(e));
                    }
                }
                Err(e) => return Err(errors::take(e)),
            }
        }
    }
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (ring, group = "default", timeout = 30.0, latest = false))]
    fn new(py: Python<'_>, ring: &str, group: &str, timeout: f64, latest: bool) -> PyResult<Self> {
        let deadline = deadline_after(seconds(Some(timeout))?.unwrap_or_default());
        let ring =
            loop {
                let wait = SLICE.min(deadline.saturating_duration_since(Instant::now()));
                let attached = py.detach(|| {
                    RingConsumer::builder(ring)
                        .group(group)
                        .latest(latest)
                        .detachable()
                        .wait_for_ring(wait)
                        .attach()
                });
                match attached {
                    Ok(c) => break c,
                    Err(AttachError::Open(
                        OpenError::NotFound { .. } | OpenError::NotReady { .. },
                    )) if Instant::now() < deadline => py.check_signals()?,
                    Err(e) => return Err(errors::attach(e)),
                }
            };
        Ok(Self {
            layout: Layout::new(ring.shape()),
            by_slot: Mutex::new((0..ring.slots()).map(|_| Weak::new()).collect()),
            ring,
            outstanding: Arc::new(AtomicUsize::new(0)),
            current: Mutex::new(None),
            detached: AtomicU64::new(0),
            pid: framering_ring::process_id(),
        })
    }

    /// Takes the next frame, waiting up to `timeout` seconds (None: as long
    /// as it takes); None at the end of the stream.
    #[pyo3(signature = (timeout = None))]
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Frame>> {
        self.next_frame(py, seconds(timeout)?)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Frame>> {
        if let Some(previous) = self.current.lock().take() {
            previous.close();
        }
        let frame = self.next_frame(py, None)?;
        if let Some(f) = &frame {
            *self.current.lock() = Some(f.held.clone());
        }
        Ok(frame)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        if let Some(previous) = self.current.lock().take() {
            previous.close();
        }
    }

    /// The ring's name.
    #[getter]
    fn name(&self) -> &str {
        self.ring.name()
    }

    /// The group this consumer joined.
    #[getter]
    fn group(&self) -> &str {
        self.ring.group()
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
        self.ring.slots()
    }

    /// Bytes of user metadata a frame can carry.
    #[getter]
    fn user_meta_capacity(&self) -> usize {
        self.ring.user_meta_capacity()
    }

    /// Frames taken so far.
    #[getter]
    fn frames_taken(&self) -> u64 {
        self.ring.frames_taken()
    }

    /// Frames taken and not handed back yet.
    #[getter]
    fn held(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Frames copied out of their slots so far: kept alive (by views, or
    /// the frames themselves) while this consumer waited for a frame and the
    /// producer for their slots, or at the end of the stream.
    #[getter]
    fn detached(&self) -> u64 {
        self.detached.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        let (h, w, c) = self.layout.shape_tuple();
        format!(
            "<framering.Consumer ring={:?} group={:?} shape=({h}, {w}, {c}) dtype={} held={}>",
            self.ring.name(),
            self.ring.group(),
            self.layout.dtype.name(),
            self.held()
        )
    }
}

/// A frame taken from the ring, read in place.
#[pyclass(module = "framering", frozen)]
pub struct Frame {
    held: Arc<Held<Taken>>,
    info: FrameInfo,
    layout: Layout,
}

impl Drop for Frame {
    fn drop(&mut self) {
        // Garbage-collected: the slot goes back once no view is alive.
        self.held.close();
    }
}

#[pymethods]
impl Frame {
    /// A read-only numpy array (H, W, C) over the slot.
    fn array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array::ndarray(py, &self.held, &self.layout, false)
    }

    #[pyo3(signature = (dtype = None, copy = None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = self.array(py)?;
        match (dtype, copy) {
            (None, None | Some(false)) => Ok(a),
            (dtype, _) => {
                a.call_method1("astype", (dtype.map_or_else(|| a.getattr("dtype"), Ok)?,))
            }
        }
    }

    /// Hands the slot back now; `BufferError` if views of it are alive.
    fn release(&self) -> PyResult<()> {
        drop(self.held.take_strict("frame")?);
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        self.held.close();
    }

    /// Sequence number: 0, 1, 2, … in publish order.
    #[getter]
    fn seq(&self) -> u64 {
        self.info.seq
    }

    /// When it was published: CLOCK_MONOTONIC ns.
    #[getter]
    fn publish_ns(&self) -> u64 {
        self.info.publish_ns
    }

    /// When it was captured: CLOCK_REALTIME ns.
    #[getter]
    fn capture_ns(&self) -> u64 {
        self.info.capture_ns
    }

    /// Presentation timestamp (ns), if the producer gave one.
    #[getter]
    fn pts_ns(&self) -> Option<i64> {
        self.info.pts_ns
    }

    /// Where the frame came from, as the producer said.
    #[getter]
    fn source(&self) -> String {
        String::from_utf8_lossy(self.info.source()).into_owned()
    }

    /// Source size (width, height) before fitting.
    #[getter]
    fn src_size(&self) -> (u32, u32) {
        (self.info.src_width, self.info.src_height)
    }

    /// Deliveries before this one, to consumers that died holding it.
    #[getter]
    fn redeliveries(&self) -> u32 {
        self.info.redeliveries
    }

    /// Index of the slot holding the frame.
    #[getter]
    fn slot(&self) -> u32 {
        self.info.slot
    }

    /// The frame's user metadata (a copy).
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.held.with(|t| PyBytes::new(py, t.user_meta()))
    }

    /// The shape (height, width, channels).
    #[getter]
    fn shape(&self) -> (usize, usize, usize) {
        self.layout.shape_tuple()
    }

    /// The numpy dtype name.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.layout.dtype.name()
    }

    /// Views of the slot alive now (arrays and their slices, memoryviews,
    /// DLPack tensors).
    #[getter]
    fn views(&self) -> usize {
        self.held.exports()
    }

    /// Whether the slot was handed back.
    #[getter]
    fn released(&self) -> bool {
        !self.held.is_held()
    }

    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = stream; // host memory: no stream to synchronise with
        dlpack::capsule(
            py,
            &self.held,
            &self.layout,
            true,
            max_version,
            dl_device,
            copy,
        )
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0)
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
        // SAFETY: `view` is Python's; `layout` is inside `slf`, a frozen
        // pyclass that the view keeps alive (fill_buffer stores `slf` in
        // `view.obj`).
        unsafe { array::fill_buffer(slf.into_any(), &held, &*layout, view, flags, false) }
    }

    /// # Safety
    /// Called by Python with a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        array::release_buffer(&self.held);
    }

    fn __repr__(&self) -> String {
        format!(
            "<framering.Frame seq={} slot={} source={:?} views={} released={}>",
            self.info.seq,
            self.info.slot,
            self.source(),
            self.views(),
            self.released()
        )
    }
}
