//! A reader of a ring: joins a consumer group, takes frames in place from the
//! group's ready queue, and hands each slot back when its [`Frame`] (or
//! [`FrameLease`]) drops.
//!
//! Threads, leases and fork: see [`Consumer`].

use crate::clock::monotonic_ns;
use crate::error::{
    AttachError, Corrupt, DetachError, FailReason, OpenError, RingCorrupt, TakeError,
};
use crate::event::WaitStrategy;
use crate::layout::{
    BACKPRESSURE_BLOCK, BACKPRESSURE_DROP_OLDEST, FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_FAILED,
    GROUP_UNUSED, META_HAS_PTS, NAME_MAX, POLICY_RING,
};
use crate::ledger::{pack_give_back, pack_return};
use crate::liveness;
use crate::options::{validate_group_name, Backpressure, FrameInfo, DEFAULT_GROUP};
use crate::process::ProcessId;
use crate::producer::{group_queue, return_queue, PEER_CHECK};
use crate::ready_queue::ReadClaim;
use crate::roster::{self, load_name, Admission};
use crate::segment::{Segment, SlotPart};
use crate::shape::FrameShape;
use crate::slot::SlotState;
use crate::slot_maps::{SlotCopy, SlotMaps};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attaches a [`Consumer`] to a ring. Start with [`Consumer::builder`].
///
/// Defaults: group `"default"`, every frame in order (not only the latest),
/// [`WaitStrategy::SPIN_THEN_FUTEX`], the ring's own frame shape, and no
/// waiting for a ring that does not exist yet.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `attach` is called"]
pub struct ConsumerBuilder {
    name: String,
    group: String,
    latest: bool,
    wait: WaitStrategy,
    expect: Option<FrameShape>,
    any_dtype: bool,
    wait_for_ring: Duration,
    stop: Option<fn() -> bool>,
    policy: Option<Backpressure>,
    detachable: bool,
}

impl ConsumerBuilder {
    /// The group to join (default `"default"`). Every group receives every
    /// frame; the consumers of one group share its frames.
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_string();
        self
    }

    /// The backpressure of the group, should this consumer create it (an
    /// ad-hoc group nobody has joined yet): [`Backpressure::DropOldest`]
    /// makes a live group (a preview) that never slows the producer and
    /// loses the frames it cannot keep up with. Default: the ring's policy.
    /// A group that exists keeps its own ([`Consumer::group_backpressure`]).
    ///
    /// ```no_run
    /// # use framering_ring::{Backpressure, Consumer};
    /// let preview = Consumer::builder("cam")
    ///     .group("preview")
    ///     .group_backpressure(Backpressure::DropOldest)
    ///     .attach()?;
    /// # Ok::<(), framering_ring::AttachError>(())
    /// ```
    pub fn group_backpressure(mut self, policy: Backpressure) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Skip to the newest queued frame on every take, handing the older ones
    /// straight back (counted in [`Consumer::skipped`]): for previews.
    pub fn latest(mut self, latest: bool) -> Self {
        self.latest = latest;
        self
    }

    /// How [`Consumer::take`] waits for a frame.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Refuse a ring whose frames are not of this shape
    /// ([`AttachError::ShapeMismatch`]). Without it the consumer adopts the
    /// ring's shape ([`Consumer::shape`]). A dimension of 0 accepts any
    /// value: `FrameShape::new(0, 0, 3)` insists on three channels only.
    pub fn expect_shape(mut self, shape: FrameShape) -> Self {
        self.expect = Some(shape);
        self
    }

    /// With [`expect_shape`](Self::expect_shape): accept the ring's dtype,
    /// whatever it is (the dimensions asked for are still checked; the
    /// frames' dtype is then [`Consumer::shape`]'s). Default: the dtype of
    /// the expected shape is insisted on.
    ///
    /// ```no_run
    /// # use framering_ring::{Consumer, FrameShape};
    /// // Three channels of any element type.
    /// let c = Consumer::builder("cam")
    ///     .expect_shape(FrameShape::new(0, 0, 3))
    ///     .any_dtype()
    ///     .attach()?;
    /// println!("{}", c.shape().dtype);
    /// # Ok::<(), framering_ring::AttachError>(())
    /// ```
    pub fn any_dtype(mut self) -> Self {
        self.any_dtype = true;
        self
    }

    /// Wait up to `timeout` for the ring to appear (a consumer may start
    /// before its producer). Default: not at all.
    pub fn wait_for_ring(mut self, timeout: Duration) -> Self {
        self.wait_for_ring = timeout;
        self
    }

    /// Give up waiting for the ring as soon as `stop` returns true (checked
    /// every few milliseconds): [`AttachError::Interrupted`]. For example
    /// [`signals::stop_requested`](crate::signals::stop_requested), so that
    /// Ctrl-C ends a consumer whose producer has not started.
    pub fn stop_when(mut self, stop: fn() -> bool) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Let this consumer's frames [detach](FrameLease::detach) from their
    /// slots: it maps every slot on its own (one mapping per slot, made now)
    /// and reads each frame through its slot's mapping, so that a frame's
    /// pages can be swapped for a private copy at the same address. For
    /// bindings whose views of a frame may outlive it (Python's numpy
    /// arrays). Default: off (the frames are read in the segment's mapping).
    pub fn detachable(mut self) -> Self {
        self.detachable = true;
        self
    }

    /// Opens the ring, registers in its consumer table and asks to join the
    /// group.
    pub fn attach(self) -> Result<Consumer, AttachError> {
        validate_group_name(&self.group)?;
        let deadline = Instant::now() + self.wait_for_ring;
        let mut logged = false;
        loop {
            match Consumer::attach_once(&self) {
                Err(AttachError::Open(ref e))
                    if Instant::now() < deadline && ring_may_come(&self.name, e) =>
                {
                    if self.stop.is_some_and(|stop| stop()) {
                        return Err(AttachError::Interrupted {
                            name: self.name.clone(),
                        });
                    }
                    if !logged {
                        tracing::info!(ring = %self.name, "waiting for the ring to appear");
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
}

/// Whether a consumer waiting for `name` should keep waiting after `e`: the
/// ring is absent or being created, or is a blank leftover that its next
/// producer will reclaim.
fn ring_may_come(name: &str, e: &OpenError) -> bool {
    match e {
        OpenError::NotFound { .. } | OpenError::NotReady { .. } => true,
        OpenError::NotARing { .. } => Segment::is_blank(name),
        _ => false,
    }
}

/// What a consumer shares with its leases.
#[derive(Debug)]
struct Shared {
    seg: Segment,
    index: u8,
    group_name: String,
    /// The group index once admitted; `NOT_ADMITTED` before.
    admitted: AtomicU32,
    /// Serialises pushes into the single-producer return queue (frames may
    /// be handed back from several threads).
    returns: Mutex<()>,
    /// Whether a frame was handed back unconsumed.
    gave_back: std::sync::atomic::AtomicBool,
    /// A return that could not be pushed (the return queue is corrupt):
    /// reported by the next `take`, never forgotten.
    return_failed: Mutex<Option<Corrupt>>,
    /// The process that attached. A child forked while frames were held
    /// inherits copies of them; dropping those copies there must not hand
    /// back the parent's slots, nor leave the parent's table entry.
    creator_pid: u32,
    /// The consumer's own mapping of each slot, if it is detachable.
    slot_maps: Option<SlotMaps>,
}

const NOT_ADMITTED: u32 = u32::MAX;

impl Shared {
    /// Hands a claimed slot back to the producer: consumed, or (`consumed`
    /// false) to be delivered again to the group.
    fn release(&self, group: u8, claim: ReadClaim, consumed: bool) {
        if !self.in_creator() {
            return;
        }
        let seg = &self.seg;
        let cell = if consumed {
            pack_return(group, claim.slot())
        } else {
            pack_give_back(group, claim.slot())
        };
        let pushed = {
            let _one_at_a_time = self.returns.lock();
            return_queue(seg, self.index as usize).push(cell)
        };
        if let Err(e) = pushed {
            // Only garbage in the segment gets here; the slot stays marked as
            // ours. The next `take` reports it (the consumer cannot go on).
            tracing::error!(ring = seg.name(), error = e.0, "could not return a slot");
            self.return_failed.lock().get_or_insert(e);
            return;
        }
        if !consumed {
            self.gave_back.store(true, Ordering::Relaxed);
        }
        seg.header().free_event.notify();
    }
}

impl Shared {
    /// Whether this is the process that attached (not a forked child).
    fn in_creator(&self) -> bool {
        crate::signals::pid() == self.creator_pid
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.in_creator() {
            // A forked child's copy: the entry and its frames are the
            // parent's.
            return;
        }
        // The consumer and every lease are gone, so every slot was handed
        // back. The producer frees the entry once it has collected them.
        let h = self.seg.header();
        roster::leave(
            &self.seg.consumers()[self.index as usize],
            &h.roster,
            &h.free_event,
            self.gave_back.load(Ordering::Relaxed),
        );
    }
}

/// One consumer of a ring: joins a consumer group, takes frames in place
/// from the group's ready queue, and hands each slot back when its
/// [`Frame`] (or [`FrameLease`]) drops. The [crate documentation](crate) has
/// an example.
///
/// Until the producer admits it into its group, a consumer's `take` finds nothing and waits like an idle one.
///
/// A [`Consumer`] is `Send + Sync`: several threads may take from one
/// consumer (they share its group's frames like separate consumers would). A
/// [`Frame`] borrows its consumer; [`Frame::into_lease`] turns it into a
/// [`FrameLease`] that owns a reference to the consumer instead, to hand the
/// frame to a worker thread without a copy. The consumer's table entry is
/// released only when the consumer and every lease are gone.
///
/// **Fork**: a child forked while the parent holds a consumer or frames
/// inherits copies of them. Dropping those copies in the child does nothing
/// (each consumer remembers the pid that attached): the frames stay the
/// parent's, handed back when the parent drops them. A child must attach its
/// own consumer to take frames.
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    latest: bool,
    wait: WaitStrategy,
}

/// What [`Consumer::take`] found.
#[derive(Debug)]
// The frame variant carries its metadata inline (~220 bytes, on the stack):
// boxing it would allocate once per frame.
#[allow(clippy::large_enum_variant)]
pub enum Take<'c> {
    /// A frame, read in place; dropping it hands the slot back.
    Frame(Frame<'c>),
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

/// A frame taken from the ring, read in place. Dropping it hands the slot
/// back to the producer.
#[derive(Debug)]
pub struct Frame<'c> {
    consumer: &'c Consumer,
    group: u8,
    info: FrameInfo,
    claim: Option<ReadClaim>,
}

/// A taken frame that owns a reference to its consumer, so it can be sent to
/// another thread (it is `Send + Sync + 'static`) and dropped there, which
/// hands the slot back. Made by [`Frame::into_lease`].
#[derive(Debug)]
pub struct FrameLease {
    shared: Arc<Shared>,
    group: u8,
    info: FrameInfo,
    claim: Option<ReadClaim>,
}

fn claim_of(claim: &Option<ReadClaim>) -> &ReadClaim {
    claim.as_ref().expect("a live frame holds its claim")
}

/// `part` of the frame `claim` holds: in the consumer's own mapping of the
/// slot if it is detachable, else in the segment's.
fn part<'a>(shared: &'a Shared, claim: &'a Option<ReadClaim>, part: SlotPart) -> &'a [u8] {
    let claim = claim_of(claim);
    match &shared.slot_maps {
        Some(maps) => maps.frame_part(&shared.seg, claim, part),
        None => shared.seg.frame_part(claim, part),
    }
}

fn user_meta<'a>(shared: &'a Shared, info: &FrameInfo, claim: &'a Option<ReadClaim>) -> &'a [u8] {
    // `user_len` was clamped to the capacity when the frame was taken.
    &part(shared, claim, SlotPart::UserMeta)[..info.user_len]
}

impl<'c> Frame<'c> {
    /// The pixels: H×W×C elements of the ring's [`Dtype`](crate::Dtype)
    /// as bytes, row-major, in the shared segment (page-aligned: they can be
    /// viewed as `u16`/`f32` in place).
    pub fn pixels(&self) -> &[u8] {
        part(&self.consumer.shared, &self.claim, SlotPart::Frame)
    }

    /// The frame's user metadata ([`FrameMeta::user_meta`](crate::FrameMeta::user_meta)),
    /// in the shared segment beside the pixels.
    pub fn user_meta(&self) -> &[u8] {
        user_meta(&self.consumer.shared, &self.info, &self.claim)
    }

    /// The frame's metadata (sequence number, publish time, source…).
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// Sequence number: 0, 1, 2, … in publish order.
    pub fn seq(&self) -> u64 {
        self.info.seq
    }

    /// The frame's shape (the ring's).
    pub fn shape(&self) -> FrameShape {
        self.consumer.shape()
    }

    /// Turns the frame into a [`FrameLease`], which can go to another thread
    /// without a copy. Costs one reference-count increment.
    pub fn into_lease(mut self) -> FrameLease {
        FrameLease {
            shared: self.consumer.shared.clone(),
            group: self.group,
            info: self.info,
            claim: self.claim.take(),
        }
    }
}

impl Frame<'_> {
    /// Hands the frame back *unconsumed*: instead of being done with, it is
    /// delivered again to this consumer's group — to whichever of its
    /// consumers takes next, this one included — with
    /// [`FrameInfo::redeliveries`] one higher, and counted by the producer
    /// as redelivered ([`Producer::redelivered`](crate::Producer::redelivered)).
    /// For a frame whose output failed. (Dropping a frame hands it back as
    /// consumed.) A consumer that gave frames back and then leaves as the
    /// last of an ad-hoc group leaves it lingering, as a dead one would
    /// ([`ProducerBuilder::group_linger`](crate::ProducerBuilder::group_linger)),
    /// so the frames wait for the next consumer.
    ///
    /// ```
    /// use framering_ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
    /// use std::time::Duration;
    ///
    /// let ring = format!("doc-give-back-{}", std::process::id());
    /// let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
    /// let consumer = Consumer::builder(&ring).attach()?;
    /// let slot = producer.loan(Duration::from_secs(1))?;
    /// let seq = slot.publish(&FrameMeta::new())?;
    ///
    /// let Take::Frame(frame) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// // Writing it out failed: let the group have it again.
    /// frame.give_back();
    /// // The producer collects it as it goes (here: while draining).
    /// producer.finish();
    /// assert!(!producer.drain(Some(Duration::from_millis(50)))?);
    /// let Take::Frame(again) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// assert_eq!((again.seq(), again.info().redeliveries), (seq, 1));
    /// drop(again); // consumed this time
    /// assert!(producer.drain(Some(Duration::from_secs(1)))?);
    /// assert_eq!(producer.redelivered(), 1);
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn give_back(mut self) {
        if let Some(claim) = self.claim.take() {
            self.consumer.shared.release(self.group, claim, false);
        }
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.consumer.shared.release(self.group, claim, true);
        }
    }
}

impl FrameLease {
    /// The pixels, in the shared segment: see [`Frame::pixels`].
    pub fn pixels(&self) -> &[u8] {
        part(&self.shared, &self.claim, SlotPart::Frame)
    }

    /// The frame's user metadata, in the shared segment.
    pub fn user_meta(&self) -> &[u8] {
        user_meta(&self.shared, &self.info, &self.claim)
    }

    /// The frame's metadata.
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.info.seq
    }

    /// The frame's shape (the ring's).
    pub fn shape(&self) -> FrameShape {
        self.shared.seg.geometry().frame_shape()
    }
}

impl FrameLease {
    /// Hands the frame back *unconsumed*, to be delivered again to the
    /// group: see [`Frame::give_back`].
    ///
    /// ```
    /// # use framering_ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
    /// # use std::time::Duration;
    /// # let ring = format!("doc-lease-give-back-{}", std::process::id());
    /// # let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
    /// # let consumer = Consumer::builder(&ring).attach()?;
    /// # producer.loan(Duration::from_secs(1))?.publish(&FrameMeta::new())?;
    /// let Take::Frame(frame) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// let lease = frame.into_lease();
    /// std::thread::spawn(move || lease.give_back()).join().unwrap();
    /// # producer.finish();
    /// # assert!(!producer.drain(Some(Duration::from_millis(50)))?);
    /// let Take::Frame(again) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// assert_eq!(again.info().redeliveries, 1);
    /// # drop(again);
    /// # assert!(producer.drain(Some(Duration::from_secs(1)))?);
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn give_back(mut self) {
        if let Some(claim) = self.claim.take() {
            self.shared.release(self.group, claim, false);
        }
    }
}

impl FrameLease {
    /// Whether holding this frame leaves the producer without a slot to
    /// write: no slot is free or being written, no return is waiting to be
    /// collected (it would free its slot), and no other group still has this
    /// frame queued (that group's consumers will take it and hand it back in
    /// their own time: handing ours back would free nothing). Another group
    /// *reading* the frame does not make it false: that reader may be
    /// keeping it the same way while it waits (two consumers of two groups
    /// on a ring of one slot would otherwise wait for each other forever),
    /// so each side lets go of its share. A caller that keeps frames
    /// while it waits for the next one asks this before it waits, and
    /// [detaches](Self::detach) the frames that would otherwise stall the
    /// ring. A snapshot of words other processes change meanwhile (a load
    /// per slot, per group and per consumer table entry at most): a wrong
    /// `true` costs a needless detach, a wrong `false` a later look.
    pub fn blocks_producer(&self) -> bool {
        use crate::sync::Ordering as O;
        let seg = &self.shared.seg;
        let g = seg.geometry();
        let slot = self.info.slot as usize;
        // A return not yet collected frees its slot as soon as the producer
        // wakes (a return wakes it).
        let collected = || (0..g.max_consumers as usize).all(|c| return_queue(seg, c).is_empty());
        let no_free = || {
            seg.slot_states().iter().all(|w| {
                !matches!(
                    SlotState::decode(w.load(O::Acquire)),
                    Some(SlotState::Free | SlotState::Writing)
                )
            })
        };
        let not_queued_elsewhere = || {
            (0..g.max_groups as usize)
                .filter(|&grp| grp != self.group as usize)
                .all(|grp| {
                    !matches!(
                        seg.claims(grp)
                            .get(slot)
                            .and_then(|w| SlotState::decode(w.load(O::Acquire))),
                        Some(SlotState::Ready { .. })
                    )
                })
        };
        // Cheapest and most often false first.
        no_free() && not_queued_elsewhere() && collected()
    }

    /// Copies the frame out of its slot, *at the same address*, and hands
    /// the slot back: every reference to the pixels (a view some binding
    /// made of [`pixels`](Self::pixels)' address) stays valid and keeps the
    /// frame's bytes while the producer rewrites the slot. One copy of the
    /// slot (pixels and user metadata), and a few system calls; the copy
    /// lives until the [`DetachedFrame`] drops. For consumers attached with
    /// [`ConsumerBuilder::detachable`]; on an error the frame is returned,
    /// still held.
    // The lease comes back by value on the rare error, not boxed: an
    // allocation for an error path is not worth the indirection.
    #[allow(clippy::result_large_err)]
    pub fn detach(mut self) -> Result<DetachedFrame, (FrameLease, DetachError)> {
        let name = || self.shared.seg.name().to_string();
        let Some(maps) = &self.shared.slot_maps else {
            let e = DetachError::NotDetachable { name: name() };
            return Err((self, e));
        };
        let claim = claim_of(&self.claim);
        match maps.detach(&self.shared.seg, claim) {
            Ok(copy) => {
                let g = self.shared.seg.geometry();
                let detached = DetachedFrame {
                    copy,
                    frame: SlotPart::Frame.range(g),
                    meta: SlotPart::UserMeta.range(g),
                    info: self.info,
                };
                if let Some(claim) = self.claim.take() {
                    self.shared.release(self.group, claim, true);
                }
                Ok(detached)
            }
            Err((op, e)) => {
                let e = DetachError::Io {
                    name: name(),
                    slot: self.info.slot,
                    op,
                    source: e.into(),
                };
                Err((self, e))
            }
        }
    }
}

/// A frame copied out of its slot by [`FrameLease::detach`]: its pixels and
/// user metadata at the addresses the lease had them, in private memory
/// (read-only) that is freed when this drops. Holds no slot.
#[derive(Debug)]
pub struct DetachedFrame {
    copy: SlotCopy,
    frame: (u64, u64),
    meta: (u64, u64),
    info: FrameInfo,
}

impl DetachedFrame {
    /// The pixels (the copy), at the address the lease had them.
    pub fn pixels(&self) -> &[u8] {
        self.copy.part(self.frame)
    }

    /// The frame's user metadata (the copy).
    pub fn user_meta(&self) -> &[u8] {
        &self.copy.part(self.meta)[..self.info.user_len]
    }

    /// The frame's metadata.
    pub fn info(&self) -> &FrameInfo {
        &self.info
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.info.seq
    }
}

impl Drop for FrameLease {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.shared.release(self.group, claim, true);
        }
    }
}

impl Consumer {
    /// Starts attaching to the ring `name`; the defaults join group
    /// `"default"` and adopt the ring's shape.
    pub fn builder(name: &str) -> ConsumerBuilder {
        ConsumerBuilder {
            name: name.to_string(),
            group: DEFAULT_GROUP.to_string(),
            latest: false,
            wait: WaitStrategy::default(),
            expect: None,
            any_dtype: false,
            wait_for_ring: Duration::ZERO,
            stop: None,
            policy: None,
            detachable: false,
        }
    }

    fn attach_once(b: &ConsumerBuilder) -> Result<Consumer, AttachError> {
        let name = b.name.as_str();
        let seg = Segment::open(name)?;
        let g = *seg.geometry();
        if let Some(asked) = b.expect {
            let ring = g.frame_shape();
            // 0 = any: the ring's own value.
            let pick = |asked: u32, ring: u32| if asked == 0 { ring } else { asked };
            let expected = FrameShape::new(
                pick(asked.height, ring.height),
                pick(asked.width, ring.width),
                pick(asked.channels, ring.channels),
            )
            .with_dtype(if b.any_dtype { ring.dtype } else { asked.dtype });
            if ring != expected {
                return Err(AttachError::ShapeMismatch {
                    name: name.into(),
                    ring,
                    expected,
                });
            }
        }
        // Mapped before the table entry is claimed: nothing to undo.
        let slot_maps = if b.detachable {
            Some(SlotMaps::new(&seg).map_err(|e| OpenError::Io {
                name: name.into(),
                op: "mmap of a slot",
                source: e.into(),
            })?)
        } else {
            None
        };
        let me = ProcessId::current();
        // Entries of consumers that left are freed by the producer; give it
        // a moment if the table is full of them.
        let deadline = Instant::now() + Duration::from_secs(2);
        let index = loop {
            // Holding entry i's lock byte, we are the only process that can
            // claim it by lock: we say so in the entry before the owner CAS
            // publishes it (Release), so that no prober ever sees our owner
            // word without knowing that a lock stands for it.
            let lock = |i: usize| match liveness::try_lock(seg.file(), liveness::consumer_byte(i)) {
                liveness::Lock::Held => {
                    seg.consumers()[i].liveness_lock.store(1, O::Relaxed);
                    true
                }
                liveness::Lock::Unsupported => true,
                liveness::Lock::Other => false,
            };
            let unlock = |i: usize| {
                // The CAS failed: a claimant without a lock owns it.
                seg.consumers()[i].liveness_lock.store(0, O::Relaxed);
                liveness::unlock(seg.file(), liveness::consumer_byte(i));
            };
            match roster::claim_entry_locked(seg.consumers(), me.owner_word(), lock, unlock) {
                Some(i) => break i,
                None if Instant::now() < deadline
                    && seg.consumers().iter().any(|e| {
                        // Left, or freed but its lock byte still held by
                        // the exiting owner: free in a moment.
                        matches!(roster::request(e), roster::Request::Leave { .. })
                            || e.owner.load(O::Relaxed) == 0
                    }) =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => {
                    return Err(AttachError::TooManyConsumers {
                        name: name.into(),
                        max: g.max_consumers,
                    })
                }
            }
        };
        let e = &seg.consumers()[index];
        use crate::sync::Ordering as O;
        e.start_ticks.store(me.start_ticks, O::Relaxed);
        e.pid.store(me.pid, O::Relaxed);
        e.frames.store(0, O::Relaxed);
        e.skipped.store(0, O::Relaxed);
        e.heartbeat_ns.store(monotonic_ns(), O::Relaxed);
        // Published to the producer by request_join's Release store.
        e.policy.store(
            match b.policy {
                None => POLICY_RING,
                Some(Backpressure::Block) => BACKPRESSURE_BLOCK + 1,
                Some(Backpressure::DropOldest) => BACKPRESSURE_DROP_OLDEST + 1,
            },
            O::Relaxed,
        );
        let h = seg.header();
        roster::request_join(e, b.group.as_bytes(), &h.roster, &h.free_event);
        Ok(Consumer {
            shared: Arc::new(Shared {
                seg,
                index: index as u8,
                group_name: b.group.clone(),
                admitted: AtomicU32::new(NOT_ADMITTED),
                returns: Mutex::new(()),
                gave_back: std::sync::atomic::AtomicBool::new(false),
                return_failed: Mutex::new(None),
                creator_pid: crate::signals::pid(),
                slot_maps,
            }),
            latest: b.latest,
            wait: b.wait,
        })
    }

    fn seg(&self) -> &Segment {
        &self.shared.seg
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
        self.entry().frames.load(crate::sync::Ordering::Relaxed)
    }

    /// Frames skipped to stay on the newest one (`latest`).
    pub fn skipped(&self) -> u64 {
        self.entry().skipped.load(crate::sync::Ordering::Relaxed)
    }

    /// Frames this consumer's group lost so far (dropped unconsumed), as the
    /// producer counts them. 0 before the consumer was admitted.
    pub fn group_dropped(&self) -> u64 {
        match self.shared.admitted.load(Ordering::Relaxed) {
            NOT_ADMITTED => 0,
            g => self.seg().groups()[g as usize]
                .dropped
                .load(crate::sync::Ordering::Relaxed),
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
                .load(crate::sync::Ordering::Relaxed)
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

    fn entry(&self) -> &crate::layout::ConsumerEntry {
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
        match *self.shared.return_failed.lock() {
            Some(c) => Err(RingCorrupt::new(self.name(), c)),
            None => Ok(()),
        }
    }

    /// The producer's failure, if it marked the ring failed.
    fn producer_failed(&self, flags: u32) -> Option<FailReason> {
        use crate::sync::Ordering as O;
        (flags & FLAG_FAILED != 0)
            .then(|| FailReason::from_code(self.seg().header().fail_reason.load(O::Relaxed)))
    }

    /// The group index, once the producer admitted us.
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
            g.state.load(crate::sync::Ordering::Acquire) != GROUP_UNUSED
                && &name[..len] == self.group().as_bytes()
        });
        if let Some(g) = found {
            roster::admit(self.entry(), g as u8);
        }
    }

    fn try_take(&self) -> Result<Option<Frame<'_>>, TakeError> {
        use crate::sync::Ordering as O;
        let Some(g) = self.admitted()? else {
            return Ok(None);
        };
        let seg = self.seg();
        let q = group_queue(seg, g as usize);
        let me = self.shared.index;
        let Some(mut claim) = q.take(me).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let e = self.entry();
        if self.latest {
            // Keep the newest: claim the next one before handing back the
            // one we hold, so that we never end up with nothing.
            while let Some(newer) = q.take(me).map_err(|c| self.corrupt(c))? {
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
        // monotonic clock is read through the vDSO: no system call.
        let now = monotonic_ns();
        if now >= e.heartbeat_ns.load(O::Relaxed).saturating_add(250_000_000) {
            e.heartbeat_ns.store(now, O::Relaxed);
        }
        Ok(Some(Frame {
            consumer: self,
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
    pub fn take_now(&self) -> Result<Option<Frame<'_>>, TakeError> {
        self.check_returns()?;
        self.try_take()
    }

    /// Whether the stream ended for this consumer *as far as it can tell
    /// without handing its frames back*: the producer ended the stream
    /// ([`Producer::finish`](crate::Producer::finish)), failed or died, and
    /// nothing is queued for this consumer's group. [`take`](Self::take)
    /// reports [`Take::EndOfStream`] only once the producer drained, that
    /// is once every frame came back, so a consumer that keeps frames (or
    /// leases) while it asks for the next one would wait forever: it asks
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
        use crate::sync::Ordering as O;
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
            Some(g) => group_queue(self.seg(), g as usize).is_empty(),
            None => true,
        })
    }

    /// Takes the next frame of the consumer's group, waiting up to
    /// `timeout` ([`TakeError::Timeout`] after that). Ends with
    /// [`Take::EndOfStream`] once the producer finished and drained, or
    /// [`Take::ProducerGone`] if it died, after every frame published to the
    /// group was taken.
    ///
    /// A return this consumer could not push (a corrupt return queue) is
    /// reported here as [`TakeError::Corrupt`]; a producer that failed as
    /// [`Take::ProducerFailed`], once the frames queued for the group were
    /// taken.
    pub fn take(&self, timeout: Duration) -> Result<Take<'_>, TakeError> {
        use crate::sync::Ordering as O;
        self.check_returns()?;
        if let Some(f) = self.try_take()? {
            return Ok(Take::Frame(f));
        }
        let seg = self.seg();
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
                let flags = h.flags.load(O::Acquire);
                (flags & (FLAG_DRAINED | FLAG_FAILED) != 0).then_some(None)
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
            if Instant::now() >= deadline {
                return Err(TakeError::Timeout { waited: timeout });
            }
        }
    }
}
