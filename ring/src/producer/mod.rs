//! The single writer of a ring: loans free slots, and publishes them to every
//! subscribed consumer group.
//!
//! What groups, backpressure and threads mean for it: see [`Producer`].

use crate::error::{
    CreateError, FailReason, LoanError, OpenError, PublishError, RingCorrupt, WaitError,
};
use crate::options::{validate_group_name, Backpressure, FrameMeta, InputState};
use crate::platform::clock::{monotonic_ns, realtime_ns};
use crate::platform::liveness;
use crate::platform::liveness::PEER_CHECK;
use crate::platform::process::ProcessId;
use crate::platform::segment::{CreateFailure, Occupied, Segment, INIT_GRACE};
use crate::platform::views::SlotPart;
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::{
    RingSpec, FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_FAILED, FLAG_LIVENESS_LOCK, FLAG_RUNNING,
    GROUP_DECLARED, GROUP_LINGERING, GROUP_NAME_MAX, GROUP_UNUSED, META_HAS_PTS,
};
use crate::protocol::ledger::{Ledger, WriteClaim};
use crate::protocol::roster::store_name;
use crate::protocol::sync::Ordering;
use crate::shape::FrameShape;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

mod builder;
mod groups;

pub use builder::ProducerBuilder;
pub use groups::GroupReport;
use groups::{auto_max_queued, bits, policy_word, Group, State, WaitsFor, REAP_EVERY};

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
/// ([`ProducerBuilder::group_linger`]), so that a consumer restarted by its
/// supervisor loses nothing; then it is released. Membership changes go
/// through the producer (the roster handshake).
///
/// # Backpressure
///
/// Each group has its own policy (the ring's default unless the group's
/// declaration or its first consumer asks for another). A
/// [`Backpressure::Block`] group is lossless: the producer waits for it to
/// hand back slots, and to take queued frames (`max_queued`); a ring whose
/// default is `Block` also waits, before publishing, until some group is
/// subscribed. A [`Backpressure::DropOldest`] (live) group never slows the
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
    /// [`Backpressure::DropOldest`]: the block policy waits for one in
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
    /// Starts building the ring `name`: give it a
    /// [`shape`](ProducerBuilder::shape), then
    /// [`create`](ProducerBuilder::create) it.
    pub fn builder(name: &str) -> ProducerBuilder {
        ProducerBuilder::new(name)
    }

    fn create(b: ProducerBuilder) -> Result<Producer, CreateError> {
        let name = b.name.as_str();
        let shape = b
            .shape
            .ok_or_else(|| CreateError::NoShape { name: name.into() })?;
        let spec = RingSpec {
            slots: b.slots,
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            dtype: shape.dtype.code(),
            user_meta_bytes: b.user_meta_bytes,
            max_consumers: b.max_consumers,
            max_groups: b.max_groups,
        };
        if b.groups.len() > b.max_groups as usize {
            return Err(CreateError::TooManyGroups {
                name: name.into(),
                given: b.groups.len(),
                max: b.max_groups,
            });
        }
        for (g, _) in &b.groups {
            validate_group_name(g)?;
        }
        if b.mode > 0o777 || b.mode & 0o600 != 0o600 {
            return Err(CreateError::InvalidMode {
                name: name.into(),
                mode: b.mode,
            });
        }
        let mut groups = vec![Group::UNUSED; b.max_groups as usize];
        let mut active = 0;
        let mut live = 0;
        for (g, (gname, policy)) in b.groups.iter().enumerate() {
            if groups[..g].iter().any(|x| x.name() == gname.as_bytes()) {
                continue;
            }
            let len = gname.len().min(GROUP_NAME_MAX);
            groups[g].name[..len].copy_from_slice(&gname.as_bytes()[..len]);
            groups[g].name_len = len;
            groups[g].state = GROUP_DECLARED;
            groups[g].policy = policy.unwrap_or(b.backpressure);
            active |= 1 << g;
            if groups[g].policy == Backpressure::DropOldest {
                live |= 1 << g;
            }
        }
        // Everything a consumer reads about its producer is written before
        // the segment's version makes it openable.
        let init = |seg: &Segment| {
            for (g, grp) in groups.iter().enumerate() {
                if grp.state == GROUP_DECLARED {
                    let entry = &seg.groups()[g];
                    store_name(&entry.name, grp.name());
                    entry
                        .policy
                        .store(policy_word(grp.policy), Ordering::Relaxed);
                    entry.state.store(GROUP_DECLARED, Ordering::Relaxed);
                }
            }
            // Our liveness, for every process sharing the segment whatever
            // its PID namespace: held until we exit (a fresh file: nobody
            // else can hold it).
            let locked = liveness::try_lock(seg.file(), liveness::PRODUCER_BYTE);
            let me = ProcessId::current();
            let h = seg.header();
            h.backpressure
                .store(policy_word(b.backpressure), Ordering::Relaxed);
            h.frame_rate.store(b.frame_rate, Ordering::Relaxed);
            h.producer_start_ticks
                .store(me.start_ticks, Ordering::Relaxed);
            h.producer_pid.store(me.pid, Ordering::Relaxed);
            h.flags.store(
                if locked == liveness::Lock::Held {
                    FLAG_RUNNING | FLAG_LIVENESS_LOCK
                } else {
                    FLAG_RUNNING
                },
                Ordering::Relaxed,
            );
        };
        // The frames' memory is reserved in the background while the first
        // slots fill; `publish` waits for it before the first frame.
        // Of several producers racing for a dead producer's name, one
        // removes it and creates the new ring; another may find the name
        // gone and then taken again: it judges the newcomer like any
        // occupant (so it reports the live winner, with its pid, once its
        // header is written), a bounded number of times.
        let mut attempts = 0;
        let (seg, reservation) = loop {
            match Segment::create_reserving_frames_later(name, spec, b.mode, init) {
                Ok(created) => break created,
                Err(CreateFailure::Exists) if attempts < 3 => {
                    attempts += 1;
                    Self::reclaim_stale(name)?;
                }
                Err(CreateFailure::Exists) => return Err(Self::in_use(name)),
                Err(CreateFailure::Error(e)) => return Err(e),
            }
        };
        let g = *seg.geometry();
        let ledger = Ledger::new(g.slots as usize, seg.base_addr());
        Ok(Producer {
            creator_pid: crate::platform::signals::process_id(),
            wait: b.wait,
            state: Mutex::new(State {
                reservation,
                ledger,
                policy: b.backpressure,
                max_queued: match b.max_queued {
                    0 => auto_max_queued(g.frame_bytes, g.slots),
                    n => n.min(g.slots),
                } as u64,
                last_reap: Instant::now(),
                next_reap_ns: 0,
                redelivered: 0,
                dropped: 0,
                active,
                live,
                waits_for: WaitsFor::Slot,
                linger: b.linger,
                groups,
                member_of: vec![None; g.max_consumers as usize],
                roster_seen: 0,
                returns_seen: 0,
            }),
            seg,
        })
    }

    fn in_use(name: &str) -> CreateError {
        let pid = Segment::open(name)
            .map(|s| s.header().producer_pid.load(Ordering::Acquire))
            .unwrap_or(0);
        CreateError::InUse {
            name: name.into(),
            pid,
        }
    }

    /// Makes room for a new ring named `name`: removes what is there if it
    /// is a dead producer's ring, or an empty or blank file older than
    /// [`INIT_GRACE`] (a creator that died before writing its header);
    /// refuses a live producer's ring and anything it cannot judge.
    ///
    /// Atomic with respect to every other creator and reclaimer: the object
    /// is judged and removed while holding its producer's lock
    /// ([`Segment::occupy`]), which its producer took before the file had a
    /// size and which every remover must hold; and the name is removed only
    /// if it still names the object judged. Of two producers that find the
    /// same dead ring, one removes it and creates the new ring, the other
    /// finds that new ring busy and alive.
    fn reclaim_stale(name: &str) -> Result<(), CreateError> {
        // Long enough for a producer creating its ring right now to publish
        // its header (microseconds in practice; a cold, loaded machine).
        let deadline = Instant::now() + Duration::from_secs(2);
        let unreclaimable = |source| CreateError::Unreclaimable {
            name: name.into(),
            source,
        };
        loop {
            let old = match Segment::occupy(name) {
                Ok(Occupied::Gone) => return Ok(()),
                Ok(Occupied::Locked(old)) => old,
                // A producer holds it: alive (say so at once) or still
                // creating its ring (wait for its header).
                Ok(Occupied::Owned) if Segment::open_read_only(name).is_ok() => {
                    return Err(Self::in_use(name))
                }
                // Being created, or judged by another reclaimer: wait for
                // either to finish.
                Ok(Occupied::Owned | Occupied::Reclaiming) => {
                    if Instant::now() >= deadline {
                        return Err(Self::in_use(name));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(OpenError::PermissionDenied { mode, .. }) => {
                    return Err(CreateError::PermissionDenied {
                        name: name.into(),
                        mode,
                    })
                }
                Err(source) => return Err(unreclaimable(source)),
            };
            match old.ring() {
                Ok(seg) => {
                    let pid = seg.header().producer_pid.load(Ordering::Acquire);
                    // Holding the lock proves a producer that took it dead;
                    // where locks do not work, its pid decides.
                    if !old.locked() && liveness::producer_alive(&seg) {
                        return Err(CreateError::InUse {
                            name: name.into(),
                            pid,
                        });
                    }
                    tracing::warn!(
                        ring = name,
                        pid,
                        "reclaiming a ring left behind by a dead producer"
                    );
                }
                // Empty or blank, and nobody holds its lock: a creator that
                // died before writing its header, or another program's blank
                // file. Removed only once old, so that a file someone made
                // moments ago is never deleted under them.
                Err(e @ (OpenError::NotReady { .. } | OpenError::NotARing { .. }))
                    if old.is_blank() =>
                {
                    let age = old.age().unwrap_or_default();
                    if age < INIT_GRACE {
                        drop(old);
                        if Instant::now() >= deadline {
                            return Err(CreateError::Blank {
                                name: name.into(),
                                age_secs: age.as_secs_f64(),
                                grace_secs: INIT_GRACE.as_secs(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    tracing::warn!(
                        ring = name,
                        age_secs = age.as_secs(),
                        reason = %e,
                        "reclaiming an empty or blank file of the ring's name, unchanged for {} s: \
                         a producer that died before writing its header",
                        age.as_secs()
                    );
                }
                // Another program's file, another layout version, corrupt:
                // its producer cannot be judged, so it is left alone.
                Err(source) => return Err(unreclaimable(source)),
            }
            match old.remove() {
                Ok(true) => return Ok(()),
                // The name changed hands meanwhile (only a process outside
                // this protocol can do that): judge the new object.
                Ok(false) => continue,
                Err(source) => return Err(unreclaimable(source)),
            }
        }
    }

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
    /// or ad hoc with drops), with what it dropped.
    pub fn group_reports(&self) -> Vec<GroupReport> {
        let st = self.state.lock();
        st.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.state != GROUP_UNUSED || g.dropped > 0)
            .map(|(i, g)| GroupReport {
                name: String::from_utf8_lossy(g.name()).into_owned(),
                dropped: g.dropped,
                declared: g.state == GROUP_DECLARED,
                consumers: g.members.count_ones(),
                unconsumed: (0..st.ledger.slots())
                    .filter(|&s| st.ledger.holds(i, s))
                    .count() as u32,
                policy: g.policy,
                lingering: (g.state == GROUP_LINGERING).then(|| {
                    g.linger_until.map_or(Duration::MAX, |t| {
                        t.saturating_duration_since(Instant::now())
                    })
                }),
            })
            .collect()
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
    /// for consumers to take queued frames). The lock is not held while
    /// waiting.
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
        let mut deadline = None;
        loop {
            let (roster_seen, block, max_queued, waits_for) = {
                let mut st = self.state.lock();
                if let Some(claim) = st.try_loan(&self.seg)? {
                    return Ok(WriteSlot {
                        producer: self,
                        claim: Some(claim),
                    });
                }
                // Dead consumers are looked for at most every REAP_EVERY: it
                // reads /proc, far too slow for every failed attempt.
                if st.last_reap.elapsed() >= REAP_EVERY {
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
                )
            };
            // Read the clock only when there is something to wait for.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let now = Instant::now();
            if now >= deadline {
                return Err(LoanError::Timeout { waited: timeout });
            }
            let seg = &self.seg;
            let slice = PEER_CHECK.min(deadline - now);
            seg.header().free_event.wait_until(self.wait, slice, || {
                let changed = seg.header().roster.load(Ordering::Acquire) != roster_seen;
                let returned = (0..seg.geometry().max_consumers as usize)
                    .any(|c| !seg.return_queue(c).is_empty());
                // Consumers taking frames (they notify a waiting producer)
                // bring a lossless group back under max_queued. Only when
                // that is what we wait for: with no free slot, room in the
                // queues is no reason to try again (it would spin).
                let room = waits_for == WaitsFor::Room
                    && block != 0
                    && bits(block).all(|g| seg.group_queue(g).len() < max_queued);
                (changed || returned || room).then_some(())
            });
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
        if let Some(r) = st.reservation.take() {
            if let Err(e) = r.wait() {
                st.ledger.discard(claim, seg.slot_states());
                return Err(e);
            }
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
        let len = store_name(&m.name, meta.source);
        m.name_len.store(len as u32, Ordering::Relaxed);
        let now_ns = monotonic_ns();
        m.publish_ns.store(now_ns, Ordering::Relaxed);
        let capture_ns = match meta.capture_ns {
            0 => realtime_ns(),
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
            seg.groups()[g].delivered.fetch_add(1, Ordering::Relaxed);
        }
        h.published.store(seq + 1, Ordering::Release);
        h.ready_event.notify();
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
    /// the producer [drained](Self::drain).
    pub fn finish(&self) {
        let h = self.seg.header();
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
            let roster = {
                let mut st = self.state.lock();
                st.service_roster(seg)?;
                st.collect(seg)?;
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
                st.roster_seen
            };
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, PEER_CHECK, || {
                    let changed = seg.header().roster.load(Ordering::Acquire) != roster;
                    let returned = (0..seg.geometry().max_consumers as usize)
                        .any(|c| !seg.return_queue(c).is_empty());
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
