//! The user API of the ring: a [`Producer`] that fills and publishes frames,
//! and [`Consumer`]s that take them in place and hand them back.
//!
//! Ownership of a slot moves only through the slot word ([`crate::slot`]) and
//! the queues ([`crate::queue`]):
//!
//! ```text
//!  producer free pool ──acquire──▶ WRITING ──publish──▶ READY(pos) ──take (CAS)──▶ READING(c, pos)
//!          ▲                                                                          │
//!          └──────────── collect (validates READING(c)) ◀── consumer c's return queue ◀┘ drop(Frame)
//! ```
//!
//! The producer keeps its free slots in a LIFO stack, so the slot it fills
//! next is the one most recently handed back — still warm in the cache.
//!
//! A consumer that dies holding frames is noticed by the producer (its
//! process identity is gone: see [`crate::process`]); the producer collects
//! what it had returned and re-publishes every slot still marked as read by
//! it, with the same sequence number. Delivery is therefore at-least-once
//! across crashes and exactly-once without them.
//!
//! ```no_run
//! use framering::layout::Shape;
//! use framering::pool::{Consumer, FrameMeta, Producer, RingOptions, Take};
//! use std::time::Duration;
//!
//! let shape = Shape { slots: 4, height: 2, width: 2, channels: 3, max_consumers: 4 };
//! let mut producer = Producer::create("doc-ring", shape, &RingOptions::default())?;
//! let consumer = Consumer::attach("doc-ring", None, &RingOptions::default())?;
//!
//! let mut slot = producer.acquire(Duration::from_secs(1))?.expect("a free slot");
//! slot.data_mut().fill(7);
//! producer.publish(slot, &FrameMeta { src_width: 2, src_height: 2, name: b"seven" })?;
//!
//! match consumer.take(Duration::from_secs(1))? {
//!     Take::Frame(frame) => assert!(frame.data().iter().all(|&b| b == 7)),
//!     _ => unreachable!(),
//! }
//! # drop(consumer); producer.finish(); producer.unlink()?;
//! # Ok::<(), framering::pool::PoolError>(())
//! ```

use crate::clock::monotonic_ns;
use crate::event::WaitStrategy;
use crate::layout::{Shape, FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_RUNNING, NAME_MAX};
use crate::process::ProcessId;
use crate::queue::{Corrupt, ReadyQueue, ReturnQueue};
use crate::segment::{Segment, SegmentError};
use crate::slot::SlotState;
use crate::sync::{AtomicU64, Ordering};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle waiter wakes to check its peers.
const PEER_CHECK: Duration = Duration::from_millis(100);
/// How often a busy producer looks for dead consumers.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// Errors of the ring API.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A shared structure holds garbage.
    #[error("ring {name:?}: {source}")]
    Corrupt {
        /// Ring name.
        name: String,
        /// What was wrong.
        source: Corrupt,
    },
    /// A live producer owns the ring.
    #[error("ring {name:?} is in use by a running producer (pid {pid}); stop it or choose another ring.name")]
    InUse {
        /// Ring name.
        name: String,
        /// The live producer.
        pid: u32,
    },
    /// The ring's frames are not the shape this process expects.
    #[error("ring {name:?} holds {ring_h}x{ring_w}x{ring_c} frames, but this consumer expects {want_h}x{want_w}x{want_c}")]
    ShapeMismatch {
        /// Ring name.
        name: String,
        /// Ring height.
        ring_h: u32,
        /// Ring width.
        ring_w: u32,
        /// Ring channels.
        ring_c: u32,
        /// Expected height.
        want_h: u32,
        /// Expected width.
        want_w: u32,
        /// Expected channels.
        want_c: u32,
    },
    /// Every consumer table entry is taken.
    #[error("ring {name:?} already has its maximum of {max} consumers attached")]
    TooManyConsumers {
        /// Ring name.
        name: String,
        /// Table size.
        max: u32,
    },
}

/// Options shared by producers and consumers.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Mode of a created segment (default 0600).
    pub mode: u32,
    /// How to wait for frames or free slots.
    pub wait: WaitStrategy,
}

impl Default for RingOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            wait: WaitStrategy::default(),
        }
    }
}

/// What the producer says about a frame it publishes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta<'a> {
    /// Width of the source image.
    pub src_width: u32,
    /// Height of the source image.
    pub src_height: u32,
    /// Source name (truncated to [`NAME_MAX`] bytes).
    pub name: &'a [u8],
}

/// Metadata of a taken frame, copied out of the segment (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Sequence number.
    pub seq: u64,
    /// Publish time (CLOCK_MONOTONIC ns).
    pub publish_ns: u64,
    /// Source width.
    pub src_width: u32,
    /// Source height.
    pub src_height: u32,
    /// Earlier deliveries of this frame (to consumers that died).
    pub redeliveries: u32,
    /// Index of the slot that holds it.
    pub slot: u32,
    name: [u8; NAME_MAX],
    name_len: usize,
}

impl FrameInfo {
    /// The source name's bytes.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

fn ring_corrupt(seg: &Segment, source: Corrupt) -> PoolError {
    PoolError::Corrupt {
        name: seg.name().to_string(),
        source,
    }
}

fn ready_queue(seg: &Segment) -> ReadyQueue<'_> {
    ReadyQueue::new(seg.ready_ctrl(), seg.ready_cells(), seg.slot_states())
}

fn return_queue(seg: &Segment, consumer: usize) -> ReturnQueue<'_> {
    ReturnQueue::new(&seg.consumers()[consumer].ret, seg.return_cells(consumer))
}

fn store_name(words: &[AtomicU64], name: &[u8]) -> usize {
    let len = name.len().min(words.len() * 8);
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        let lo = (i * 8).min(len);
        let hi = (i * 8 + 8).min(len);
        b[..hi - lo].copy_from_slice(&name[lo..hi]);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        if hi == len {
            break;
        }
    }
    len
}

/// The single writer of a ring.
#[derive(Debug)]
pub struct Producer {
    seg: Arc<Segment>,
    free: Vec<u32>,
    wait: WaitStrategy,
    last_reap: Instant,
    /// CLOCK_MONOTONIC ns at which a busy producer next looks for dead
    /// consumers (compared with the publish timestamp it reads anyway).
    next_reap_ns: u64,
    redelivered: u64,
    bad_returns: u64,
    /// Consumer entries whose return queue held garbage (bit per entry).
    quarantined: u64,
}

/// A slot the producer owns and may fill. Publish it with
/// [`Producer::publish`] or give it back with [`Producer::discard`]. It can be
/// sent to another thread (e.g. a decoder) while the producer keeps working.
#[derive(Debug)]
pub struct WriteSlot {
    seg: Arc<Segment>,
    index: u32,
}

impl WriteSlot {
    /// The slot's index in the pool.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The frame's bytes, H×W×C row-major, to fill in place.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: a WriteSlot is created only by `Producer::acquire` for a
        // slot taken out of the producer's free pool (state WRITING), is not
        // Clone, and is consumed by `publish`/`discard`; so it is the only
        // handle to this slot, no consumer holds the slot, and `&mut self`
        // makes the returned slice unique.
        unsafe { self.seg.frame_mut(self.index) }
    }

    /// The frame's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: as in `data_mut`; `&self` rules out a live `&mut` slice.
        unsafe { self.seg.frame(self.index) }
    }
}

impl Producer {
    /// Creates the ring `name` and becomes its producer. A segment of that
    /// name left by a dead producer is reclaimed; one whose producer is alive
    /// is refused with [`PoolError::InUse`].
    pub fn create(name: &str, shape: Shape, opts: &RingOptions) -> Result<Producer, PoolError> {
        let seg = match Segment::create(name, shape, opts.mode) {
            Ok(seg) => seg,
            Err(SegmentError::Exists { .. }) => {
                Self::reclaim_stale(name)?;
                Segment::create(name, shape, opts.mode)?
            }
            Err(e) => return Err(e.into()),
        };
        let me = ProcessId::current();
        let h = seg.header();
        h.producer_start_ticks
            .store(me.start_ticks, Ordering::Relaxed);
        h.producer_pid.store(me.pid, Ordering::Release);
        h.flags.store(FLAG_RUNNING, Ordering::Release);
        let free = (0..shape.slots).rev().collect();
        Ok(Producer {
            seg: Arc::new(seg),
            free,
            wait: opts.wait,
            last_reap: Instant::now(),
            next_reap_ns: 0,
            redelivered: 0,
            bad_returns: 0,
            quarantined: 0,
        })
    }

    fn reclaim_stale(name: &str) -> Result<(), PoolError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match Segment::open(name) {
                Ok(old) => {
                    let h = old.header();
                    let owner = ProcessId {
                        pid: h.producer_pid.load(Ordering::Acquire),
                        start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
                    };
                    if owner.pid != 0 && owner.is_alive() {
                        return Err(PoolError::InUse {
                            name: name.into(),
                            pid: owner.pid,
                        });
                    }
                    tracing::warn!(
                        ring = name,
                        pid = owner.pid,
                        "reclaiming a ring left behind by a dead producer"
                    );
                    break;
                }
                Err(SegmentError::NotReady { .. }) if Instant::now() < deadline => {
                    // Maybe another producer is creating it right now.
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(SegmentError::NotReady { .. }) => {
                    tracing::warn!(
                        ring = name,
                        "reclaiming a ring whose creator never finished initialising it"
                    );
                    break;
                }
                Err(SegmentError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        match Segment::unlink(name) {
            Ok(()) | Err(SegmentError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Frames re-published because their consumer died.
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }

    /// Slots currently in the producer's hands (free pool).
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Collects returned slots from every consumer's return queue.
    fn collect(&mut self) -> usize {
        let seg = &*self.seg;
        let states = seg.slot_states();
        let mut got = 0;
        for c in 0..seg.geometry().max_consumers as usize {
            if self.quarantined & (1 << c) != 0 {
                continue;
            }
            let q = return_queue(seg, c);
            if q.is_empty() {
                continue;
            }
            let free = &mut self.free;
            let bad = &mut self.bad_returns;
            let drained = q.drain(|s| match states.get(s as usize) {
                Some(w)
                    if matches!(
                        SlotState::decode(w.load(Ordering::Acquire)),
                        Some(SlotState::Reading { owner, .. }) if owner as usize == c
                    ) =>
                {
                    // We own it again; nobody else writes this word now.
                    w.store(SlotState::Free.encode(), Ordering::Relaxed);
                    free.push(s);
                }
                _ => {
                    *bad += 1;
                    tracing::warn!(consumer = c, slot = s, "ignoring a bogus slot return");
                }
            });
            match drained {
                Ok(n) => got += n,
                Err(e) => {
                    // A misbehaving consumer must not stop the ring: ignore its
                    // queue; the slots it holds come back when it exits or dies.
                    self.quarantined |= 1 << c;
                    tracing::error!(consumer = c, error = %e, "ignoring a consumer whose return queue is corrupt");
                }
            }
        }
        got
    }

    /// Re-publishes the frames of consumers that died, and frees their table
    /// entries. Returns the number of frames re-published.
    pub fn reap_dead_consumers(&mut self) -> Result<u64, PoolError> {
        self.last_reap = Instant::now();
        let seg = self.seg.clone();
        let mut total = 0;
        for (c, entry) in seg.consumers().iter().enumerate() {
            let owner = entry.owner.load(Ordering::Acquire);
            if owner == 0 || ProcessId::owner_word_alive(owner) {
                continue;
            }
            // Whatever it handed back before dying is free.
            self.collect();
            let mut n = 0;
            for (s, w) in seg.slot_states().iter().enumerate() {
                if matches!(SlotState::decode(w.load(Ordering::Acquire)),
                    Some(SlotState::Reading { owner, .. }) if owner as usize == c)
                {
                    let meta = &seg.slot_meta()[s];
                    meta.redeliveries.fetch_add(1, Ordering::Relaxed);
                    ready_queue(&seg)
                        .push(s as u32)
                        .map_err(|e| ring_corrupt(&seg, e))?;
                    n += 1;
                }
            }
            if self.quarantined & (1 << c) != 0 {
                // Give the next owner of the entry a clean return queue.
                entry.ret.tail.store(0, Ordering::Relaxed);
                entry.ret.head.store(0, Ordering::Relaxed);
                self.quarantined &= !(1 << c);
            }
            // Release: our slot-word and queue updates happen before the
            // entry is reused.
            entry.owner.store(0, Ordering::Release);
            if n > 0 {
                seg.header().ready_event.notify();
            }
            tracing::warn!(
                consumer = c,
                pid = owner as u32,
                frames = n,
                "consumer died; its frames were published again"
            );
            total += n;
        }
        self.redelivered += total;
        seg.header().redelivered.fetch_add(total, Ordering::Relaxed);
        Ok(total)
    }

    /// Takes a free slot to fill, waiting up to `timeout` for consumers to
    /// return one. `Ok(None)` on timeout.
    pub fn acquire(&mut self, timeout: Duration) -> Result<Option<WriteSlot>, PoolError> {
        if self.free.is_empty() {
            self.collect();
        }
        // Read the clock only when there is something to wait for.
        let deadline = if self.free.is_empty() {
            Instant::now() + timeout
        } else {
            self.last_reap
        };
        while self.free.is_empty() {
            // Dead consumers are looked for at most every REAP_EVERY: it
            // reads /proc, far too slow for every failed attempt.
            if self.last_reap.elapsed() >= REAP_EVERY {
                self.reap_dead_consumers()?;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let seg = self.seg.clone();
            let slice = PEER_CHECK.min(deadline - now);
            seg.header()
                .free_event
                .wait_until(self.wait, slice, || (self.collect() > 0).then_some(()));
        }
        let index = self.free.pop().expect("free pool is not empty here");
        self.seg.slot_states()[index as usize]
            .store(SlotState::Writing.encode(), Ordering::Relaxed);
        Ok(Some(WriteSlot {
            seg: self.seg.clone(),
            index,
        }))
    }

    /// Gives a slot back unpublished (e.g. its input could not be decoded).
    pub fn discard(&mut self, slot: WriteSlot) {
        self.seg.slot_states()[slot.index as usize]
            .store(SlotState::Free.encode(), Ordering::Relaxed);
        self.free.push(slot.index);
    }

    /// Publishes a filled slot; returns its sequence number.
    pub fn publish(&mut self, slot: WriteSlot, meta: &FrameMeta<'_>) -> Result<u64, PoolError> {
        let seg = &*self.seg;
        let h = seg.header();
        // Only the producer writes `published`.
        let seq = h.published.load(Ordering::Relaxed);
        let m = &seg.slot_meta()[slot.index as usize];
        // Relaxed: published by the Release store of the slot word in `push`.
        m.seq.store(seq, Ordering::Relaxed);
        m.src_width.store(meta.src_width, Ordering::Relaxed);
        m.src_height.store(meta.src_height, Ordering::Relaxed);
        m.redeliveries.store(0, Ordering::Relaxed);
        let len = store_name(&m.name, meta.name);
        m.name_len.store(len as u32, Ordering::Relaxed);
        let now_ns = monotonic_ns();
        m.publish_ns.store(now_ns, Ordering::Relaxed);
        ready_queue(seg)
            .push(slot.index)
            .map_err(|e| ring_corrupt(seg, e))?;
        h.published.store(seq + 1, Ordering::Release);
        h.ready_event.notify();
        if now_ns >= self.next_reap_ns {
            self.next_reap_ns = now_ns + REAP_EVERY.as_nanos() as u64;
            if self.last_reap.elapsed() >= REAP_EVERY {
                self.reap_dead_consumers()?;
            }
        }
        Ok(seq)
    }

    /// Counts an input the producer skipped (shown by inspection tools).
    pub fn note_skipped(&self) {
        self.seg.header().skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.seg.header().published.load(Ordering::Relaxed)
    }

    /// Signals end of stream: consumers finish what is queued and exit.
    pub fn finish(&mut self) {
        let h = self.seg.header();
        // Release: every publish happens before a consumer sees the flag.
        h.flags.fetch_or(FLAG_END_OF_STREAM, Ordering::Release);
        h.ready_event.notify();
    }

    /// After [`finish`](Self::finish): waits until every published frame was
    /// consumed and returned (re-publishing those of consumers that die), or
    /// `timeout` passes. Returns whether the ring drained.
    pub fn drain(&mut self, timeout: Option<Duration>) -> Result<bool, PoolError> {
        let slots = self.seg.geometry().slots as usize;
        let start = Instant::now();
        let mut last_log = Instant::now();
        loop {
            self.collect();
            if self.free.len() >= slots {
                let h = self.seg.header();
                h.flags.fetch_or(FLAG_DRAINED, Ordering::Release);
                h.ready_event.notify();
                return Ok(true);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(false);
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                tracing::info!(
                    outstanding = slots - self.free.len(),
                    "waiting for consumers to finish the queued frames"
                );
            }
            let seg = self.seg.clone();
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, PEER_CHECK, || {
                    (!seg.consumers().iter().all(|c| c.ret.is_empty())).then_some(())
                });
            self.reap_dead_consumers()?;
        }
    }

    /// Removes the ring's name from /dev/shm. Attached consumers keep their
    /// mapping until they exit.
    pub fn unlink(&self) -> Result<(), PoolError> {
        Segment::unlink(self.seg.name())?;
        Ok(())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.seg.header();
        h.flags.fetch_and(!FLAG_RUNNING, Ordering::Release);
        h.ready_event.notify();
    }
}

/// What [`Consumer::take`] found.
#[derive(Debug)]
pub enum Take<'a> {
    /// A frame, borrowed in place; dropping it hands the slot back.
    Frame(Frame<'a>),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The producer finished and every frame has been consumed.
    EndOfStream,
    /// The producer died and the queue is empty.
    ProducerGone {
        /// The dead producer's pid.
        pid: u32,
    },
}

/// One consumer of a ring. Not `Sync`: one thread takes frames.
#[derive(Debug)]
pub struct Consumer {
    seg: Arc<Segment>,
    index: u8,
    wait: WaitStrategy,
    frames: Cell<u64>,
}

/// A frame taken from the ring, read in place. Dropping it returns the slot.
#[derive(Debug)]
pub struct Frame<'a> {
    consumer: &'a Consumer,
    info: FrameInfo,
    data: &'a [u8],
}

impl Frame<'_> {
    /// The pixels: H×W×C bytes, row-major, in the shared segment.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// The frame's metadata.
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        self.consumer.release(self.info.slot);
    }
}

impl Consumer {
    /// Attaches to the ring `name` and registers in its consumer table. With
    /// `expect = Some((h, w, c))`, refuses a ring of another frame shape.
    pub fn attach(
        name: &str,
        expect: Option<(u32, u32, u32)>,
        opts: &RingOptions,
    ) -> Result<Consumer, PoolError> {
        let seg = Segment::open(name)?;
        let g = *seg.geometry();
        if let Some((h, w, c)) = expect {
            if (h, w, c) != (g.height, g.width, g.channels) {
                return Err(PoolError::ShapeMismatch {
                    name: name.into(),
                    ring_h: g.height,
                    ring_w: g.width,
                    ring_c: g.channels,
                    want_h: h,
                    want_w: w,
                    want_c: c,
                });
            }
        }
        let me = ProcessId::current();
        let word = me.owner_word();
        let index = seg
            .consumers()
            .iter()
            .position(|e| {
                // AcqRel: acquires the producer's release when it freed the
                // entry of a dead consumer (its slot words are settled).
                e.owner
                    .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
            .ok_or(PoolError::TooManyConsumers {
                name: name.into(),
                max: g.max_consumers,
            })?;
        let e = &seg.consumers()[index];
        e.start_ticks.store(me.start_ticks, Ordering::Relaxed);
        e.pid.store(me.pid, Ordering::Relaxed);
        e.frames.store(0, Ordering::Relaxed);
        e.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        Ok(Consumer {
            seg: Arc::new(seg),
            index: index as u8,
            wait: opts.wait,
            frames: Cell::new(0),
        })
    }

    /// Like [`attach`](Self::attach), but waits up to `timeout` for the ring
    /// to appear (a consumer may start before its producer).
    pub fn attach_wait(
        name: &str,
        expect: Option<(u32, u32, u32)>,
        opts: &RingOptions,
        timeout: Duration,
    ) -> Result<Consumer, PoolError> {
        let deadline = Instant::now() + timeout;
        let mut logged = false;
        loop {
            match Self::attach(name, expect, opts) {
                Err(PoolError::Segment(
                    SegmentError::NotFound { .. } | SegmentError::NotReady { .. },
                )) if Instant::now() < deadline => {
                    if !logged {
                        tracing::info!(ring = name, "waiting for the ring to appear");
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// The segment.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// This consumer's index in the consumer table.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Frames taken so far.
    pub fn frames(&self) -> u64 {
        self.frames.get()
    }

    fn try_take(&self) -> Result<Option<Frame<'_>>, PoolError> {
        let seg = &*self.seg;
        let Some((slot, _pos)) = ready_queue(seg)
            .take(self.index)
            .map_err(|e| ring_corrupt(seg, e))?
        else {
            return Ok(None);
        };
        // `slot` was bounds-checked by the queue against the slot words.
        let m = &seg.slot_meta()[slot as usize];
        let mut name = [0u8; NAME_MAX];
        let name_len = (m.name_len.load(Ordering::Relaxed) as usize).min(NAME_MAX);
        for (i, w) in m.name.iter().enumerate().take(name_len.div_ceil(8)) {
            name[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        let info = FrameInfo {
            seq: m.seq.load(Ordering::Relaxed),
            publish_ns: m.publish_ns.load(Ordering::Relaxed),
            src_width: m.src_width.load(Ordering::Relaxed),
            src_height: m.src_height.load(Ordering::Relaxed),
            redeliveries: m.redeliveries.load(Ordering::Relaxed),
            slot,
            name,
            name_len,
        };
        // SAFETY: our claim CAS set the slot word to READING(us); conforming
        // processes do not write the frame until we return it, which happens
        // only when the Frame (which borrows this slice) is dropped.
        let data = unsafe { seg.frame(slot) };
        let n = self.frames.get() + 1;
        self.frames.set(n);
        let e = &seg.consumers()[self.index as usize];
        e.frames.store(n, Ordering::Relaxed);
        if n % 64 == 0 {
            // A busy consumer's sign of life, for status displays.
            e.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        }
        Ok(Some(Frame {
            consumer: self,
            info,
            data,
        }))
    }

    /// Takes the next frame, waiting up to `timeout`.
    pub fn take(&self, timeout: Duration) -> Result<Take<'_>, PoolError> {
        if let Some(f) = self.try_take()? {
            return Ok(Take::Frame(f));
        }
        let seg = self.seg.clone();
        let h = seg.header();
        let deadline = Instant::now() + timeout;
        loop {
            let slice = PEER_CHECK.min(deadline.saturating_duration_since(Instant::now()));
            let mut err = None;
            let got = h.ready_event.wait_until(self.wait, slice, || {
                match self.try_take() {
                    Ok(Some(f)) => return Some(Some(f)),
                    Ok(None) => {}
                    Err(e) => {
                        err = Some(e);
                        return Some(None);
                    }
                }
                // Acquire: every publish happens before the flags we see.
                let flags = h.flags.load(Ordering::Acquire);
                (flags & FLAG_DRAINED != 0).then_some(None)
            });
            if let Some(e) = err {
                return Err(e);
            }
            match got {
                Some(Some(f)) => return Ok(Take::Frame(f)),
                Some(None) => {
                    // Drained: a last look, then done.
                    return Ok(match self.try_take()? {
                        Some(f) => Take::Frame(f),
                        None => Take::EndOfStream,
                    });
                }
                None => {}
            }
            let e = &seg.consumers()[self.index as usize];
            e.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
            let producer = ProcessId {
                pid: h.producer_pid.load(Ordering::Acquire),
                start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
            };
            if !producer.is_alive() {
                if let Some(f) = self.try_take()? {
                    return Ok(Take::Frame(f));
                }
                let flags = h.flags.load(Ordering::Acquire);
                return Ok(if flags & FLAG_END_OF_STREAM != 0 {
                    Take::EndOfStream
                } else {
                    Take::ProducerGone { pid: producer.pid }
                });
            }
            if Instant::now() >= deadline {
                return Ok(Take::Timeout);
            }
        }
    }

    fn release(&self, slot: u32) {
        let seg = &*self.seg;
        if let Err(e) = return_queue(seg, self.index as usize).push(slot) {
            // Only garbage in the segment gets here; the slot stays marked as
            // ours and the producer's recovery will find it when we exit.
            tracing::error!(ring = seg.name(), error = %e, "could not return a slot");
            return;
        }
        seg.header().free_event.notify();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Every Frame borrowed `self`, so all slots are returned by now.
        let e = &self.seg.consumers()[self.index as usize];
        // Release: our returns happen before the entry is reused.
        e.owner.store(0, Ordering::Release);
        self.seg.header().free_event.notify();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn shape(slots: u32) -> Shape {
        Shape {
            slots,
            height: 4,
            width: 8,
            channels: 3,
            max_consumers: 4,
        }
    }

    fn name(tag: &str) -> String {
        format!("framering-pool-{tag}-{}", std::process::id())
    }

    #[test]
    fn threads_move_frames_in_order_and_in_place() {
        let n = name("threads");
        let mut p = Producer::create(&n, shape(4), &RingOptions::default()).unwrap();
        let n2 = n.clone();
        let reader = std::thread::spawn(move || {
            let c = Consumer::attach(&n2, Some((4, 8, 3)), &RingOptions::default()).unwrap();
            let mut next = 0u64;
            loop {
                match c.take(Duration::from_secs(10)).unwrap() {
                    Take::Frame(f) => {
                        assert_eq!(f.info().seq, next);
                        assert!(f.data().iter().all(|&b| b == (next % 251) as u8));
                        assert_eq!(f.info().name(), format!("f{next}").as_bytes());
                        next += 1;
                    }
                    Take::EndOfStream => return next,
                    other => panic!("{other:?}"),
                }
            }
        });
        for i in 0..5000u64 {
            let mut s = p.acquire(Duration::from_secs(10)).unwrap().unwrap();
            s.data_mut().fill((i % 251) as u8);
            let name = format!("f{i}");
            let seq = p
                .publish(
                    s,
                    &FrameMeta {
                        src_width: 8,
                        src_height: 4,
                        name: name.as_bytes(),
                    },
                )
                .unwrap();
            assert_eq!(seq, i);
        }
        p.finish();
        assert!(p.drain(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(reader.join().unwrap(), 5000);
        assert_eq!(p.free_slots(), 4);
        p.unlink().unwrap();
    }

    #[test]
    fn shape_mismatch_and_full_table_are_refused() {
        let n = name("refuse");
        let p = Producer::create(&n, shape(2), &RingOptions::default()).unwrap();
        assert!(matches!(
            Consumer::attach(&n, Some((4, 8, 1)), &RingOptions::default()),
            Err(PoolError::ShapeMismatch { .. })
        ));
        let held: Vec<_> = (0..4)
            .map(|_| Consumer::attach(&n, None, &RingOptions::default()).unwrap())
            .collect();
        assert!(matches!(
            Consumer::attach(&n, None, &RingOptions::default()),
            Err(PoolError::TooManyConsumers { .. })
        ));
        drop(held);
        Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        // A second producer on a live ring is refused, naming us.
        match Producer::create(&n, shape(2), &RingOptions::default()) {
            Err(PoolError::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        p.unlink().unwrap();
    }

    #[test]
    fn frames_of_a_dead_consumer_are_delivered_again() {
        let n = name("dead");
        let mut p = Producer::create(&n, shape(3), &RingOptions::default()).unwrap();
        for i in 0..3u8 {
            let mut s = p.acquire(Duration::from_secs(1)).unwrap().unwrap();
            s.data_mut().fill(i);
            p.publish(
                s,
                &FrameMeta {
                    src_width: 8,
                    src_height: 4,
                    name: b"x",
                },
            )
            .unwrap();
        }
        // A consumer takes two frames, then "dies": we forge its identity to
        // that of a process that has exited.
        let victim = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        let (a, b) = match (
            victim.take(Duration::ZERO).unwrap(),
            victim.take(Duration::ZERO).unwrap(),
        ) {
            (Take::Frame(a), Take::Frame(b)) => (a, b),
            other => panic!("{other:?}"),
        };
        assert_eq!((a.info().seq, b.info().seq), (0, 1));
        drop(a); // returned before dying
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(child.id());
        child.wait().unwrap();
        let dead = dead.unwrap_or(ProcessId {
            pid: u32::MAX - 7,
            start_ticks: 1,
        });
        let entry = &p.segment().consumers()[victim.index() as usize];
        entry.owner.store(dead.owner_word(), Ordering::Release);
        std::mem::forget(b);
        std::mem::forget(victim);

        assert_eq!(p.reap_dead_consumers().unwrap(), 1);
        assert_eq!(p.segment().consumers()[0].owner.load(Ordering::Relaxed), 0);
        let c = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        let mut seen = vec![];
        while let Take::Frame(f) = c.take(Duration::from_millis(50)).unwrap() {
            seen.push((f.info().seq, f.info().redeliveries, f.data()[0]));
        }
        seen.sort();
        assert_eq!(seen, vec![(1, 1, 1), (2, 0, 2)]);
        p.unlink().unwrap();
    }

    #[test]
    fn a_consumer_with_a_corrupt_return_queue_does_not_stop_the_ring() {
        let n = name("quarantine");
        let mut p = Producer::create(&n, shape(2), &RingOptions::default()).unwrap();
        let bad = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        let good = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        // The bad consumer scribbles over its own return queue.
        p.segment().consumers()[bad.index() as usize]
            .ret
            .tail
            .store(u64::MAX / 3, Ordering::Relaxed);
        for round in 0..20u8 {
            let mut s = p.acquire(Duration::from_secs(2)).unwrap().expect("a slot");
            s.data_mut().fill(round);
            p.publish(s, &FrameMeta { src_width: 8, src_height: 4, name: b"q" })
                .unwrap();
            match good.take(Duration::from_secs(1)).unwrap() {
                Take::Frame(f) => assert_eq!(f.data()[0], round),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.quarantined, 1 << bad.index());
        p.unlink().unwrap();
    }
}
