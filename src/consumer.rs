//! A reader of a ring: joins a consumer group, takes frames in place from the
//! group's ready queue, and hands each slot back when its [`Frame`] drops.
//!
//! Until the producer admits it into its group (see [`crate::producer`]), a
//! consumer's `take` finds nothing and waits like an idle one.

use crate::clock::monotonic_ns;
use crate::event::WaitStrategy;
use crate::layout::{
    FLAG_DRAINED, FLAG_END_OF_STREAM, GROUP_UNUSED, JOIN_ACTIVE, JOIN_LEAVING, JOIN_NONE, JOIN_REFUSED,
    JOIN_REQUESTED, NAME_MAX,
};
use crate::pool::{
    group_queue, load_name, pack_return, return_queue, ring_corrupt, store_name, valid_group_name, FrameInfo,
    PoolError, RingOptions,
};
use crate::process::ProcessId;
use crate::producer::PEER_CHECK;
use crate::segment::{Segment, SegmentError};
use crate::sync::Ordering;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    latest: bool,
    group_name: String,
    /// The group index once admitted.
    group: Cell<Option<u8>>,
    frames: Cell<u64>,
    skipped: Cell<u64>,
}

/// A frame taken from the ring, read in place. Dropping it returns the slot.
#[derive(Debug)]
pub struct Frame<'a> {
    consumer: &'a Consumer,
    group: u8,
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
        self.consumer.release(self.group, self.info.slot);
    }
}

impl Consumer {
    /// Attaches to the ring `name`, registers in its consumer table and asks
    /// to join group `opts.group`. With `expect = Some((h, w, c))`, refuses a
    /// ring of another frame shape.
    pub fn attach(
        name: &str,
        expect: Option<(u32, u32, u32)>,
        opts: &RingOptions,
    ) -> Result<Consumer, PoolError> {
        valid_group_name(&opts.group)?;
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
        // Entries of consumers that left are freed by the producer; give it
        // a moment if the table is full of them.
        let deadline = Instant::now() + Duration::from_secs(2);
        let index = loop {
            let free = seg.consumers().iter().position(|e| {
                // AcqRel: acquires the producer's release when it freed the
                // entry (its slot words are settled).
                e.owner
                    .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            });
            match free {
                Some(i) => break i,
                None if Instant::now() < deadline
                    && seg
                        .consumers()
                        .iter()
                        .any(|e| e.join.load(Ordering::Relaxed) == JOIN_LEAVING) =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => {
                    return Err(PoolError::TooManyConsumers {
                        name: name.into(),
                        max: g.max_consumers,
                    })
                }
            }
        };
        let e = &seg.consumers()[index];
        e.start_ticks.store(me.start_ticks, Ordering::Relaxed);
        e.pid.store(me.pid, Ordering::Relaxed);
        e.frames.store(0, Ordering::Relaxed);
        e.skipped.store(0, Ordering::Relaxed);
        e.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        store_name(&e.group_name, opts.group.as_bytes());
        // Release: the name is written before the producer reads it.
        e.join.store(JOIN_REQUESTED, Ordering::Release);
        let h = seg.header();
        // Release: our request happens before the producer sees the roster
        // change. Then wake a producer waiting for a subscriber or a slot.
        h.roster.fetch_add(1, Ordering::Release);
        h.free_event.notify();
        Ok(Consumer {
            seg: Arc::new(seg),
            index: index as u8,
            wait: opts.wait,
            latest: opts.latest,
            group_name: opts.group.clone(),
            group: Cell::new(None),
            frames: Cell::new(0),
            skipped: Cell::new(0),
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
                    // Short: how soon a waiting consumer sees a new ring is part
                    // of the time to the first frame; a failed open costs ~2 us.
                    std::thread::sleep(Duration::from_millis(2));
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

    /// The group this consumer joins.
    pub fn group_name(&self) -> &str {
        &self.group_name
    }

    /// Frames taken so far.
    pub fn frames(&self) -> u64 {
        self.frames.get()
    }

    /// Frames skipped to stay on the newest one (`latest`).
    pub fn skipped(&self) -> u64 {
        self.skipped.get()
    }

    /// Frames this consumer's group lost so far (dropped unconsumed), as the
    /// producer counts them. 0 before the consumer was admitted.
    pub fn group_dropped(&self) -> u64 {
        self.group
            .get()
            .map_or(0, |g| self.seg.groups()[g as usize].dropped.load(Ordering::Relaxed))
    }

    /// The group index, once the producer admitted us.
    fn admitted(&self) -> Result<Option<u8>, PoolError> {
        if let Some(g) = self.group.get() {
            return Ok(Some(g));
        }
        let e = &self.seg.consumers()[self.index as usize];
        // Acquire: pairs with the producer's Release store of JOIN_ACTIVE.
        match e.join.load(Ordering::Acquire) {
            JOIN_ACTIVE => {
                let g = e.group.load(Ordering::Relaxed);
                if g >= self.seg.geometry().max_groups {
                    return Err(ring_corrupt(
                        &self.seg,
                        crate::queue::Corrupt("group index"),
                    ));
                }
                self.group.set(Some(g as u8));
                Ok(Some(g as u8))
            }
            JOIN_REFUSED => Err(PoolError::GroupsFull {
                name: self.seg.name().to_string(),
                group: self.group_name.clone(),
                max: self.seg.geometry().max_groups,
            }),
            JOIN_REQUESTED | JOIN_NONE => Ok(None),
            _ => Err(ring_corrupt(&self.seg, crate::queue::Corrupt("join state"))),
        }
    }

    /// With the producer dead nobody admits us: join our group ourselves,
    /// if it exists, to drain what was published to it. Safe because only
    /// the producer changes groups, and it is gone; we write only our entry.
    fn admit_self(&self) {
        let e = &self.seg.consumers()[self.index as usize];
        if self.group.get().is_some() || e.join.load(Ordering::Acquire) != JOIN_REQUESTED {
            return;
        }
        let found = self.seg.groups().iter().position(|g| {
            let (name, len) = load_name(&g.name);
            g.state.load(Ordering::Acquire) != GROUP_UNUSED
                && &name[..len] == self.group_name.as_bytes()
        });
        if let Some(g) = found {
            e.group.store(g as u32, Ordering::Relaxed);
            e.join.store(JOIN_ACTIVE, Ordering::Release);
        }
    }

    fn try_take(&self) -> Result<Option<Frame<'_>>, PoolError> {
        let Some(g) = self.admitted()? else {
            return Ok(None);
        };
        let seg = &*self.seg;
        let q = group_queue(seg, g as usize);
        let take = || q.take(self.index).map_err(|e| ring_corrupt(seg, e));
        let Some((mut slot, _pos)) = take()? else {
            return Ok(None);
        };
        if self.latest {
            // Keep the newest: claim the next one before handing back the
            // one we hold, so that we never end up with nothing.
            while let Some((newer, _)) = take()? {
                self.release(g, slot);
                self.skipped.set(self.skipped.get() + 1);
                slot = newer;
            }
            seg.consumers()[self.index as usize]
                .skipped
                .store(self.skipped.get(), Ordering::Relaxed);
        }
        // `slot` was bounds-checked by the queue against the claim words.
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
        // SAFETY: our claim CAS set our group's claim word to READING(us);
        // conforming processes do not write the frame until every group that
        // holds it returned it, and we return it only when the Frame (which
        // borrows this slice) is dropped.
        let data = unsafe { seg.frame(slot) };
        let n = self.frames.get() + 1;
        self.frames.set(n);
        let e = &seg.consumers()[self.index as usize];
        e.frames.store(n, Ordering::Relaxed);
        // A producer waiting because our group had too many frames queued
        // (ring.max_queued) may go on. One load when nobody waits.
        let free_event = &seg.header().free_event;
        if free_event.waiters() != 0 {
            free_event.notify();
        }
        if n % 64 == 0 {
            // A busy consumer's sign of life, for status displays.
            e.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        }
        Ok(Some(Frame {
            consumer: self,
            group: g,
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
                self.admit_self();
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

    fn release(&self, group: u8, slot: u32) {
        let seg = &*self.seg;
        if let Err(e) = return_queue(seg, self.index as usize).push(pack_return(group, slot)) {
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
        // Every Frame borrowed `self`, so all slots are returned by now. The
        // producer frees the entry once it has collected them.
        let e = &self.seg.consumers()[self.index as usize];
        // Release: our returns happen before the producer sees us leave.
        e.join.store(JOIN_LEAVING, Ordering::Release);
        let h = self.seg.header();
        h.roster.fetch_add(1, Ordering::Release);
        h.free_event.notify();
    }
}
