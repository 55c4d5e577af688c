//! The producer's group engine: its bookkeeping of groups and consumers
//! ([`State`], behind the producer's lock), the loan from the free pool,
//! collecting returns, admitting and retiring consumers (the roster
//! handshake), reaping dead ones, lingering groups, and drop-oldest.

use crate::error::{Corrupt, RingCorrupt};
use crate::options::{validate_group_name, Backpressure};
use crate::platform::clock::{monotonic_ns, WallClock};
use crate::platform::liveness;
use crate::platform::segment::{Reservation, Segment};
use crate::protocol::layout::{
    BACKPRESSURE_BLOCK, BACKPRESSURE_DROP_OLDEST, FLAG_END_OF_STREAM, GROUP_ACTIVE, GROUP_DECLARED,
    GROUP_LINGERING, GROUP_NAME_MAX, GROUP_UNUSED, MAX_CONSUMERS, POLICY_RING,
};
use crate::protocol::ledger::{Ledger, WriteClaim};
use crate::protocol::roster::{self, load_name, store_name, Request};
use crate::protocol::slot::SlotState;
use crate::protocol::sync::Ordering;
use std::time::{Duration, Instant};

/// How often a busy producer looks for dead consumers.
pub(super) const REAP_EVERY: Duration = Duration::from_millis(200);

/// Why the producer cannot loan a slot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitsFor {
    /// Every slot is held.
    Slot,
    /// A lossless ring with no group subscribed.
    Subscriber,
    /// A lossless group has `max_queued` frames waiting.
    Room,
}

/// How a consumer left its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// Handed back every frame it took, consumed.
    Left,
    /// Left after handing frames back unconsumed (its output failed): its
    /// group lingers as if it had died.
    Failed,
    /// Died; the frames it held are published to its group again.
    Died,
}

/// What the producer knows of one group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    pub(super) state: u32,
    pub(super) name: [u8; GROUP_NAME_MAX],
    pub(super) name_len: usize,
    /// Consumer table entries in the group (bit per entry).
    pub(super) members: u64,
    pub(super) dropped: u64,
    pub(super) policy: Backpressure,
    /// [`GROUP_LINGERING`]: when it is released.
    pub(super) linger_until: Option<Instant>,
    /// The group queue's head as the producer last read it, a lower bound
    /// of the real one ([`QueueCtrl::tail_if_below`]): the producer reads
    /// the head, which consumers write on every take, only when this bound
    /// says the queue is too long.
    ///
    /// [`QueueCtrl::tail_if_below`]: crate::protocol::queue_ctrl::QueueCtrl::tail_if_below
    pub(super) head_seen: u64,
}

impl Group {
    pub(super) const UNUSED: Group = Group {
        state: GROUP_UNUSED,
        name: [0; GROUP_NAME_MAX],
        name_len: 0,
        members: 0,
        dropped: 0,
        policy: Backpressure::Block,
        linger_until: None,
        head_seen: 0,
    };

    pub(super) fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// The producer's bookkeeping, behind its lock.
#[derive(Debug)]
pub(super) struct State {
    /// The frames' memory, reserved from the first publish on (its outcome
    /// collected by a publish once it ended).
    pub(super) reservation: Option<Reservation>,
    pub(super) ledger: Ledger,
    pub(super) policy: Backpressure,
    /// Block policy: the most frames a group may have queued, not taken.
    pub(super) max_queued: u64,
    pub(super) last_reap: Instant,
    /// CLOCK_MONOTONIC ns at which a busy producer next looks for dead
    /// consumers (compared with the publish timestamp it reads anyway).
    pub(super) next_reap_ns: u64,
    /// Frames' capture times (CLOCK_REALTIME) from their publish stamps.
    pub(super) wall_clock: WallClock,
    pub(super) redelivered: u64,
    pub(super) dropped: u64,
    /// Groups subscribed now (bit per group).
    pub(super) active: u64,
    /// Subscribed groups with the drop-oldest policy (a subset of `active`).
    pub(super) live: u64,
    /// Why the last `try_loan` found nothing.
    pub(super) waits_for: WaitsFor,
    /// How long an ad-hoc group whose last consumer died lingers.
    pub(super) linger: Duration,
    pub(super) groups: Vec<Group>,
    /// Per consumer entry: the group it was admitted to.
    pub(super) member_of: Vec<Option<u8>>,
    /// Per consumer entry: its return queue's head, the producer's own copy
    /// (the shared one is only written, for the consumer's full check).
    pub(super) ret_heads: Vec<u64>,
    /// The header's roster counter when we last looked at the table.
    pub(super) roster_seen: u32,
}

/// Bytes of queued frames the automatic `max_queued` allows: what stays in
/// the last-level cache of a small machine beside the frames being written
/// and read.
pub(super) const QUEUED_BYTES: u64 = 8 << 20;

/// The default `max_queued`: 2 to 8 frames, fewer the larger they are.
/// A policy as the segment records it.
pub(super) fn policy_word(policy: Backpressure) -> u32 {
    match policy {
        Backpressure::Block => BACKPRESSURE_BLOCK,
        Backpressure::DropOldest => BACKPRESSURE_DROP_OLDEST,
    }
}

pub(super) fn auto_max_queued(frame_bytes: u64, slots: u32) -> u32 {
    ((QUEUED_BYTES / frame_bytes.max(1)).clamp(2, 8) as u32).min(slots)
}

pub(super) fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            b
        })
    })
}

impl State {
    pub(super) fn note_group_drop(&mut self, seg: &Segment, g: usize, n: u64) {
        self.groups[g].dropped += n;
        seg.groups()[g].dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn note_drop(&mut self, seg: &Segment) {
        self.dropped += 1;
        seg.header().dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A free slot now, if the policy lets the producer publish one more
    /// frame; `None` if it must wait.
    pub(super) fn try_loan(&mut self, seg: &Segment) -> Result<Option<WriteClaim>, RingCorrupt> {
        self.service_roster(seg)?;
        // Collect returned slots as soon as there are any, not only when
        // the pool runs dry: the pool then has the slots to choose from that
        // `SlotReuse` asks for (by default the slot returned last, still in
        // cache, instead of one untouched for a whole lap of a deep ring).
        // Looking costs a load of the cell at each admitted consumer's
        // return queue head, lines that stay in our cache until
        // their consumer returns something (a shared counter bumped on every
        // return, as an earlier version had, cost two cache-line transfers
        // per frame).
        self.collect_from(seg, self.admitted())?;
        // A lossless ring starts when its first group subscribes.
        if self.active == 0 && self.policy == Backpressure::Block {
            self.waits_for = WaitsFor::Subscriber;
            return Ok(None);
        }
        if self.too_far_ahead(seg) {
            self.waits_for = WaitsFor::Room;
            return Ok(None);
        }
        // Only now, when a slot is all it lacks, withdraw a live frame.
        if self.ledger.free_len() == 0 && self.live != 0 {
            self.drop_oldest(seg)
                .map_err(|c| RingCorrupt::new(seg.name(), c))?;
        }
        if self.ledger.free_len() == 0 {
            self.waits_for = WaitsFor::Slot;
            return Ok(None);
        }
        Ok(self.ledger.loan(seg.slot_states()))
    }

    /// Consumer entries admitted into a group now (bit per entry): the only
    /// ones that can hand frames back. An entry is collected from once more
    /// before it leaves its group ([`retire`](Self::retire)).
    pub(super) fn admitted(&self) -> u64 {
        self.groups.iter().fold(0, |m, g| m | g.members)
    }

    /// A copy of the heads of the return queues as this producer keeps
    /// them, for a wait outside the lock to look past (consumers are at
    /// most 64; the entries beyond `max_consumers` stay 0, unused).
    pub(super) fn return_heads(&self) -> [u64; MAX_CONSUMERS as usize] {
        let mut heads = [0; MAX_CONSUMERS as usize];
        heads[..self.ret_heads.len()].copy_from_slice(&self.ret_heads);
        heads
    }

    /// Collects returned slots from every consumer's return queue, and
    /// publishes the frames handed back unconsumed to their group again.
    /// Also looks at the queues of entries that hold no frames (a return
    /// queue cell that cannot be is corruption wherever it is).
    pub(super) fn collect(&mut self, seg: &Segment) -> Result<usize, RingCorrupt> {
        self.collect_from(seg, u64::MAX)
    }

    /// [`collect`](Self::collect) from the entries in `mask` (bit per
    /// entry): every loan looks at the admitted consumers' queues only.
    pub(super) fn collect_from(&mut self, seg: &Segment, mask: u64) -> Result<usize, RingCorrupt> {
        let mut got = 0;
        let max_groups = seg.geometry().max_groups as usize;
        let mut again = Vec::new();
        // Called for every loan: the emptiness check reads the cell at our
        // own copy of the queue's head (a line that stays in our cache while
        // its consumer returns nothing). Only positions we keep are read:
        // what anyone writes into the shared head does not move them.
        for (c, head) in self.ret_heads.iter_mut().enumerate() {
            if mask & (1 << c) == 0 {
                continue;
            }
            let q = seg.return_queue(c);
            if q.is_empty_at(*head) {
                continue;
            }
            let claims = |g: usize| (g < max_groups).then(|| seg.claims(g));
            match self
                .ledger
                .collect(c, q, head, claims, seg.slot_states(), &mut again)
            {
                Ok(n) => got += n,
                Err(e) => {
                    // Its returns cannot be told from garbage any more: the
                    // ring cannot go on.
                    tracing::error!(
                        ring = seg.name(),
                        consumer = c,
                        error = e.0,
                        "a consumer's return queue is corrupt"
                    );
                    return Err(RingCorrupt::new(seg.name(), e));
                }
            }
        }
        if !again.is_empty() {
            self.give_again(seg, &again);
        }
        Ok(got)
    }

    /// Publishes frames handed back unconsumed to their group again (the
    /// ledger checked that the group holds each and that the consumer that
    /// gave it back was reading it), counted as redelivered like those of a
    /// consumer that died.
    pub(super) fn give_again(&mut self, seg: &Segment, again: &[(usize, usize)]) {
        for &(g, s) in again {
            // Relaxed: published by the Release store of the claim word in
            // `push`, as at publish.
            seg.slot_meta()[s]
                .redeliveries
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.push_to_group(seg, g, s as u32) {
                // Only garbage in the segment gets here: the group loses the
                // frame rather than holding its slot forever.
                tracing::error!(
                    group = g,
                    slot = s,
                    error = e.0,
                    "could not publish a frame handed back unconsumed"
                );
                seg.claims(g)[s].store(SlotState::Free.encode(), Ordering::Relaxed);
                self.note_group_drop(seg, g, 1);
                self.ledger.release(g, s, seg.slot_states());
                continue;
            }
            self.redelivered += 1;
            seg.header().redelivered.fetch_add(1, Ordering::Relaxed);
        }
        seg.header().ready_event.notify();
    }

    /// Admits consumers that asked to join a group and retires those that
    /// left, if the consumer table changed since the last look. One atomic
    /// load when nothing changed.
    pub(super) fn service_roster(&mut self, seg: &Segment) -> Result<(), RingCorrupt> {
        if !roster::changed(&seg.header().roster, &mut self.roster_seen) {
            return Ok(());
        }
        let mut admitted = false;
        for (c, entry) in seg.consumers().iter().enumerate() {
            match roster::request(entry) {
                Request::Join => {
                    self.admit(seg, c)?;
                    admitted = true;
                }
                Request::Leave { failed } => {
                    let how = if failed {
                        Departure::Failed
                    } else {
                        Departure::Left
                    };
                    self.retire(seg, c, how)?;
                }
                Request::Nothing => {}
            }
        }
        if admitted {
            seg.header().ready_event.notify();
        }
        Ok(())
    }

    pub(super) fn admit(&mut self, seg: &Segment, c: usize) -> Result<(), RingCorrupt> {
        let entry = &seg.consumers()[c];
        let (name, len) = load_name(&entry.group_name);
        let name = &name[..len];
        let refuse = |why: &str| {
            tracing::warn!(consumer = c, group = %String::from_utf8_lossy(name), "refusing a consumer: {why}");
            roster::refuse(entry);
        };
        if std::str::from_utf8(name).map_or(true, |n| validate_group_name(n).is_err()) {
            refuse("invalid group name");
            return Ok(());
        }
        if let Some(old) = self.member_of[c] {
            // Asked again (cannot happen with our consumers): leave first.
            self.leave_group(seg, c, old as usize, Departure::Left)?;
        }
        // The policy it asks for, should it create the group (untrusted).
        let policy = match entry.policy.load(Ordering::Relaxed) {
            POLICY_RING => self.policy,
            p if p == BACKPRESSURE_BLOCK + 1 => Backpressure::Block,
            p if p == BACKPRESSURE_DROP_OLDEST + 1 => Backpressure::DropOldest,
            _ => {
                refuse("invalid backpressure request");
                return Ok(());
            }
        };
        let g = match self
            .groups
            .iter()
            .position(|g| g.state != GROUP_UNUSED && g.name() == name)
        {
            Some(g) => {
                if self.groups[g].state == GROUP_LINGERING {
                    // A consumer came back in time: it gets the frames kept.
                    self.groups[g].state = GROUP_ACTIVE;
                    self.groups[g].linger_until = None;
                    let e = &seg.groups()[g];
                    e.linger_until_ns.store(0, Ordering::Relaxed);
                    e.state.store(GROUP_ACTIVE, Ordering::Release);
                    tracing::info!(group = %String::from_utf8_lossy(name), "group rejoined in time: its frames were kept");
                }
                g
            }
            None => match self.groups.iter().position(|g| g.state == GROUP_UNUSED) {
                Some(g) => {
                    // A new ad-hoc group: subscribed from the next frame.
                    let grp = &mut self.groups[g];
                    grp.state = GROUP_ACTIVE;
                    grp.name[..len].copy_from_slice(name);
                    grp.name_len = len;
                    grp.dropped = 0;
                    grp.policy = policy;
                    grp.linger_until = None;
                    let e = &seg.groups()[g];
                    seg.group_queue(g).clear();
                    store_name(&e.name, name);
                    e.since_seq.store(
                        seg.header().published.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    e.dropped.store(0, Ordering::Relaxed);
                    e.delivered.store(0, Ordering::Relaxed);
                    e.drained.store(0, Ordering::Relaxed);
                    e.policy.store(policy_word(policy), Ordering::Relaxed);
                    e.linger_until_ns.store(0, Ordering::Relaxed);
                    e.state.store(GROUP_ACTIVE, Ordering::Release);
                    self.active |= 1 << g;
                    if policy == Backpressure::DropOldest {
                        self.live |= 1 << g;
                    }
                    tracing::info!(group = %String::from_utf8_lossy(name), live = policy == Backpressure::DropOldest, "group joined");
                    g
                }
                None => {
                    refuse("the group table is full (max_groups)");
                    return Ok(());
                }
            },
        };
        self.groups[g].members |= 1 << c;
        self.member_of[c] = Some(g as u8);
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        roster::admit(entry, g as u8);
        Ok(())
    }

    /// After end of stream: marks each group in use that holds no frame any
    /// more (every frame published into it came back and was collected) as
    /// drained, and wakes its consumers: their `take` ends the stream
    /// without waiting for the other groups.
    pub(super) fn mark_drained_groups(&mut self, seg: &Segment) {
        // Relaxed: only this producer sets the flag, under its lock.
        if seg.header().flags.load(Ordering::Relaxed) & FLAG_END_OF_STREAM == 0 {
            return;
        }
        let slots = self.ledger.slots();
        let mut woke = false;
        for (g, grp) in self.groups.iter().enumerate() {
            let e = &seg.groups()[g];
            if grp.state == GROUP_UNUSED
                || e.drained.load(Ordering::Relaxed) == 1
                || (0..slots).any(|s| self.ledger.holds(g, s))
            {
                continue;
            }
            // Release: the group's last returns were collected, and after
            // `finish` nothing is published into it again, so a consumer
            // that acquires the flag and finds its queue empty is done.
            e.drained.store(1, Ordering::Release);
            woke = true;
        }
        if woke {
            seg.header().ready_event.notify();
        }
    }

    /// Removes consumer `c` from group `g`. Its unreturned frames are
    /// published to the group again, or released if the group goes away with
    /// it.
    pub(super) fn leave_group(
        &mut self,
        seg: &Segment,
        c: usize,
        g: usize,
        how: Departure,
    ) -> Result<u64, RingCorrupt> {
        let died = how == Departure::Died;
        self.groups[g].members &= !(1 << c);
        self.member_of[c] = None;
        let last = self.groups[g].members == 0;
        if last
            && how != Departure::Left
            && self.groups[g].state == GROUP_ACTIVE
            && !self.linger.is_zero()
        {
            // Keep its frames for a consumer that restarts.
            // None (an absurd period): it never expires.
            let until = Instant::now().checked_add(self.linger);
            self.groups[g].state = GROUP_LINGERING;
            self.groups[g].linger_until = until;
            let e = &seg.groups()[g];
            let linger_ns = u64::try_from(self.linger.as_nanos()).unwrap_or(u64::MAX);
            e.linger_until_ns
                .store(monotonic_ns().saturating_add(linger_ns), Ordering::Relaxed);
            e.state.store(GROUP_LINGERING, Ordering::Release);
            tracing::warn!(
                group = %String::from_utf8_lossy(self.groups[g].name()),
                "the group's last consumer {}: its frames are kept for {:?} for a consumer that restarts",
                if died { "died" } else { "failed" },
                self.linger
            );
        }
        let stays = !last || matches!(self.groups[g].state, GROUP_DECLARED | GROUP_LINGERING);
        let mut redelivered = 0;
        if stays {
            let claims = seg.claims(g);
            for s in 0..self.ledger.slots() {
                if !self.ledger.read_by(c, g, s, claims) {
                    continue;
                }
                seg.slot_meta()[s]
                    .redeliveries
                    .fetch_add(1, Ordering::Relaxed);
                self.push_to_group(seg, g, s as u32)
                    .map_err(|e| RingCorrupt::new(seg.name(), e))?;
                redelivered += 1;
            }
            if redelivered > 0 {
                seg.header().ready_event.notify();
            }
        } else {
            let released = self.release_group(seg, g);
            tracing::info!(
                group = %String::from_utf8_lossy(self.groups[g].name()),
                released,
                "group left (its last consumer {})",
                match how {
                    Departure::Died => "died",
                    Departure::Failed => "failed",
                    Departure::Left => "detached",
                }
            );
        }
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        if died && redelivered > 0 {
            tracing::warn!(
                consumer = c,
                frames = redelivered,
                "consumer died; its frames were published again"
            );
        }
        Ok(redelivered)
    }

    /// Ad-hoc group `g` has no consumer left: it stops holding slots and
    /// its entry is freed. Returns the frames it released unconsumed.
    pub(super) fn release_group(&mut self, seg: &Segment, g: usize) -> u64 {
        let mut released = 0;
        for (s, claim) in seg.claims(g).iter().enumerate() {
            if !self.ledger.holds(g, s) {
                continue;
            }
            // No consumer of the group is left to claim or return it.
            claim.store(SlotState::Free.encode(), Ordering::Relaxed);
            released += 1;
            self.ledger.release(g, s, seg.slot_states());
        }
        seg.group_queue(g).clear();
        self.note_group_drop(seg, g, released);
        self.active &= !(1 << g);
        self.live &= !(1 << g);
        self.groups[g].state = GROUP_UNUSED;
        self.groups[g].linger_until = None;
        let e = &seg.groups()[g];
        e.linger_until_ns.store(0, Ordering::Relaxed);
        e.state.store(GROUP_UNUSED, Ordering::Release);
        released
    }

    /// Releases the lingering groups whose period is over.
    pub(super) fn expire_lingering(&mut self, seg: &Segment) {
        let now = Instant::now();
        for g in 0..self.groups.len() {
            if self.groups[g].state == GROUP_LINGERING
                && self.groups[g].linger_until.is_some_and(|t| now >= t)
            {
                let released = self.release_group(seg, g);
                tracing::warn!(
                    group = %String::from_utf8_lossy(self.groups[g].name()),
                    released,
                    "no consumer came back to the group in time: its frames were released"
                );
            }
        }
    }

    /// Frees consumer entry `c` after it left or died.
    pub(super) fn retire(
        &mut self,
        seg: &Segment,
        c: usize,
        how: Departure,
    ) -> Result<u64, RingCorrupt> {
        let died = how == Departure::Died;
        // Whatever it handed back first.
        self.collect(seg)?;
        let entry = &seg.consumers()[c];
        let n = match self.member_of[c] {
            Some(g) => self.leave_group(seg, c, g as usize, how)?,
            None => 0,
        };
        roster::free_entry(entry);
        if died {
            tracing::warn!(consumer = c, "consumer died");
        }
        self.redelivered += n;
        seg.header().redelivered.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Re-publishes the frames of consumers that died, and frees their table
    /// entries. Returns the number of frames re-published.
    pub(super) fn reap_dead_consumers(&mut self, seg: &Segment) -> Result<u64, RingCorrupt> {
        self.last_reap = Instant::now();
        self.service_roster(seg)?;
        self.expire_lingering(seg);
        let mut total = 0;
        for (c, entry) in seg.consumers().iter().enumerate() {
            let owner = entry.owner.load(Ordering::Acquire);
            if owner == 0 || liveness::consumer_alive(seg, c, owner) {
                continue;
            }
            // Gone: it left (it says so before its lock goes with its exit)
            // or it died.
            let how = match roster::request(entry) {
                Request::Leave { failed: false } => Departure::Left,
                Request::Leave { failed: true } => Departure::Failed,
                _ => Departure::Died,
            };
            total += self.retire(seg, c, how)?;
        }
        self.check_liveness(seg)?;
        Ok(total)
    }

    /// Corruption that would leave the producer waiting forever: returns
    /// that cannot be collected, frames nobody can hand back. Every queue is
    /// looked at, also those of entries that hold nothing.
    pub(super) fn check_liveness(&mut self, seg: &Segment) -> Result<(), RingCorrupt> {
        self.collect(seg)?;
        self.check_ownership(seg)
            .map_err(|e| RingCorrupt::new(seg.name(), e))
    }

    /// Checks that every frame a group holds can still come back: its claim
    /// word is `READY` at a position between its queue's head and tail (a
    /// consumer can take it), or `READING` by a consumer admitted to that
    /// group (it hands it back, or dies and the frame is recovered); and
    /// that each group's queue positions can be. Anything else is a word no
    /// conforming process writes, which would leave the producer waiting
    /// forever. Runs with the periodic reap (every 200 ms, and while
    /// draining), not per frame: at most groups × slots loads.
    pub(super) fn check_ownership(&self, seg: &Segment) -> Result<(), Corrupt> {
        let max_consumers = seg.geometry().max_consumers as usize;
        for g in 0..self.groups.len() {
            if self.groups[g].state == GROUP_UNUSED {
                continue;
            }
            let q = &seg.groups()[g].ready;
            // We alone write the tail; read it before the head (which only
            // grows, and never past the tail we wrote).
            let t = q.tail.load(Ordering::Relaxed);
            let h = q.head.load(Ordering::Acquire);
            if h > t || t - h > seg.group_queue(g).capacity() {
                return Err(Corrupt("ready queue positions (head/tail)"));
            }
            for (s, claim) in seg.claims(g).iter().enumerate() {
                if !self.ledger.holds(g, s) {
                    continue;
                }
                // Read after the head: a claim word still READY(pos) with
                // pos below that head can never be taken (the head moves
                // past a position only after its claim word left READY).
                match SlotState::decode(claim.load(Ordering::Acquire)) {
                    Some(SlotState::Ready { pos }) => {
                        // (Positions are compared unmasked until they pass
                        // 2⁴⁸, which no ring reaches.)
                        if t <= crate::protocol::slot::POS_MASK && (pos < h || pos >= t) {
                            return Err(Corrupt(
                                "claim word: READY at a queue position no consumer can reach",
                            ));
                        }
                    }
                    Some(SlotState::Reading { owner, .. }) => {
                        let owner = owner as usize;
                        if owner >= max_consumers {
                            return Err(Corrupt(
                                "claim word: READING by a consumer index out of range",
                            ));
                        }
                        if self.member_of[owner] != Some(g as u8) {
                            return Err(Corrupt(
                                "claim word: READING by a consumer that is not a member of the group",
                            ));
                        }
                    }
                    Some(SlotState::Free | SlotState::Writing) => {
                        return Err(Corrupt(
                            "claim word: a frame the group holds is marked free",
                        ));
                    }
                    None => return Err(Corrupt("claim word")),
                }
            }
        }
        Ok(())
    }

    /// Publishes slot `s` in group `g`'s queue, first making room under the
    /// drop-oldest policy.
    pub(super) fn push_to_group(
        &mut self,
        seg: &Segment,
        g: usize,
        s: u32,
    ) -> Result<(), crate::error::Corrupt> {
        let q = seg.group_queue(g);
        if self.groups[g].policy == Backpressure::DropOldest {
            // Withdrawn frames leave stale cells until a consumer passes them;
            // a group that takes nothing would fill its queue with them.
            while !q.below(q.capacity() - 1, &mut self.groups[g].head_seen) {
                if let Some(victim) = q.evict_head()?.map(|v| v as usize) {
                    if self.ledger.holds(g, victim) {
                        self.note_group_drop(seg, g, 1);
                        self.ledger.release(g, victim, seg.slot_states());
                        if self.ledger.holders(victim) == 0 {
                            self.note_drop(seg);
                        }
                    }
                }
            }
        }
        q.push_seen(s, &mut self.groups[g].head_seen)?;
        Ok(())
    }

    /// Whether some subscribed lossless group already has `max_queued`
    /// frames waiting (publish no further ahead of its consumers).
    pub(super) fn too_far_ahead(&mut self, seg: &Segment) -> bool {
        let max_queued = self.max_queued;
        bits(self.active & !self.live).any(|g| {
            !seg.group_queue(g)
                .below(max_queued, &mut self.groups[g].head_seen)
        })
    }

    /// Withdraws, from the live groups, the oldest published frame that no
    /// live consumer has claimed and no lossless group holds, and returns
    /// its slot to the free pool. `false` when there is none (every such
    /// slot is being read, or lossless groups hold them all).
    pub(super) fn drop_oldest(&mut self, seg: &Segment) -> Result<bool, crate::error::Corrupt> {
        loop {
            // The oldest slot held only by live groups, all with it unclaimed.
            let mut best: Option<usize> = None;
            for s in 0..self.ledger.slots() {
                let mask = self.ledger.holders(s);
                if mask == 0
                    || mask & !self.live != 0
                    || best.is_some_and(|b| self.ledger.seq(b) <= self.ledger.seq(s))
                {
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
            for g in bits(self.ledger.holders(s)) {
                if seg.group_queue(g).revoke(s as u32)? {
                    self.note_group_drop(seg, g, 1);
                    self.ledger.release(g, s, seg.slot_states());
                }
            }
            if self.ledger.holders(s) == 0 {
                self.note_drop(seg);
                return Ok(true);
            }
            // A consumer claimed it meanwhile; the scan now skips it.
        }
    }
}
