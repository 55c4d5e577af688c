//! The single writer of a ring: fills free slots and publishes them to every
//! subscribed consumer group.
//!
//! # Groups and slot lifetime
//!
//! Each group has its own ready queue and its own claim word per slot
//! ([`crate::slot`]); its consumers share its frames (work-sharing), and
//! every group receives every frame published while it is subscribed
//! (broadcast). The producer alone knows which groups still hold a slot: a
//! per-slot bit mask kept in its own memory (`pending`), set at publish and
//! cleared as each group's consumer hands the slot back through its return
//! queue. A slot returns to the free pool when its mask is empty. Keeping the
//! mask private means no shared reference count a dying process could leave
//! wrong.
//!
//! Groups are *declared* (named by the producer: subscribed from the start,
//! and kept when their consumers die, so nothing is lost — the lossless file
//! pipeline's `default` group) or *ad hoc* (created when a consumer asks to
//! join a name nobody declared; subscribed from the next published frame
//! until its last consumer leaves or dies, when it releases every slot it
//! held — a preview window must not hold the recorder back).
//!
//! Membership changes go through the producer: a consumer writes its group's
//! name into its table entry and asks to join (or says it is leaving); the
//! producer, which looks at the table whenever the header's roster counter
//! changed, admits it, and frees the entry after it left or died. Only one
//! process ever changes a group, so there is no join/leave race to argue.
//!
//! # Backpressure
//!
//! With [`Backpressure::Block`] the producer waits for a free slot (and,
//! when no group is subscribed, for one to appear): lossless. With
//! [`Backpressure::DropOldest`] a producer short of slots withdraws the
//! oldest published frame that no consumer has claimed yet (a CAS on each
//! group's claim word, racing the consumers' claim CAS, so a frame being read
//! is never taken away) and reuses its slot; it waits only when every slot is
//! being read.
//!
//! The free slots are a LIFO stack, so the slot filled next is the one most
//! recently handed back — still warm in the cache.

use crate::clock::monotonic_ns;
use crate::event::WaitStrategy;
use crate::layout::{
    Shape, BACKPRESSURE_BLOCK, BACKPRESSURE_DROP_OLDEST, FLAG_DRAINED, FLAG_END_OF_STREAM,
    FLAG_RUNNING, GROUP_ACTIVE, GROUP_DECLARED, GROUP_NAME_MAX, GROUP_UNUSED, JOIN_ACTIVE,
    JOIN_LEAVING, JOIN_NONE, JOIN_REFUSED, JOIN_REQUESTED,
};
use crate::pool::{
    group_queue, load_name, return_queue, ring_corrupt, store_name, unpack_return, valid_group_name,
    Backpressure, FrameMeta, PoolError, RingOptions,
};
use crate::process::ProcessId;
use crate::segment::{Segment, SegmentError};
use crate::slot::SlotState;
use crate::sync::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle waiter wakes to check its peers.
pub(crate) const PEER_CHECK: Duration = Duration::from_millis(100);
/// How often a busy producer looks for dead consumers.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// What the producer knows of one group.
#[derive(Debug, Clone, Copy)]
struct Group {
    state: u32,
    name: [u8; GROUP_NAME_MAX],
    name_len: usize,
    /// Consumer table entries in the group (bit per entry).
    members: u64,
    dropped: u64,
}

impl Group {
    const UNUSED: Group = Group {
        state: GROUP_UNUSED,
        name: [0; GROUP_NAME_MAX],
        name_len: 0,
        members: 0,
        dropped: 0,
    };

    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// Per-group figures for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Frames the group lost (dropped unconsumed, or released when its last
    /// consumer left).
    pub dropped: u64,
    /// Whether the producer declared it.
    pub declared: bool,
}

/// The single writer of a ring.
#[derive(Debug)]
pub struct Producer {
    seg: Arc<Segment>,
    /// The frames' memory still being reserved (until the first publish).
    reservation: Option<crate::segment::Reservation>,
    free: Vec<u32>,
    wait: WaitStrategy,
    policy: Backpressure,
    /// Block policy: the most frames a group may have queued, not taken.
    max_queued: u64,
    last_reap: Instant,
    /// CLOCK_MONOTONIC ns at which a busy producer next looks for dead
    /// consumers (compared with the publish timestamp it reads anyway).
    next_reap_ns: u64,
    redelivered: u64,
    dropped: u64,
    bad_returns: u64,
    /// Consumer entries whose return queue held garbage (bit per entry).
    quarantined: u64,
    /// Per slot: the groups that still hold it (bit per group).
    pending: Vec<u64>,
    /// Per slot: sequence number of the frame in it (drop-oldest order).
    slot_seq: Vec<u64>,
    /// Groups subscribed now (bit per group).
    active: u64,
    groups: Vec<Group>,
    /// Per consumer entry: the group it was admitted to.
    member_of: Vec<Option<u8>>,
    /// The header's roster counter when we last looked at the table.
    roster_seen: u32,
    /// The free event's count when we last collected returns.
    returns_seen: u32,
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
        // slot taken out of the producer's free pool (no group holds it), is
        // not Clone, and is consumed by `publish`/`discard`; so it is the
        // only handle to this slot, no consumer holds the slot, and
        // `&mut self` makes the returned slice unique.
        unsafe { self.seg.frame_mut(self.index) }
    }

    /// The frame's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: as in `data_mut`; `&self` rules out a live `&mut` slice.
        unsafe { self.seg.frame(self.index) }
    }
}

/// Bytes of queued frames the automatic `max_queued` allows: what stays in
/// the last-level cache of a small machine beside the frames being written
/// and read.
const QUEUED_BYTES: u64 = 8 << 20;

/// The default `max_queued`: 2 to 8 frames, fewer the larger they are.
fn auto_max_queued(frame_bytes: u64, slots: u32) -> u32 {
    ((QUEUED_BYTES / frame_bytes.max(1)).clamp(2, 8) as u32).min(slots)
}

fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            b
        })
    })
}

impl Producer {
    /// Creates the ring `name` and becomes its producer. A segment of that
    /// name left by a dead producer is reclaimed; one whose producer is alive
    /// is refused with [`PoolError::InUse`]. The groups named in
    /// `opts.groups` are declared.
    pub fn create(name: &str, shape: Shape, opts: &RingOptions) -> Result<Producer, PoolError> {
        if opts.groups.len() > shape.max_groups as usize {
            return Err(PoolError::GroupsFull {
                name: name.into(),
                group: opts.groups[shape.max_groups as usize].clone(),
                max: shape.max_groups,
            });
        }
        for g in &opts.groups {
            valid_group_name(g)?;
        }
        // The frames' memory is reserved in the background while the first
        // slots fill; `publish` waits for it before the first frame.
        let (seg, reservation) =
            match Segment::create_reserving_frames_later(name, shape, opts.mode) {
                Ok(created) => created,
                Err(SegmentError::Exists { .. }) => {
                    Self::reclaim_stale(name)?;
                    Segment::create_reserving_frames_later(name, shape, opts.mode)?
                }
                Err(e) => return Err(e.into()),
            };
        let mut groups = vec![Group::UNUSED; shape.max_groups as usize];
        let mut active = 0;
        for (g, gname) in opts.groups.iter().enumerate() {
            if groups[..g].iter().any(|x| x.name() == gname.as_bytes()) {
                continue;
            }
            let entry = &seg.groups()[g];
            let len = store_name(&entry.name, gname.as_bytes());
            groups[g].name[..len].copy_from_slice(&gname.as_bytes()[..len]);
            groups[g].name_len = len;
            groups[g].state = GROUP_DECLARED;
            entry.state.store(GROUP_DECLARED, Ordering::Relaxed);
            active |= 1 << g;
        }
        let me = ProcessId::current();
        let h = seg.header();
        h.backpressure.store(
            match opts.backpressure {
                Backpressure::Block => BACKPRESSURE_BLOCK,
                Backpressure::DropOldest => BACKPRESSURE_DROP_OLDEST,
            },
            Ordering::Relaxed,
        );
        h.producer_start_ticks
            .store(me.start_ticks, Ordering::Relaxed);
        // Release: the group table and the fields above are written before
        // a consumer can see a live producer.
        h.producer_pid.store(me.pid, Ordering::Release);
        h.flags.store(FLAG_RUNNING, Ordering::Release);
        let slots = shape.slots as usize;
        let seg_frame_bytes = seg.geometry().frame_bytes;
        Ok(Producer {
            seg: Arc::new(seg),
            reservation,
            free: (0..shape.slots).rev().collect(),
            wait: opts.wait,
            policy: opts.backpressure,
            max_queued: match opts.max_queued {
                0 => auto_max_queued(seg_frame_bytes, shape.slots),
                n => n.min(shape.slots),
            } as u64,
            last_reap: Instant::now(),
            next_reap_ns: 0,
            redelivered: 0,
            dropped: 0,
            bad_returns: 0,
            quarantined: 0,
            pending: vec![0; slots],
            slot_seq: vec![0; slots],
            active,
            groups,
            member_of: vec![None; shape.max_consumers as usize],
            roster_seen: 0,
            returns_seen: 0,
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
                // An older layout cannot be attached to, so it cannot be
                // checked for a live producer: refuse rather than clobber.
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

    /// Frames dropped (drop-oldest policy, or published with no group
    /// subscribed). A frame dropped by several groups counts once.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Slots currently in the producer's hands (free pool).
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Consumers admitted into a group now.
    pub fn consumers(&self) -> u32 {
        self.groups.iter().map(|g| g.members.count_ones()).sum()
    }

    /// Groups subscribed now.
    pub fn subscribed_groups(&self) -> u32 {
        self.active.count_ones()
    }

    /// Every group the ring has had (declared, or ad hoc and still active),
    /// with what it dropped.
    pub fn group_reports(&self) -> Vec<GroupReport> {
        self.groups
            .iter()
            .filter(|g| g.state != GROUP_UNUSED || g.dropped > 0)
            .map(|g| GroupReport {
                name: String::from_utf8_lossy(g.name()).into_owned(),
                dropped: g.dropped,
                declared: g.state == GROUP_DECLARED,
            })
            .collect()
    }

    /// Group `g` no longer holds slot `s`; frees the slot if no group does.
    fn release(&mut self, g: usize, s: usize) {
        self.pending[s] &= !(1 << g);
        if self.pending[s] == 0 {
            // We own the slot again; nobody else writes this word.
            self.seg.slot_states()[s].store(SlotState::Free.encode(), Ordering::Relaxed);
            self.free.push(s as u32);
        }
    }

    fn note_group_drop(&mut self, g: usize, n: u64) {
        self.groups[g].dropped += n;
        self.seg.groups()[g].dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn note_drop(&mut self) {
        self.dropped += 1;
        self.seg.header().dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Collects returned slots from every consumer's return queue.
    fn collect(&mut self) -> usize {
        let seg = self.seg.clone();
        let mut got = 0;
        for c in 0..seg.geometry().max_consumers as usize {
            if self.quarantined & (1 << c) != 0 {
                continue;
            }
            let q = return_queue(&seg, c);
            if q.is_empty() {
                continue;
            }
            let drained = q.drain(|v| {
                let (g, s) = unpack_return(v);
                let claim = (g < seg.geometry().max_groups as usize)
                    .then(|| seg.claims(g).get(s))
                    .flatten();
                match claim {
                    Some(w)
                        if matches!(
                            SlotState::decode(w.load(Ordering::Acquire)),
                            Some(SlotState::Reading { owner, .. }) if owner as usize == c
                        ) && self.pending[s] & (1 << g) != 0 =>
                    {
                        // The consumer's return is ours now; only we write
                        // this word until the slot is published again.
                        w.store(SlotState::Free.encode(), Ordering::Relaxed);
                        self.release(g, s);
                    }
                    _ => {
                        self.bad_returns += 1;
                        tracing::warn!(consumer = c, group = g, slot = s, "ignoring a bogus slot return");
                    }
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

    /// Admits consumers that asked to join a group and retires those that
    /// left, if the consumer table changed since the last look. One atomic
    /// load when nothing changed.
    fn service_roster(&mut self) -> Result<(), PoolError> {
        // Acquire: a consumer bumps the roster (Release) after writing its
        // request into its entry.
        let roster = self.seg.header().roster.load(Ordering::Acquire);
        if roster == self.roster_seen {
            return Ok(());
        }
        self.roster_seen = roster;
        let seg = self.seg.clone();
        let mut admitted = false;
        for (c, entry) in seg.consumers().iter().enumerate() {
            if entry.owner.load(Ordering::Acquire) == 0 {
                continue;
            }
            match entry.join.load(Ordering::Acquire) {
                JOIN_REQUESTED => {
                    self.admit(c)?;
                    admitted = true;
                }
                JOIN_LEAVING => {
                    self.retire(c, false)?;
                }
                _ => {}
            }
        }
        if admitted {
            seg.header().ready_event.notify();
        }
        Ok(())
    }

    fn admit(&mut self, c: usize) -> Result<(), PoolError> {
        let seg = self.seg.clone();
        let entry = &seg.consumers()[c];
        let (name, len) = load_name(&entry.group_name);
        let name = &name[..len];
        let refuse = |why: &str| {
            tracing::warn!(consumer = c, group = %String::from_utf8_lossy(name), "refusing a consumer: {why}");
            // Release: pairs with the consumer's Acquire load of `join`.
            entry.join.store(JOIN_REFUSED, Ordering::Release);
        };
        if std::str::from_utf8(name).map_or(true, |n| valid_group_name(n).is_err()) {
            refuse("invalid group name");
            return Ok(());
        }
        if let Some(old) = self.member_of[c] {
            // Asked again (cannot happen with our consumers): leave first.
            self.leave_group(c, old as usize, false)?;
        }
        let g = match self
            .groups
            .iter()
            .position(|g| g.state != GROUP_UNUSED && g.name() == name)
        {
            Some(g) => g,
            None => match self.groups.iter().position(|g| g.state == GROUP_UNUSED) {
                Some(g) => {
                    // A new ad-hoc group: subscribed from the next frame.
                    let grp = &mut self.groups[g];
                    grp.state = GROUP_ACTIVE;
                    grp.name[..len].copy_from_slice(name);
                    grp.name_len = len;
                    grp.dropped = 0;
                    let e = &seg.groups()[g];
                    group_queue(&seg, g).clear();
                    store_name(&e.name, name);
                    e.since_seq.store(self.published(), Ordering::Relaxed);
                    e.dropped.store(0, Ordering::Relaxed);
                    e.delivered.store(0, Ordering::Relaxed);
                    e.state.store(GROUP_ACTIVE, Ordering::Release);
                    self.active |= 1 << g;
                    tracing::info!(group = %String::from_utf8_lossy(name), "group joined");
                    g
                }
                None => {
                    refuse("the group table is full (ring.max_groups)");
                    return Ok(());
                }
            },
        };
        self.groups[g].members |= 1 << c;
        self.member_of[c] = Some(g as u8);
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        entry.group.store(g as u32, Ordering::Relaxed);
        // Release: the group's queue reset and `group` happen before the
        // consumer, acquiring `join`, starts taking from it.
        entry.join.store(JOIN_ACTIVE, Ordering::Release);
        Ok(())
    }

    /// Removes consumer `c` from group `g`. If it `died`, its unreturned
    /// frames are published to the group again, or released if the group
    /// goes away with it.
    fn leave_group(&mut self, c: usize, g: usize, died: bool) -> Result<u64, PoolError> {
        let seg = self.seg.clone();
        self.groups[g].members &= !(1 << c);
        self.member_of[c] = None;
        let stays = self.groups[g].members != 0 || self.groups[g].state == GROUP_DECLARED;
        let mut redelivered = 0;
        if stays {
            for (s, claim) in seg.claims(g).iter().enumerate() {
                if self.pending[s] & (1 << g) != 0
                    && matches!(SlotState::decode(claim.load(Ordering::Acquire)),
                        Some(SlotState::Reading { owner, .. }) if owner as usize == c)
                {
                    seg.slot_meta()[s].redeliveries.fetch_add(1, Ordering::Relaxed);
                    self.push_to_group(g, s as u32)?;
                    redelivered += 1;
                }
            }
            if redelivered > 0 {
                seg.header().ready_event.notify();
            }
        } else {
            // Its last consumer is gone: the group stops holding slots.
            let q = group_queue(&seg, g);
            let mut released = 0;
            for (s, claim) in seg.claims(g).iter().enumerate() {
                if self.pending[s] & (1 << g) == 0 {
                    continue;
                }
                // No consumer of the group is left to claim or return it.
                claim.store(SlotState::Free.encode(), Ordering::Relaxed);
                released += 1;
                self.release(g, s);
            }
            q.clear();
            self.note_group_drop(g, released);
            self.active &= !(1 << g);
            self.groups[g].state = GROUP_UNUSED;
            let e = &seg.groups()[g];
            e.state.store(GROUP_UNUSED, Ordering::Release);
            tracing::info!(
                group = %String::from_utf8_lossy(self.groups[g].name()),
                released,
                "group left (its last consumer {})",
                if died { "died" } else { "detached" }
            );
        }
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        if died && redelivered > 0 {
            tracing::warn!(consumer = c, frames = redelivered, "consumer died; its frames were published again");
        }
        Ok(redelivered)
    }

    /// Frees consumer entry `c` after it left or died.
    fn retire(&mut self, c: usize, died: bool) -> Result<u64, PoolError> {
        // Whatever it handed back first.
        self.collect();
        let seg = self.seg.clone();
        let entry = &seg.consumers()[c];
        let n = match self.member_of[c] {
            Some(g) => self.leave_group(c, g as usize, died)?,
            None => 0,
        };
        if self.quarantined & (1 << c) != 0 {
            // Give the next owner of the entry a clean return queue.
            entry.ret.tail.store(0, Ordering::Relaxed);
            entry.ret.head.store(0, Ordering::Relaxed);
            self.quarantined &= !(1 << c);
        }
        entry.join.store(JOIN_NONE, Ordering::Relaxed);
        entry.group.store(0, Ordering::Relaxed);
        // Release: our slot-word and queue updates happen before the entry
        // is reused.
        entry.owner.store(0, Ordering::Release);
        if died {
            tracing::warn!(consumer = c, "consumer died");
        }
        self.redelivered += n;
        seg.header().redelivered.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Admits consumers waiting to join, frees the entries of those that
    /// left, and recovers from those that died. `acquire`, `publish` and
    /// `drain` do this as they go; call it when the producer is idle.
    pub fn service(&mut self) -> Result<(), PoolError> {
        self.service_roster()?;
        self.reap_dead_consumers()?;
        Ok(())
    }

    /// Re-publishes the frames of consumers that died, and frees their table
    /// entries. Returns the number of frames re-published.
    pub fn reap_dead_consumers(&mut self) -> Result<u64, PoolError> {
        self.last_reap = Instant::now();
        self.service_roster()?;
        let seg = self.seg.clone();
        let mut total = 0;
        for (c, entry) in seg.consumers().iter().enumerate() {
            let owner = entry.owner.load(Ordering::Acquire);
            if owner == 0 || ProcessId::owner_word_alive(owner) {
                continue;
            }
            total += self.retire(c, true)?;
        }
        Ok(total)
    }

    /// Publishes slot `s` in group `g`'s queue, first making room under the
    /// drop-oldest policy.
    fn push_to_group(&mut self, g: usize, s: u32) -> Result<(), PoolError> {
        if self.policy == Backpressure::DropOldest {
            // Withdrawn frames leave stale cells until a consumer passes them;
            // a group that takes nothing would fill its queue with them.
            loop {
                let q = group_queue(&self.seg, g);
                if q.len() + 2 <= q.capacity() {
                    break;
                }
                let evicted = q.evict_head().map_err(|e| ring_corrupt(&self.seg, e))?;
                if let Some(victim) = evicted.map(|v| v as usize) {
                    if self.pending[victim] & (1 << g) != 0 {
                        self.note_group_drop(g, 1);
                        self.release(g, victim);
                    }
                }
            }
        }
        group_queue(&self.seg, g)
            .push(s)
            .map_err(|e| ring_corrupt(&self.seg, e))?;
        Ok(())
    }

    /// Whether some subscribed group already has `max_queued` frames
    /// waiting (block policy: publish no further ahead of the consumers).
    fn too_far_ahead(&self) -> bool {
        bits(self.active).any(|g| group_queue(&self.seg, g).len() >= self.max_queued)
    }

    /// Drop-oldest: withdraws the oldest published frame no consumer has
    /// claimed and returns its slot to the free pool. `false` when every
    /// published slot is being read.
    fn drop_oldest(&mut self) -> Result<bool, PoolError> {
        let seg = self.seg.clone();
        loop {
            // The oldest slot whose every holding group has it unclaimed.
            let mut best: Option<usize> = None;
            for s in 0..self.pending.len() {
                let mask = self.pending[s];
                if mask == 0 || best.is_some_and(|b| self.slot_seq[b] <= self.slot_seq[s]) {
                    continue;
                }
                let unclaimed = bits(mask).all(|g| {
                    matches!(
                        SlotState::decode(seg.claims(g)[s].load(Ordering::Acquire)),
                        Some(SlotState::Ready { .. })
                    )
                });
                if unclaimed {
                    best = Some(s);
                }
            }
            let Some(s) = best else { return Ok(false) };
            for g in bits(self.pending[s]) {
                if group_queue(&seg, g)
                    .revoke(s as u32)
                    .map_err(|e| ring_corrupt(&seg, e))?
                {
                    self.note_group_drop(g, 1);
                    self.release(g, s);
                }
            }
            if self.pending[s] == 0 {
                self.note_drop();
                return Ok(true);
            }
            // A consumer claimed it meanwhile; the scan now skips it.
        }
    }

    /// Takes a free slot to fill, waiting up to `timeout` for consumers to
    /// return one (and, with the block policy, for a group to subscribe).
    /// `Ok(None)` on timeout.
    pub fn acquire(&mut self, timeout: Duration) -> Result<Option<WriteSlot>, PoolError> {
        self.service_roster()?;
        // Collect returned slots as soon as there are any (consumers notify
        // the free event after every return: one load tells), not only when
        // the pool runs dry: the LIFO pool then hands out the slot returned
        // last, still in cache, instead of one untouched for a whole lap of
        // a deep ring.
        let returns = self.seg.header().free_event.seq();
        if returns != self.returns_seen || self.free.is_empty() {
            self.returns_seen = returns;
            self.collect();
        }
        let drop_mode = self.policy == Backpressure::DropOldest;
        if self.free.is_empty() && drop_mode {
            self.drop_oldest()?;
        }
        let mut deadline = None;
        while self.free.is_empty() || (!drop_mode && (self.active == 0 || self.too_far_ahead())) {
            // Read the clock only when there is something to wait for.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
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
            let roster = self.roster_seen;
            let max_queued = self.max_queued;
            let active = self.active;
            seg.header().free_event.wait_until(self.wait, slice, || {
                let changed = seg.header().roster.load(Ordering::Acquire) != roster;
                // Consumers taking frames (they notify a waiting producer)
                // bring a group back under max_queued.
                let room = bits(active).all(|g| group_queue(&seg, g).len() < max_queued);
                (self.collect() > 0 || changed || room).then_some(())
            });
            self.service_roster()?;
            if self.free.is_empty() && drop_mode {
                self.drop_oldest()?;
            }
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

    /// Publishes a filled slot to every subscribed group; returns its
    /// sequence number. With no group subscribed (drop-oldest policy only:
    /// the block policy waited for one in `acquire`) the frame is dropped.
    pub fn publish(&mut self, slot: WriteSlot, meta: &FrameMeta<'_>) -> Result<u64, PoolError> {
        if let Some(r) = self.reservation.take() {
            r.wait()?;
        }
        // The slot's own handle on the segment: no reference-count traffic
        // on this per-frame path.
        let s = slot.index as usize;
        let (seq, now_ns) = {
            let seg = &*slot.seg;
            // Only the producer writes `published`.
            let seq = seg.header().published.load(Ordering::Relaxed);
            let m = &seg.slot_meta()[s];
            // Relaxed: published by the Release store of the claim words in `push`.
            m.seq.store(seq, Ordering::Relaxed);
            m.src_width.store(meta.src_width, Ordering::Relaxed);
            m.src_height.store(meta.src_height, Ordering::Relaxed);
            m.redeliveries.store(0, Ordering::Relaxed);
            let len = store_name(&m.name, meta.name);
            m.name_len.store(len as u32, Ordering::Relaxed);
            let now_ns = monotonic_ns();
            m.publish_ns.store(now_ns, Ordering::Relaxed);
            (seq, now_ns)
        };
        self.slot_seq[s] = seq;
        let active = self.active;
        if active == 0 {
            self.note_drop();
            self.discard(slot);
        } else {
            slot.seg.slot_states()[s]
                .store(SlotState::Ready { pos: seq }.encode(), Ordering::Relaxed);
            self.pending[s] = active;
            for g in bits(active) {
                self.push_to_group(g, slot.index)?;
                slot.seg.groups()[g].delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let h = self.seg.header();
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

    /// Waits up to `timeout` until at least `n` groups are subscribed (for
    /// a run that must not start before its consumers). Returns whether they
    /// are.
    pub fn wait_for_groups(&mut self, n: u32, timeout: Duration) -> Result<bool, PoolError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.service_roster()?;
            if self.active.count_ones() >= n {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.reap_dead_consumers()?;
            let seg = self.seg.clone();
            let roster = self.roster_seen;
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, Duration::from_millis(20), || {
                    (seg.header().roster.load(Ordering::Acquire) != roster).then_some(())
                });
        }
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
            self.service_roster()?;
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
            let roster = self.roster_seen;
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, PEER_CHECK, || {
                    let changed = seg.header().roster.load(Ordering::Acquire) != roster;
                    (changed || !seg.consumers().iter().all(|c| c.ret.is_empty())).then_some(())
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

    #[cfg(test)]
    pub(crate) fn quarantined(&self) -> u64 {
        self.quarantined
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.seg.header();
        h.flags.fetch_and(!FLAG_RUNNING, Ordering::Release);
        h.ready_event.notify();
    }
}
