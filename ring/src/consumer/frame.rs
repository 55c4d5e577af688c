//! The frames a consumer takes, read in place, and their copies.

use crate::error::DetachError;
use crate::options::FrameInfo;
use crate::platform::slot_maps::SlotCopy;
use crate::platform::views::SlotPart;
use crate::protocol::ready_queue::ReadClaim;
use crate::protocol::slot::SlotState;
use crate::shape::FrameShape;
use std::sync::Arc;

use super::shared::Shared;

/// A frame taken from the ring ([`Consumer::take`](crate::Consumer::take)),
/// read in place: it owns its slot until it is dropped or
/// [released](Self::release), which hands the slot back to the producer.
///
/// A frame holds a reference to its consumer's shared state, not a borrow of
/// the [`Consumer`](crate::Consumer): it is `Send + Sync + 'static`, so it
/// can go to a worker thread without a copy and be dropped there. The
/// consumer's table entry is released only when the consumer and every
/// frame are gone.
///
/// ```
/// # use framering_ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
/// # use std::time::Duration;
/// # let ring = format!("doc-frame-thread-{}", std::process::id());
/// # let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
/// # let consumer = Consumer::builder(&ring).attach()?;
/// # let mut slot = producer.loan(Duration::from_secs(1))?;
/// # slot.pixels_mut().fill(1);
/// # slot.publish(&FrameMeta::new())?;
/// if let Take::Frame(frame) = consumer.take(Duration::from_secs(1))? {
///     // The worker reads the frame in place and hands the slot back when
///     // it drops it.
///     let sum = std::thread::spawn(move || frame.pixels().iter().map(|&b| b as u32).sum::<u32>())
///         .join()
///         .unwrap();
///     assert_eq!(sum, 4);
/// }
/// # producer.unlink()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Frame {
    pub(super) shared: Arc<Shared>,
    pub(super) group: u8,
    pub(super) info: FrameInfo,
    /// `None` only once handed back (by `release`, `give_back`, `detach`).
    pub(super) claim: Option<ReadClaim>,
}

impl Frame {
    fn claim(&self) -> &ReadClaim {
        self.claim.as_ref().expect("a live frame holds its claim")
    }

    /// `part` of the frame: in the consumer's own mapping of the slot if it
    /// is detachable, else in the segment's.
    fn part(&self, part: SlotPart) -> &[u8] {
        let claim = self.claim();
        match &self.shared.slot_maps {
            Some(maps) => maps.frame_part(&self.shared.seg, claim, part),
            None => self.shared.seg.frame_part(claim, part),
        }
    }

    /// The pixels: H×W×C elements of the ring's [`Dtype`](crate::Dtype)
    /// as bytes, row-major, in the shared segment (page-aligned: they can be
    /// viewed as `u16`/`f32` in place). What the crate guarantees about
    /// these bytes, and what it cannot: see the [crate documentation](crate#what-a-frame-guarantees).
    pub fn pixels(&self) -> &[u8] {
        self.part(SlotPart::Frame)
    }

    /// The frame's user metadata ([`FrameMeta::user_meta`](crate::FrameMeta::user_meta)),
    /// in the shared segment beside the pixels.
    pub fn user_meta(&self) -> &[u8] {
        // `user_len` was clamped to the capacity when the frame was taken.
        &self.part(SlotPart::UserMeta)[..self.info.user_len]
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
        self.shared.seg.geometry().frame_shape()
    }

    /// Hands the slot back to the producer, the frame consumed: what
    /// dropping the frame does, spelled out.
    pub fn release(self) {
        drop(self)
    }

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
    /// // Writing it out failed: let the group have it again (here from
    /// // another thread, which a frame can go to).
    /// std::thread::spawn(move || frame.give_back()).join().unwrap();
    /// // The producer collects it as it goes (here: while draining).
    /// producer.finish();
    /// assert!(producer.drain(Duration::from_millis(50)).unwrap_err().is_timeout());
    /// let Take::Frame(again) = consumer.take(Duration::from_secs(1))? else { panic!() };
    /// assert_eq!((again.seq(), again.info().redeliveries), (seq, 1));
    /// drop(again); // consumed this time
    /// producer.drain(Duration::from_secs(1))?;
    /// assert_eq!(producer.redelivered(), 1);
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn give_back(mut self) {
        if let Some(claim) = self.claim.take() {
            self.shared.release(self.group, claim, false);
        }
    }

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
        use crate::protocol::sync::Ordering as O;
        let seg = &self.shared.seg;
        let g = seg.geometry();
        let slot = self.info.slot as usize;
        // A return not yet collected frees its slot as soon as the producer
        // wakes (a return wakes it).
        let collected =
            || (0..g.max_consumers as usize).all(|c| seg.return_queue(c).is_collected());
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
    /// [`ConsumerBuilder::detachable`](crate::ConsumerBuilder::detachable); on an error the frame is returned,
    /// still held.
    // The frame comes back by value on the rare error, not boxed: an
    // allocation for an error path is not worth the indirection.
    #[allow(clippy::result_large_err)]
    pub fn detach(mut self) -> Result<DetachedFrame, (Frame, DetachError)> {
        let name = || self.shared.seg.name().to_string();
        let Some(maps) = &self.shared.slot_maps else {
            let e = DetachError::NotDetachable { name: name() };
            return Err((self, e));
        };
        let claim = self.claim();
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

impl Drop for Frame {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.shared.release(self.group, claim, true);
        }
    }
}

/// A frame copied out of its slot by [`Frame::detach`]: its pixels and
/// user metadata at the addresses the frame had them, in private memory
/// (read-only) that is freed when this drops. Holds no slot.
#[derive(Debug)]
pub struct DetachedFrame {
    copy: SlotCopy,
    frame: (u64, u64),
    meta: (u64, u64),
    info: FrameInfo,
}

impl DetachedFrame {
    /// The pixels (the copy), at the address the frame had them.
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
