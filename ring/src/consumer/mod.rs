//! A reader of a ring: joins a consumer group, takes frames in place from the
//! group's ready queue, and hands each slot back when its [`Frame`] drops.
//!
//! Threads, frames and fork: see [`Consumer`].

use crate::error::{FailReason, RingCorrupt, TakeError};
use crate::options::{Backpressure, FrameInfo};
use crate::platform::clock::{monotonic_coarse_ns, monotonic_ns, SlicedDeadline};
use crate::platform::liveness;
use crate::platform::liveness::PEER_CHECK;
use crate::platform::segment::Segment;
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::{
    BACKPRESSURE_DROP_OLDEST, FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_FAILED, GROUP_UNUSED,
    META_HAS_PTS, NAME_MAX,
};
use crate::protocol::roster::{self, load_name, Admission};
use crate::shape::FrameShape;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(crate) mod builder;
pub(crate) mod cancel;
pub(crate) mod frame;
mod shared;

use cancel::Canceller;
use frame::Frame;
use shared::{Shared, NOT_ADMITTED};

/// One consumer of a ring: joins a consumer group, takes frames in place
/// from the group's ready queue, and hands each slot back when its
/// [`Frame`] drops. The [crate documentation](crate) has
/// an example.
///
/// Until the producer admits it into its group, a consumer's `take` finds nothing and waits like an idle one.
///
/// A [`Consumer`] is `Send + Sync`: several threads may take from one
/// consumer (they share its group's frames like separate consumers would). A
/// [`Frame`] owns a reference to the consumer's shared state (not a borrow of
/// the consumer), so it can go to a worker thread without a copy. The
/// consumer's table entry is released only when the consumer and every frame
/// are gone.
///
/// **Fork**: a child forked while the parent holds a consumer or frames
/// inherits copies of them. Dropping those copies in the child does nothing
/// (each consumer remembers the pid that attached): the frames stay the
/// parent's, handed back when the parent drops them. A child must attach its
/// own consumer to take frames.
#[derive(Debug)]
pub struct Consumer {
    pub(super) shared: Arc<Shared>,
    pub(super) cancel: Canceller,
    pub(super) latest: bool,
    pub(super) wait: WaitStrategy,
}

/// What [`Consumer::take`] found.
#[derive(Debug)]
// The frame variant carries its metadata inline (~220 bytes, on the stack):
// boxing it would allocate once per frame.
#[allow(clippy::large_enum_variant)]
pub enum Take {
    /// A frame, read in place; dropping it hands the slot back.
    Frame(Frame),
    /// The producer ended the stream and every frame has been consumed.
    EndOfStream,
    /// The producer died before ending the stream; every frame it published
    /// to this consumer's group has been consumed.
    ProducerGone {
        /// The dead producer's pid (as seen from the producer's PID
        /// namespace).
        pid: u32,
    },
    /// The producer failed ([`Producer::fail`](crate::Producer::fail): its
    /// input failed, or it found the ring corrupt); every frame it published
    /// to this consumer's group and that could still be taken was taken. Not
    /// the end of the stream.
    ProducerFailed {
        /// Why, as the producer said.
        reason: FailReason,
    },
}

impl Consumer {
    fn seg(&self) -> &Segment {
        &self.shared.seg
    }

    /// The handle that interrupts this consumer's waits (the one given to
    /// [`ConsumerBuilder::cancel_with`](crate::ConsumerBuilder::cancel_with), else its own): see [`Canceller`].
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.seg().name()
    }

    /// The ring's frame shape.
    pub fn shape(&self) -> FrameShape {
        self.seg().geometry().frame_shape()
    }

    /// The source's frame rate the producer recorded, `(num, den)` frames
    /// per second ([`crate::ProducerBuilder::frame_rate`]); `None` if it did
    /// not know it.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        let word = self.seg().header().frame_rate.load(Ordering::Relaxed);
        let (num, den) = ((word >> 32) as u32, word as u32);
        (num > 0 && den > 0).then_some((num, den))
    }

    /// Slots in the ring.
    pub fn slots(&self) -> u32 {
        self.seg().geometry().slots
    }

    /// Bytes of user metadata a frame can carry.
    pub fn user_meta_capacity(&self) -> usize {
        self.seg().geometry().user_meta_bytes as usize
    }

    /// This consumer's index in the ring's consumer table.
    pub fn index(&self) -> u8 {
        self.shared.index
    }

    /// The group this consumer joins.
    pub fn group(&self) -> &str {
        &self.shared.group_name
    }

    /// Frames taken so far.
    pub fn frames_taken(&self) -> u64 {
        self.entry()
            .frames
            .load(crate::protocol::sync::Ordering::Relaxed)
    }

    /// Frames skipped to stay on the newest one (`latest`).
    pub fn skipped(&self) -> u64 {
        self.entry()
            .skipped
            .load(crate::protocol::sync::Ordering::Relaxed)
    }

    /// Frames this consumer's group lost so far (dropped unconsumed), as the
    /// producer counts them. 0 before the consumer was admitted.
    pub fn group_dropped(&self) -> u64 {
        match self.shared.admitted.load(Ordering::Relaxed) {
            NOT_ADMITTED => 0,
            g => self.seg().groups()[g as usize]
                .dropped
                .load(crate::protocol::sync::Ordering::Relaxed),
        }
    }

    /// The backpressure of this consumer's group, once admitted: with
    /// [`Backpressure::DropOldest`] the group loses the frames it cannot
    /// keep up with ([`group_dropped`](Self::group_dropped)).
    pub fn group_backpressure(&self) -> Option<Backpressure> {
        match self.shared.admitted.load(Ordering::Relaxed) {
            NOT_ADMITTED => None,
            g => match self.seg().groups()[g as usize]
                .policy
                .load(crate::protocol::sync::Ordering::Relaxed)
            {
                BACKPRESSURE_DROP_OLDEST => Some(Backpressure::DropOldest),
                _ => Some(Backpressure::Block),
            },
        }
    }

    /// Tests: drops this consumer's liveness lock, as its death would.
    #[cfg(test)]
    pub(crate) fn drop_liveness_lock(&self) {
        liveness::unlock(
            self.seg().file(),
            liveness::consumer_byte(self.shared.index as usize),
        );
    }

    fn entry(&self) -> &crate::protocol::layout::ConsumerEntry {
        &self.seg().consumers()[self.shared.index as usize]
    }

    fn corrupt(&self, c: crate::error::Corrupt) -> TakeError {
        TakeError::Corrupt(RingCorrupt::new(self.name(), c))
    }

    /// Whether every frame this consumer handed back reached the producer.
    /// An error means a return could not be pushed (its return queue in the
    /// segment is corrupt): the producer can never collect that slot.
    /// [`take`](Self::take) reports the same error; check this after the
    /// last frame was dropped.
    pub fn check_returns(&self) -> Result<(), RingCorrupt> {
        // Acquire: pairs with the Release store after the error was kept.
        if !self.shared.any_return_failed.load(Ordering::Acquire) {
            return Ok(());
        }
        match *self.shared.return_failed.lock() {
            Some(c) => Err(RingCorrupt::new(self.name(), c)),
            None => Ok(()),
        }
    }

    /// The producer's failure, if it marked the ring failed.
    fn producer_failed(&self, flags: u32) -> Option<FailReason> {
        use crate::protocol::sync::Ordering as O;
        (flags & FLAG_FAILED != 0)
            .then(|| FailReason::from_code(self.seg().header().fail_reason.load(O::Relaxed)))
    }

    /// The group index, once the producer admitted us.
    /// Whether the producer marked this consumer's group drained: the stream
    /// ended and every frame of the group came back, so an empty queue is
    /// empty for good.
    fn group_drained(&self) -> bool {
        use crate::protocol::sync::Ordering as O;
        let g = self.shared.admitted.load(O::Relaxed);
        // Acquire: the producer's collection of the group's last returns
        // (and every publish into it) happens before the flag we see.
        g != NOT_ADMITTED
            && self
                .seg()
                .groups()
                .get(g as usize)
                .is_some_and(|e| e.drained.load(O::Acquire) == 1)
    }

    fn admitted(&self) -> Result<Option<u8>, TakeError> {
        let g = self.shared.admitted.load(Ordering::Relaxed);
        if g != NOT_ADMITTED {
            return Ok(Some(g as u8));
        }
        match roster::admission(self.entry(), self.seg().geometry().max_groups)
            .map_err(|c| self.corrupt(c))?
        {
            Admission::Admitted(g) => {
                // Relaxed: a cache of what we acquired from the entry; a
                // thread that reads it re-reads nothing the producer wrote.
                self.shared.admitted.store(g as u32, Ordering::Relaxed);
                Ok(Some(g))
            }
            Admission::Refused => Err(TakeError::GroupRefused {
                name: self.name().to_string(),
                group: self.group().to_string(),
                max: self.seg().geometry().max_groups,
            }),
            Admission::Waiting => Ok(None),
        }
    }

    /// With the producer dead nobody admits us: join our group ourselves,
    /// if it exists, to drain what was published to it. Safe because only
    /// the producer changes groups, and it is gone; we write only our entry.
    fn admit_self(&self) {
        if self.shared.admitted.load(Ordering::Relaxed) != NOT_ADMITTED
            || roster::request(self.entry()) != roster::Request::Join
        {
            return;
        }
        let found = self.seg().groups().iter().position(|g| {
            let (name, len) = load_name(&g.name);
            g.state.load(crate::protocol::sync::Ordering::Acquire) != GROUP_UNUSED
                && &name[..len] == self.group().as_bytes()
        });
        if let Some(g) = found {
            roster::admit(self.entry(), g as u8);
        }
    }

    fn try_take(&self) -> Result<Option<Frame>, TakeError> {
        use crate::protocol::sync::Ordering as O;
        let Some(g) = self.admitted()? else {
            return Ok(None);
        };
        let seg = self.seg();
        let q = seg.group_queue(g as usize);
        let me = self.shared.index;
        // Start loading the slot's metadata while the claim is tried.
        let hint = |s: u32| seg.prefetch_slot_meta(s as usize);
        let Some(mut claim) = q.take_hinting(me, hint).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let e = self.entry();
        if self.latest {
            // Keep the newest: claim the next one before handing back the
            // one we hold, so that we never end up with nothing.
            while let Some(newer) = q.take_hinting(me, hint).map_err(|c| self.corrupt(c))? {
                self.shared.release(g, claim, true);
                e.skipped.fetch_add(1, O::Relaxed);
                claim = newer;
            }
        }
        // The slot was bounds-checked by the queue against the claim words.
        let slot = claim.slot();
        let m = &seg.slot_meta()[slot as usize];
        let mut source = [0u8; NAME_MAX];
        let source_len = (m.name_len.load(O::Relaxed) as usize).min(NAME_MAX);
        for (i, w) in m.name.iter().enumerate().take(source_len.div_ceil(8)) {
            source[i * 8..i * 8 + 8].copy_from_slice(&w.load(O::Relaxed).to_ne_bytes());
        }
        let info = FrameInfo {
            seq: m.seq.load(O::Relaxed),
            publish_ns: m.publish_ns.load(O::Relaxed),
            capture_ns: m.capture_ns.load(O::Relaxed),
            pts_ns: (m.flags.load(O::Relaxed) & META_HAS_PTS != 0)
                .then(|| m.pts_ns.load(O::Relaxed) as i64),
            user_len: (m.user_len.load(O::Relaxed) as usize)
                .min(seg.geometry().user_meta_bytes as usize),
            src_width: m.src_width.load(O::Relaxed),
            src_height: m.src_height.load(O::Relaxed),
            redeliveries: m.redeliveries.load(O::Relaxed),
            slot,
            source,
            source_len,
        };
        e.frames.fetch_add(1, O::Relaxed);
        // A producer waiting because our group had too many frames queued
        // (max_queued) may go on: our claim moved the head.
        seg.header().free_event.notify_if_waiting();
        // A busy consumer's sign of life, for status displays (one that
        // waits refreshes it while waiting): at most every 0.25 s. The
        // coarse clock: no time stamp counter read per frame (a quarter of
        // the cost of a small frame's hand-off was clock reads).
        let now = monotonic_coarse_ns();
        if now >= e.heartbeat_ns.load(O::Relaxed).saturating_add(250_000_000) {
            e.heartbeat_ns.store(now, O::Relaxed);
        }
        Ok(Some(Frame {
            shared: self.shared.clone(),
            group: g,
            info,
            claim: Some(claim),
        }))
    }

    /// Takes the next frame of the consumer's group if one is queued now,
    /// without waiting and without a system call: `Ok(None)` if none is.
    /// For callers that wait their own way (e.g. in short slices, to check
    /// for interrupts between them); [`take`](Self::take) tells the end of
    /// the stream.
    ///
    /// ```
    /// use framering_ring::{Consumer, FrameMeta, FrameShape, Producer};
    /// use std::time::Duration;
    ///
    /// let ring = format!("doc-take-now-{}", std::process::id());
    /// let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
    /// let consumer = Consumer::builder(&ring).attach()?;
    /// assert!(consumer.take_now()?.is_none()); // nothing published yet
    /// let seq = producer.loan(Duration::from_secs(1))?.publish(&FrameMeta::new())?;
    /// assert_eq!(consumer.take_now()?.map(|f| f.seq()), Some(seq));
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_now(&self) -> Result<Option<Frame>, TakeError> {
        self.check_returns()?;
        self.try_take()
    }

    /// Whether the stream ended for this consumer *as far as it can tell
    /// without handing its frames back*: the producer ended the stream
    /// ([`Producer::finish`](crate::Producer::finish)), failed or died, and
    /// nothing is queued for this consumer's group. [`take`](Self::take)
    /// reports [`Take::EndOfStream`] only once the producer drained, that
    /// is once every frame came back, so a consumer that keeps frames (or
    /// frames) while it asks for the next one would wait forever: it asks
    /// this instead. A frame held by another consumer of the group that dies
    /// may still be delivered again afterwards.
    ///
    /// ```
    /// use framering_ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
    /// use std::time::Duration;
    ///
    /// let ring = format!("doc-stream-ended-{}", std::process::id());
    /// let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
    /// let consumer = Consumer::builder(&ring).attach()?;
    /// producer.loan(Duration::from_secs(1))?.publish(&FrameMeta::new())?;
    /// producer.finish();
    /// let Take::Frame(kept) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// // `take` would wait for `kept` to come back; the stream is over anyway.
    /// assert!(consumer.stream_ended()?);
    /// drop(kept);
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream_ended(&self) -> Result<bool, TakeError> {
        use crate::protocol::sync::Ordering as O;
        let h = self.seg().header();
        // Acquire: every publish happens before the flags we see, so an
        // empty queue after them is empty for good.
        let flags = h.flags.load(O::Acquire);
        let over = flags & (FLAG_END_OF_STREAM | FLAG_DRAINED | FLAG_FAILED) != 0
            || !liveness::producer_alive(self.seg());
        if !over {
            return Ok(false);
        }
        if flags & (FLAG_END_OF_STREAM | FLAG_DRAINED | FLAG_FAILED) == 0 {
            // A dead producer admits nobody: join our group ourselves to
            // look at its queue.
            self.admit_self();
        }
        Ok(match self.admitted()? {
            Some(g) => self.seg().group_queue(g as usize).is_empty(),
            None => true,
        })
    }

    /// Takes the next frame of the consumer's group, waiting up to
    /// `timeout` ([`TakeError::Timeout`] after that; `Duration::MAX` waits
    /// for good). Ends with
    /// [`Take::EndOfStream`] once the producer finished and drained, or
    /// [`Take::ProducerGone`] if it died, after every frame published to the
    /// group was taken.
    ///
    /// A return this consumer could not push (a corrupt return queue) is
    /// reported here as [`TakeError::Corrupt`]; a producer that failed as
    /// [`Take::ProducerFailed`], once the frames queued for the group were
    /// taken.
    pub fn take(&self, timeout: Duration) -> Result<Take, TakeError> {
        use crate::protocol::sync::Ordering as O;
        self.check_returns()?;
        if let Some(f) = self.try_take()? {
            return Ok(Take::Frame(f));
        }
        let seg = self.seg();
        let h = seg.header();
        // No clock read unless a first wait slice runs out (SlicedDeadline).
        let mut deadline = SlicedDeadline::new(timeout);
        let cancelled = || TakeError::Cancelled {
            name: self.name().to_string(),
        };
        loop {
            if self.cancel.is_cancelled() {
                return Err(cancelled());
            }
            // Past the deadline only after the check below returned.
            let slice = deadline.next_slice(PEER_CHECK).unwrap_or_default();
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
                if self.cancel.is_cancelled() {
                    err = Some(cancelled());
                    return Some(None);
                }
                // Acquire: every publish happens before the flags we see.
                let flags = h.flags.load(O::Acquire);
                (flags & (FLAG_DRAINED | FLAG_FAILED) != 0 || self.group_drained()).then_some(None)
            });
            if let Some(e) = err {
                return Err(e);
            }
            match got {
                Some(Some(f)) => return Ok(Take::Frame(f)),
                Some(None) => {
                    // Drained or failed: a last look, then done.
                    let flags = h.flags.load(O::Acquire);
                    return Ok(match self.try_take()? {
                        Some(f) => Take::Frame(f),
                        None => match self.producer_failed(flags) {
                            Some(reason) => Take::ProducerFailed { reason },
                            None => Take::EndOfStream,
                        },
                    });
                }
                None => {}
            }
            self.entry().heartbeat_ns.store(monotonic_ns(), O::Relaxed);
            if !liveness::producer_alive(self.seg()) {
                let pid = h.producer_pid.load(O::Relaxed);
                self.admit_self();
                if let Some(f) = self.try_take()? {
                    return Ok(Take::Frame(f));
                }
                let flags = h.flags.load(O::Acquire);
                return Ok(if let Some(reason) = self.producer_failed(flags) {
                    Take::ProducerFailed { reason }
                } else if flags & FLAG_END_OF_STREAM != 0 {
                    Take::EndOfStream
                } else {
                    Take::ProducerGone { pid }
                });
            }
            // The slice ran out (a frame or the end returned above).
            deadline.ran_out(slice);
            if deadline.passed() {
                return Err(TakeError::Timeout { waited: timeout });
            }
        }
    }
}
