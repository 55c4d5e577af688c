//! The single writer of a ring: loans free slots, and publishes them to every
//! subscribed consumer group.
//!
//! What groups, backpressure and threads mean for it: see [`Producer`].

use crate::error::{FailReason, LoanError, OpenError, PublishError, RingCorrupt, WaitError};
use crate::options::{FrameMeta, InputState};
use crate::platform::clock::{monotonic_ns, SlicedDeadline};
use crate::platform::liveness::PEER_CHECK;
use crate::platform::segment::Segment;
use crate::platform::views::SlotPart;
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::{
    FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_FAILED, FLAG_RUNNING, META_HAS_PTS,
};
use crate::protocol::ledger::WriteClaim;
use crate::protocol::roster::store_name_prefix;
use crate::protocol::sync::Ordering;
use crate::shape::FrameShape;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

pub(crate) mod builder;
mod groups;

use groups::{bits, State, WaitsFor, REAP_EVERY};

/// The single writer of a ring: loans free slots and publishes them to
/// every subscribed consumer group. The [crate documentation](crate) has an
/// example.
///
/// # Groups and slot lifetime
///
/// Each group has its own ready queue and its own claim word per slot
/// (the slot claim words); its consumers share its frames (work-sharing), and
/// every group receives every frame published while it is subscribed
/// (broadcast). The producer alone knows which groups still hold a slot
/// (its ledger): a per-slot bit mask in its own memory, set at publish
/// and cleared as each group's consumer hands the slot back.
///
/// Groups are *declared* (named by the producer: subscribed from the start,
/// and kept when their consumers die, so nothing is lost) or *ad hoc*
/// (created when a consumer asks to join a name nobody declared; subscribed
/// from the next published frame). An ad-hoc group whose last consumer
/// *leaves* releases every slot it held at once (a preview window must not
/// hold the recorder back); one whose last consumer *dies* lingers: it keeps
/// its frames, and goes on receiving new ones, for the linger period
/// ([`ProducerBuilder::group_linger`](crate::ProducerBuilder::group_linger)), so that a consumer restarted by its
/// supervisor loses nothing; then it is released. Membership changes go
/// through the producer (the roster handshake).
///
/// # Backpressure
///
/// Each group has its own policy (the ring's default unless the group's
/// declaration or its first consumer asks for another). A
/// [`Backpressure::Block`](crate::Backpressure::Block) group is lossless: the producer waits for it to
/// hand back slots, and to take queued frames (`max_queued`); a ring whose
/// default is `Block` also waits, before publishing, until some group is
/// subscribed. A [`Backpressure::DropOldest`](crate::Backpressure::DropOldest) (live) group never slows the
/// producer: short of slots, the producer withdraws from live groups the
/// oldest published frame that no live consumer has claimed yet and that no
/// lossless group still holds (a CAS on each group's claim word, racing the
/// consumers' claim CAS, so a frame being read is never taken away), and
/// reuses its slot. A recorder and a preview can so share one ring: the
/// recorder gets every frame, the preview the newest it can keep up with.
///
/// # Threads
///
/// A [`Producer`] is `Send + Sync`: its bookkeeping sits behind a lock that
/// is held only for the few hundred nanoseconds of a loan or a publish, never
/// while waiting. A [`WriteSlot`] borrows its producer, so it can only be
/// published (or dropped: handed back unpublished) through the producer that
/// loaned it, and it is `Send`: decoder threads can fill slots in parallel.
///
/// A child forked from the producer's process inherits a copy of it;
/// dropping the copy there does nothing (the ring stays the parent's).
#[derive(Debug)]
pub struct Producer {
    pub(crate) seg: Segment,
    wait: WaitStrategy,
    state: Mutex<State>,
    /// The process that created the ring: dropping a forked child's copy
    /// does not mark the ring's producer gone.
    creator_pid: u32,
}

/// A slot loaned by [`Producer::loan`], to fill in place and
/// [`publish`](Self::publish). It borrows its producer, so it can only be
/// published through the producer that loaned it; dropping it unpublished
/// hands it back (e.g. when the input could not be decoded).
#[derive(Debug)]
pub struct WriteSlot<'p> {
    producer: &'p Producer,
    claim: Option<WriteClaim>,
}

impl WriteSlot<'_> {
    fn claim(&self) -> &WriteClaim {
        self.claim
            .as_ref()
            .expect("a live WriteSlot holds its claim")
    }

    /// The slot's index in the pool.
    pub fn index(&self) -> u32 {
        self.claim().slot()
    }

    /// The frames' shape.
    pub fn shape(&self) -> FrameShape {
        self.producer.shape()
    }

    /// The frame's bytes, H×W×C row-major, to fill in place. They hold
    /// whatever the slot held before (an old frame).
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        let claim = self
            .claim
            .as_mut()
            .expect("a live WriteSlot holds its claim");
        self.producer.seg.frame_mut(claim)
    }

    /// The frame's bytes.
    pub fn pixels(&self) -> &[u8] {
        self.producer.seg.frame_written(self.claim())
    }

    /// Publishes the frame to every subscribed group and returns its
    /// sequence number. With no group subscribed (possible only with
    /// [`Backpressure::DropOldest`](crate::Backpressure::DropOldest): the block policy waits for one in
    /// `loan`) the frame is counted as dropped.
    pub fn publish(mut self, meta: &FrameMeta<'_>) -> Result<u64, PublishError> {
        let claim = self.claim.take().expect("a live WriteSlot holds its claim");
        self.producer.publish_claim(claim, meta)
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            let mut st = self.producer.state.lock();
            st.ledger.discard(claim, self.producer.seg.slot_states());
        }
    }
}

impl Producer {
    /// The ring's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The frames' shape.
    pub fn shape(&self) -> FrameShape {
        self.seg.geometry().frame_shape()
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.seg.geometry().slots
    }

    /// Bytes of user metadata a frame can carry.
    pub fn user_meta_capacity(&self) -> usize {
        self.seg.geometry().user_meta_bytes as usize
    }

    /// Frames re-published because their consumer died or handed them back
    /// unconsumed ([`Frame::give_back`](crate::Frame::give_back)).
    pub fn redelivered(&self) -> u64 {
        self.state.lock().redelivered
    }

    /// Frames dropped (drop-oldest policy, or published with no group
    /// subscribed). A frame dropped by several groups counts once.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Slots in the producer's free pool now.
    pub fn free_slots(&self) -> usize {
        self.state.lock().ledger.free_len()
    }

    /// Consumers admitted into a group now.
    pub fn consumers(&self) -> u32 {
        let st = self.state.lock();
        st.groups.iter().map(|g| g.members.count_ones()).sum()
    }

    /// Groups subscribed now.
    pub fn subscribed_groups(&self) -> u32 {
        self.state.lock().active.count_ones()
    }

    /// Every group the ring has had (declared, or ad hoc and still active,
    /// or ad hoc and gone with frames it lost): the same figures
    /// [`RingView::snapshot`](crate::inspect::RingView::snapshot) shows
    /// another process, read under the producer's lock.
    ///
    /// ```
    /// use framering_ring::{FrameShape, Producer};
    ///
    /// let ring = format!("doc-groups-{}", std::process::id());
    /// let producer = Producer::builder(&ring)
    ///     .shape(FrameShape::new(4, 4, 1))
    ///     .groups(["rec"])
    ///     .create()?;
    /// let rec = &producer.groups()[0];
    /// assert_eq!((rec.name.as_str(), rec.declared, rec.members), ("rec", true, 0));
    /// producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn groups(&self) -> Vec<crate::inspect::GroupStatus> {
        let _st = self.state.lock();
        crate::inspect::snapshot(&self.seg).groups
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.seg.header().published.load(Ordering::Relaxed)
    }

    /// Says what the producer's input is doing, for status displays
    /// ([`inspect::ProducerStatus::input`](crate::inspect::ProducerStatus::input)):
    /// a producer that publishes nothing because it waits for its input (a
    /// camera, a pipe) says [`InputState::Waiting`], so that nobody looks for
    /// the cause among the consumers. One relaxed store; the ring's protocol
    /// does not read it.
    ///
    /// ```
    /// use framering_ring::{inspect::RingView, FrameShape, InputState, Producer};
    ///
    /// let ring = format!("doc-input-{}", std::process::id());
    /// let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
    /// producer.set_input_state(InputState::Waiting);
    /// producer.count_skipped_input();
    /// let status = RingView::open(&ring)?.snapshot().producer;
    /// assert_eq!((status.input, status.skipped), (InputState::Waiting, 1));
    /// # producer.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_input_state(&self, state: InputState) {
        let waiting = state == InputState::Waiting;
        self.seg
            .header()
            .waiting_input
            .store(waiting as u32, Ordering::Relaxed);
    }

    /// Counts an input the producer skipped (unreadable, undecodable), for
    /// status displays
    /// ([`inspect::ProducerStatus::skipped`](crate::inspect::ProducerStatus::skipped)).
    pub fn count_skipped_input(&self) {
        self.seg.header().skipped.fetch_add(1, Ordering::Relaxed);
    }

    fn corrupt(&self, c: crate::error::Corrupt) -> RingCorrupt {
        RingCorrupt::new(self.seg.name(), c)
    }

    /// Loans a free slot to fill, waiting up to `timeout` for consumers to
    /// return one (and, with the block policy, for a group to subscribe and
    /// for consumers to take queued frames; `Duration::MAX` waits for good).
    /// The lock is not held while waiting.
    ///
    /// A [`LoanError::Corrupt`] marks the ring failed ([`Producer::fail`]).
    pub fn loan(&self, timeout: Duration) -> Result<WriteSlot<'_>, LoanError> {
        let r = self.try_loan_within(timeout);
        if let Err(LoanError::Corrupt(_)) = &r {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    fn try_loan_within(&self, timeout: Duration) -> Result<WriteSlot<'_>, LoanError> {
        // No clock read unless a first wait slice runs out (SlicedDeadline):
        // a producer that finds every slot in use on nearly every loan (one
        // that outruns its consumers) would otherwise read it two or three
        // times per frame.
        let mut deadline = SlicedDeadline::new(timeout);
        // Whether a wait slice ran out: only then can dead consumers be
        // what holds the slots (a busy ring wakes us before), and only then
        // are they looked for — at most every REAP_EVERY: it reads /proc.
        let mut slice_ran_out = false;
        loop {
            let (roster_seen, block, max_queued, waits_for, admitted, heads) = {
                let mut st = self.state.lock();
                if let Some(claim) = st.try_loan(&self.seg)? {
                    return Ok(WriteSlot {
                        producer: self,
                        claim: Some(claim),
                    });
                }
                if slice_ran_out && st.last_reap.elapsed() >= REAP_EVERY {
                    st.reap_dead_consumers(&self.seg)?;
                    if let Some(claim) = st.try_loan(&self.seg)? {
                        return Ok(WriteSlot {
                            producer: self,
                            claim: Some(claim),
                        });
                    }
                }
                (
                    st.roster_seen,
                    st.active & !st.live,
                    st.max_queued,
                    st.waits_for,
                    st.admitted(),
                    st.return_heads(),
                )
            };
            let slice = match deadline.next_slice(PEER_CHECK) {
                Some(slice) if !timeout.is_zero() => slice,
                _ => return Err(LoanError::Timeout { waited: timeout }),
            };
            let seg = &self.seg;
            let got = seg.header().free_event.wait_until(self.wait, slice, || {
                let changed = seg.header().roster.load(Ordering::Acquire) != roster_seen;
                // Only admitted consumers hold frames to hand back (one
                // joining or leaving changes the roster). Our own heads, not
                // the shared copies: a head scribbled in the segment must
                // not make every wait return at once (the loop would spin).
                let returned = (0..seg.consumers().len()).any(|c| {
                    admitted & (1 << c) != 0 && !seg.return_queue(c).is_empty_at(heads[c])
                });
                // Consumers taking frames (they notify a waiting producer)
                // bring a lossless group back under max_queued. Only when
                // that is what we wait for: with no free slot, room in the
                // queues is no reason to try again (it would spin).
                let room = waits_for == WaitsFor::Room
                    && block != 0
                    && bits(block).all(|g| seg.group_queue(g).below_now(max_queued));
                (changed || returned || room).then_some(())
            });
            slice_ran_out = got.is_none();
            if slice_ran_out {
                deadline.ran_out(slice);
            }
        }
    }

    fn publish_claim(&self, claim: WriteClaim, meta: &FrameMeta<'_>) -> Result<u64, PublishError> {
        let r = self.publish_claim_inner(claim, meta);
        if let Err(PublishError::Corrupt(_)) = &r {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    fn publish_claim_inner(
        &self,
        mut claim: WriteClaim,
        meta: &FrameMeta<'_>,
    ) -> Result<u64, PublishError> {
        let seg = &self.seg;
        let mut st = self.state.lock();
        // The frames' memory, reserved in the background from the first
        // publish on: its outcome is taken once it is in, never waited for
        // (the first frames would wait for the pages of every later slot).
        if st.reservation.as_ref().is_some_and(|r| r.is_finished()) {
            if let Some(Err(e)) = st.reservation.take().map(|r| r.wait()) {
                st.ledger.discard(claim, seg.slot_states());
                return Err(e);
            }
        }
        // Relaxed: only this producer sets the flag, under this lock.
        if seg.header().flags.load(Ordering::Relaxed) & FLAG_END_OF_STREAM != 0 {
            st.ledger.discard(claim, seg.slot_states());
            return Err(PublishError::Finished {
                name: seg.name().to_string(),
            });
        }
        let capacity = seg.geometry().user_meta_bytes as usize;
        if meta.user_meta.len() > capacity {
            st.ledger.discard(claim, seg.slot_states());
            return Err(PublishError::UserMetaTooLong {
                len: meta.user_meta.len(),
                capacity,
            });
        }
        seg.slot_part_mut(&mut claim, SlotPart::UserMeta)[..meta.user_meta.len()]
            .copy_from_slice(meta.user_meta);
        let s = claim.slot() as usize;
        let h = seg.header();
        // Only the producer writes `published` (under our lock).
        let seq = h.published.load(Ordering::Relaxed);
        let m = &seg.slot_meta()[s];
        // Relaxed: published by the Release store of the claim words in `push`.
        m.seq.store(seq, Ordering::Relaxed);
        m.src_width.store(meta.src_width, Ordering::Relaxed);
        m.src_height.store(meta.src_height, Ordering::Relaxed);
        m.redeliveries.store(0, Ordering::Relaxed);
        let len = store_name_prefix(&m.name, meta.source);
        m.name_len.store(len as u32, Ordering::Relaxed);
        let now_ns = monotonic_ns();
        m.publish_ns.store(now_ns, Ordering::Relaxed);
        let capture_ns = match meta.capture_ns {
            0 => st.wall_clock.realtime_at(now_ns),
            t => t,
        };
        m.capture_ns.store(capture_ns, Ordering::Relaxed);
        m.pts_ns
            .store(meta.pts_ns.unwrap_or(0) as u64, Ordering::Relaxed);
        let flags = if meta.pts_ns.is_some() {
            META_HAS_PTS
        } else {
            0
        };
        m.flags.store(flags, Ordering::Relaxed);
        m.user_len
            .store(meta.user_meta.len() as u32, Ordering::Relaxed);
        let active = st.active;
        if active == 0 {
            st.note_drop(seg);
        }
        let slot = st.ledger.publish(claim, active, seq, seg.slot_states());
        for g in bits(active) {
            st.push_to_group(seg, g, slot)
                .map_err(|c| self.corrupt(c))?;
            // Only the producer writes it, under its lock: no locked add.
            let delivered = &seg.groups()[g].delivered;
            delivered.store(
                delivered.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
        h.published.store(seq + 1, Ordering::Release);
        // Consumers re-check the queues before they sleep: only a sleeping
        // one needs the event bumped and a wake-up (see `notify_if_waiting`).
        h.ready_event.notify_if_waiting();
        if let Some(r) = &mut st.reservation {
            r.start();
        }
        if now_ns >= st.next_reap_ns {
            st.next_reap_ns = now_ns + REAP_EVERY.as_nanos() as u64;
            if st.last_reap.elapsed() >= REAP_EVERY {
                st.reap_dead_consumers(seg)?;
            }
        }
        Ok(seq)
    }

    /// Admits consumers waiting to join, frees the entries of those that
    /// left, and recovers the frames of those that died. `loan`, `publish`
    /// and `drain` do this as they go; call it when the producer is idle for
    /// long (a consumer waits for admission until then).
    ///
    /// Corruption marks the ring failed ([`Producer::fail`]).
    pub fn service(&self) -> Result<(), RingCorrupt> {
        let mut st = self.state.lock();
        let r = st
            .service_roster(&self.seg)
            .and_then(|()| st.reap_dead_consumers(&self.seg).map(drop));
        drop(st);
        self.failing(r)
    }

    /// Marks the ring failed if `r` is an error.
    fn failing<T>(&self, r: Result<T, RingCorrupt>) -> Result<T, RingCorrupt> {
        if r.is_err() {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    /// Marks the ring failed: the producer gives up (its input failed, the
    /// ring is corrupt, …). Its consumers take what was published, then
    /// [`take`](crate::Consumer::take) reports
    /// [`Take::ProducerFailed`](crate::Take::ProducerFailed) with `reason`,
    /// not the end of the stream. The first reason given stays.
    pub fn fail(&self, reason: FailReason) {
        let h = self.seg.header();
        if h.flags.load(Ordering::Relaxed) & FLAG_FAILED == 0 {
            h.fail_reason.store(reason.code(), Ordering::Relaxed);
        }
        // Release: the reason (and every publish) before the flag.
        h.flags.fetch_or(FLAG_FAILED, Ordering::Release);
        h.ready_event.notify();
    }

    /// Waits up to `timeout` until at least `n` groups are subscribed (for
    /// a run that must not start before its consumers):
    /// [`WaitError::Timeout`] if they are not by then. `Duration::MAX`
    /// waits for good.
    pub fn wait_for_groups(&self, n: u32, timeout: Duration) -> Result<(), WaitError> {
        let r = self.wait_for_groups_inner(n, timeout);
        finished_within(self.failing(r), timeout)
    }

    fn wait_for_groups_inner(&self, n: u32, timeout: Duration) -> Result<bool, RingCorrupt> {
        // None: no deadline (`Duration::MAX`).
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let roster = {
                let mut st = self.state.lock();
                st.service_roster(&self.seg)?;
                if st.active.count_ones() >= n {
                    return Ok(true);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
                st.reap_dead_consumers(&self.seg)?;
                st.roster_seen
            };
            let h = self.seg.header();
            h.free_event
                .wait_until(WaitStrategy::FUTEX, Duration::from_millis(20), || {
                    (h.roster.load(Ordering::Acquire) != roster).then_some(())
                });
        }
    }

    /// Signals end of stream: consumers take what is queued, then their
    /// `take` reports [`Take::EndOfStream`](crate::Take::EndOfStream) once
    /// every frame of their group came back, which [`drain`](Self::drain)
    /// collects (each group ends on its own: a fast group does not wait for
    /// a slow one). Publishing after it fails with
    /// [`PublishError::Finished`].
    pub fn finish(&self) {
        let h = self.seg.header();
        // Under the lock: a publish either completes before the flag or sees
        // it and refuses (`publish_claim_inner` checks it under the lock).
        let _st = self.state.lock();
        // Release: every publish happens before a consumer sees the flag.
        h.flags.fetch_or(FLAG_END_OF_STREAM, Ordering::Release);
        h.ready_event.notify();
    }

    /// After [`finish`](Self::finish): waits until every published frame was
    /// consumed and returned (re-publishing those of consumers that die):
    /// [`WaitError::Timeout`] if `timeout` passes first (the ring has not
    /// drained; waiting again may finish it). `Duration::MAX` waits for good.
    ///
    /// Corruption found meanwhile (a claim word naming no consumer of its
    /// group, a queue position that cannot be, …: checked every 200 ms)
    /// ends the wait with [`WaitError::Corrupt`] and marks the ring failed.
    pub fn drain(&self, timeout: Duration) -> Result<(), WaitError> {
        let r = self.drain_inner(timeout);
        finished_within(self.failing(r), timeout)
    }

    fn drain_inner(&self, timeout: Duration) -> Result<bool, RingCorrupt> {
        let seg = &self.seg;
        let slots = seg.geometry().slots as usize;
        let start = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let (roster, heads) = {
                let mut st = self.state.lock();
                st.service_roster(seg)?;
                st.collect(seg)?;
                st.mark_drained_groups(seg);
                if st.ledger.free_len() >= slots {
                    let h = seg.header();
                    h.flags.fetch_or(FLAG_DRAINED, Ordering::Release);
                    h.ready_event.notify();
                    return Ok(true);
                }
                if start.elapsed() >= timeout {
                    return Ok(false);
                }
                if last_log.elapsed() >= Duration::from_secs(5) {
                    last_log = Instant::now();
                    tracing::info!(
                        outstanding = slots - st.ledger.free_len(),
                        "waiting for consumers to finish the queued frames"
                    );
                }
                (st.roster_seen, st.return_heads())
            };
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, PEER_CHECK, || {
                    let changed = seg.header().roster.load(Ordering::Acquire) != roster;
                    // Our own heads, as in `loan`.
                    let returned = (0..seg.geometry().max_consumers as usize)
                        .any(|c| !seg.return_queue(c).is_empty_at(heads[c]));
                    (changed || returned).then_some(())
                });
            self.state.lock().reap_dead_consumers(seg)?;
        }
    }

    /// Removes the ring's name from /dev/shm. Attached consumers keep their
    /// mapping until they exit; a new producer may create the name again.
    ///
    /// Only this ring's name is removed: if the name now names another
    /// ring, it is left alone and [`OpenError::NotFound`] returned.
    pub fn unlink(&self) -> Result<(), OpenError> {
        self.seg.unlink_own()
    }

    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Replaces the reservation of the frames' memory (tests).
    #[cfg(test)]
    pub(crate) fn set_reservation(&self, r: crate::platform::segment::Reservation) {
        self.state.lock().reservation = Some(r);
    }

    /// Whether a reservation of the frames' memory is still under way.
    #[cfg(test)]
    pub(crate) fn reserving(&self) -> bool {
        let st = self.state.lock();
        st.reservation.as_ref().is_some_and(|r| !r.is_finished())
    }

    #[cfg(test)]
    pub(crate) fn reap_dead_consumers(&self) -> Result<u64, RingCorrupt> {
        self.state.lock().reap_dead_consumers(&self.seg)
    }
}

/// A wait's outcome (whether it finished) as the one timeout idiom: not
/// finished within `timeout` is [`WaitError::Timeout`].
fn finished_within(r: Result<bool, RingCorrupt>, timeout: Duration) -> Result<(), WaitError> {
    match r? {
        true => Ok(()),
        false => Err(WaitError::Timeout { waited: timeout }),
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if crate::platform::signals::process_id() != self.creator_pid {
            // A forked child's copy: the ring is still the parent's.
            return;
        }
        let h = self.seg.header();
        h.flags.fetch_and(!FLAG_RUNNING, Ordering::Release);
        h.ready_event.notify();
    }
}
