//! The producer-to-consumers queue of one consumer group: slot indices of
//! published frames, claimed by the group's consumers. Only indices and
//! positions are stored; never a pointer.
//!
//! # Why not a Vyukov MPMC queue
//!
//! In crossbeam's `ArrayQueue` (after Dmitry Vyukov's bounded MPMC queue) a
//! consumer first advances the head, then reads the cell and stamps it free.
//! Between processes that is not crash-safe: a consumer killed between the two
//! steps leaves a cell that is never stamped, the producer waits on it
//! forever, and the slot it named is lost. Here the *claim* of a frame and
//! the record of who owns it are one CAS on the slot's claim word
//! ([`crate::protocol::slot`]), and the shared head is only a hint that anyone may
//! advance. A process may die at any instruction:
//!
//! * before its claim CAS — nothing changed;
//! * after it — the claim word names the dead consumer (recovery re-publishes
//!   the frame), and the head still points at the claimed cell, which every
//!   other consumer recognises as stale and helps to skip.
//!
//! # Algorithm
//!
//! `cells.len()` is a power of two at least twice the number of slots. Cell
//! `p & mask` holds `stamp(p) << 16 | slot` where `stamp(p) = (p + 1) mod 2⁴⁸`
//! — the per-cell lap stamp of crossbeam's queue, here so that a consumer
//! that read a cell of an earlier or later lap recognises it. Positions are
//! 64-bit and never wrap in practice.
//!
//! Producer, publishing slot `s` at position `t = tail`:
//! 1. claim word `:= READY(t)` (Release: the frame's bytes and metadata,
//!    written before, become visible to whoever acquires the word);
//! 2. cell `:= stamp(t) | s` (Release, see the consumer's step 2);
//! 3. `tail := t + 1` (Release: publishes 1 and 2).
//!
//! Consumer, taking a frame:
//! 1. `h := head`, then read cell `h` (Acquire: pairs with step 2). If its
//!    stamp is `stamp(h)`, the frame at `h` is published: go to 3, with no
//!    read of the tail (the line the producer writes last, so one cache-line
//!    transfer less between a publish and its take);
//! 2. otherwise read `t := tail` (Acquire). `h == t`: empty. `h == t + 1`:
//!    empty too — a consumer saw the cell at `t` (step 2 of the producer
//!    done) and claimed it before the producer's step 3, so the head may lead
//!    the tail by one. `h < t`: the cell at `h` was written before that tail,
//!    so either a re-read finds it or the producer has reused it, which it
//!    only does after seeing `head > h`: retry (if the cell still does not
//!    match and the head still reads `h`, the segment is corrupt). Any other
//!    `h > t` is corrupt;
//! 3. CAS the claim word from `READY(h)` to `READING(me, h)` (AcqRel:
//!    acquires the producer's release of step 1; tried at once, not after a
//!    load, which would fetch the line only to fetch it again to own it). On
//!    success the frame is ours; then CAS `head` from `h` to `h + 1` (a
//!    failure means someone helped);
//! 4. otherwise the frame at `h` was claimed (perhaps by a consumer that died
//!    before advancing the head) or re-published elsewhere: CAS `head` from
//!    `h` to `h + 1` to help, and retry.
//!
//! The position in the claim word is the generation that defeats ABA: a slot
//! re-published at a later position can never be claimed through a stale
//! cell naming the old one (until the 48-bit position wraps: 2.8·10¹⁴
//! frames).
//!
//! A frame is claimed only while `head == h` (the head moves past `h` only
//! after the claim word left `READY(h)`), so stale cells are never ahead of
//! the head: between head and tail there are at most `slots + 1` entries and
//! the queue, twice that size, never fills. `push` still checks, because the
//! segment is shared with processes we do not trust.

use crate::error::Corrupt;
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::slot::{SlotState, POS_MASK};
use crate::protocol::sync::{mutant, AtomicU64, Ordering};

const SLOT_BITS: u32 = 16;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The most slots a queue cell can name.
pub(crate) const MAX_SLOTS: u32 = 1 << SLOT_BITS;

#[inline]
fn stamp(pos: u64) -> u64 {
    pos.wrapping_add(1) & POS_MASK
}

/// Attempts a consumer makes before declaring the queue corrupt. Each failed
/// attempt means another consumer made progress, so real contention needs a
/// handful; only garbage that keeps changing gets this far.
const MAX_ATTEMPTS: u32 = 1 << 20;

/// Proof that this process claimed a frame: made only by a successful claim
/// CAS in [`ReadyQueue::take`], neither `Clone` nor `Copy`, and consumed when
/// the slot is handed back. While it lives, the claim word it names reads
/// `READING(us)`, so no conforming process writes the frame:
/// [`crate::platform::segment::Segment::frame`] relies on that.
#[derive(Debug)]
pub(crate) struct ReadClaim {
    slot: u32,
    pos: u64,
    /// Address of the claim word that was CASed (to check that the claim is
    /// used with the segment it was made in).
    word: usize,
}

impl ReadClaim {
    /// The slot claimed.
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// The queue position it was claimed at.
    #[allow(dead_code)]
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Address of the claim word this claim was made on.
    pub(crate) fn word_addr(&self) -> usize {
        self.word
    }
}

/// One group's ready queue. See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadyQueue<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [AtomicU64],
    claims: &'a [AtomicU64],
    mask: u64,
}

impl<'a> ReadyQueue<'a> {
    /// Binds the queue to its control words, cells and the group's claim
    /// words. Panics unless `cells.len()` is a power of two at least twice
    /// `claims.len()` and `claims.len() <= MAX_SLOTS` (the layout guarantees
    /// both; they come from local, validated values, never from the segment).
    pub(crate) fn new(
        ctrl: &'a QueueCtrl,
        cells: &'a [AtomicU64],
        claims: &'a [AtomicU64],
    ) -> Self {
        assert!(cells.len().is_power_of_two() && cells.len() >= 2 * claims.len());
        assert!(claims.len() <= MAX_SLOTS as usize);
        Self {
            ctrl,
            cells,
            claims,
            mask: cells.len() as u64 - 1,
        }
    }

    /// [`push_seen`](Self::push_seen) with no head seen before.
    #[cfg(any(test, loom))]
    pub(crate) fn push(&self, slot: u32) -> Result<u64, Corrupt> {
        self.push_seen(slot, &mut 0)
    }

    /// Publishes slot `slot`, which the caller (the one producer) owns.
    /// Returns the queue position it was published at. `head_seen` is the
    /// producer's last read of this queue's head
    /// ([`QueueCtrl::tail_if_below`]): the head is read only when the queue
    /// looks full by it, which it never is in a sound ring.
    pub(crate) fn push_seen(&self, slot: u32, head_seen: &mut u64) -> Result<u64, Corrupt> {
        let word = self
            .claims
            .get(slot as usize)
            .ok_or(Corrupt("slot index"))?;
        // Acquire (when the head is read): consumers' reads of cell
        // `h - cap` happen before we reuse it.
        let t = self
            .ctrl
            .tail_if_below(self.cells.len() as u64, head_seen)
            .ok_or(Corrupt("ready queue full"))?;
        // Step 1. Release: frame bytes and metadata written before are
        // visible to the consumer whose claim CAS reads this value.
        word.store(SlotState::Ready { pos: t }.encode(), Ordering::Release);
        // Step 2. Release: pairs with the consumer's Acquire cell load, so that
        // a consumer that sees this cell also sees our head load above.
        self.cells[(t & self.mask) as usize]
            .store((stamp(t) << SLOT_BITS) | slot as u64, Ordering::Release);
        // Step 3. Release: publishes steps 1 and 2. (Loom mutant
        // `publish-tail-relaxed`: a consumer may then see the new tail but
        // an old cell.)
        let order = if mutant("publish-tail-relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.ctrl.tail.store(t + 1, order);
        Ok(t)
    }

    /// [`take_hinting`](Self::take_hinting) with no hint.
    #[cfg(any(test, loom))]
    pub(crate) fn take(&self, me: u8) -> Result<Option<ReadClaim>, Corrupt> {
        self.take_hinting(me, |_| {})
    }

    /// Claims the oldest published frame for consumer `me`, or `None` if the
    /// queue is empty. `claiming` is told the slot just before the claim is
    /// tried (to start loading what the caller reads next); it may be told
    /// slots that are not claimed in the end.
    ///
    /// The cell at the head is read before the tail (as crossbeam's
    /// `ArrayQueue` reads its cells' stamps): a cell stamped for the head's
    /// position was published there (the producer writes the cell before
    /// the tail), so a frame is claimed with no read of the tail, the line
    /// the producer writes last. The tail is read only when the cell does
    /// not match, to tell an empty queue from a head that moved on.
    pub(crate) fn take_hinting(
        &self,
        me: u8,
        claiming: impl Fn(u32),
    ) -> Result<Option<ReadClaim>, Corrupt> {
        for _ in 0..MAX_ATTEMPTS {
            // Acquire: the head is advanced by consumers after they read a
            // cell (and by the producer after it withdrew one).
            let h = self.ctrl.head.load(Ordering::Acquire);
            // Acquire: pairs with the producer's Release cell store (step
            // 2), which follows its claim word store (step 1).
            let cell = self.cells[(h & self.mask) as usize].load(Ordering::Acquire);
            if cell >> SLOT_BITS != stamp(h) {
                // Not published at `h` yet, or reused for a later lap (the
                // producer saw head > h first). The tail tells which.
                // Acquire: the tail publishes the cells before it.
                let t = self.ctrl.tail.load(Ordering::Acquire);
                if h == t {
                    return Ok(None);
                }
                if h > t {
                    // A consumer that saw the cell at `t` may claim it and
                    // move the head to `t + 1` before the producer's tail
                    // store: the head leads the tail by one until then, and
                    // the cell at `t + 1` is not published yet.
                    if h == t.wrapping_add(1) {
                        return Ok(None);
                    }
                    // Re-read: a head read before the tail can be older,
                    // never newer.
                    let (h2, t2) = (
                        self.ctrl.head.load(Ordering::Acquire),
                        self.ctrl.tail.load(Ordering::Acquire),
                    );
                    if h2 > t2.wrapping_add(1) {
                        return Err(Corrupt("head ahead of tail"));
                    }
                    continue;
                }
                // h < t: the cell at h was written before the tail we saw,
                // so a new read finds it, unless the head moved on.
                let again = self.cells[(h & self.mask) as usize].load(Ordering::Acquire);
                if again >> SLOT_BITS != stamp(h) && self.ctrl.head.load(Ordering::Acquire) == h {
                    return Err(Corrupt("queue cell stamp"));
                }
                continue;
            }
            let slot = (cell & SLOT_MASK) as u32;
            let word = self
                .claims
                .get(slot as usize)
                .ok_or(Corrupt("slot index in queue cell"))?;
            claiming(slot);
            let ready = SlotState::Ready { pos: h }.encode();
            let mine = SlotState::Reading { owner: me, pos: h }.encode();
            // AcqRel: acquires the producer's step-1 release (the frame), and
            // orders the claim before our head update. Tried straight away,
            // not after a load of the word: a load would fetch the line
            // shared, and the CAS then fetch it again to own it. (Loom mutant
            // `claim-store`: a check and a plain store instead of the CAS lets
            // two consumers claim.)
            let claimed = if mutant("claim-store") {
                if word.load(Ordering::Acquire) == ready {
                    word.store(mine, Ordering::Release);
                    Ok(ready)
                } else {
                    Err(0)
                }
            } else {
                word.compare_exchange(ready, mine, Ordering::AcqRel, Ordering::Relaxed)
            };
            if claimed.is_ok() {
                // Release: our cell read happens before the producer reuses
                // the cell. A failure means somebody helped.
                let _ =
                    self.ctrl
                        .head
                        .compare_exchange(h, h + 1, Ordering::Release, Ordering::Relaxed);
                return Ok(Some(ReadClaim {
                    slot,
                    pos: h,
                    word: word as *const AtomicU64 as usize,
                }));
            }
            // Stale: claimed at `h` already (its claimer may be dead before it
            // advanced the head) or re-published at a later position. Help.
            let _ = self
                .ctrl
                .head
                .compare_exchange(h, h + 1, Ordering::Release, Ordering::Relaxed);
        }
        Err(Corrupt("no progress"))
    }

    /// Producer side: withdraws the frame in `slot` from this queue's
    /// consumers if none of them has claimed it yet (drop-oldest policy).
    /// Returns whether it was withdrawn; `false` means a consumer claimed it
    /// first (or it was not published here), and the slot must then be left
    /// to that consumer.
    ///
    /// The withdrawal is a CAS from `READY(pos)` to `FREE` on the same word
    /// a consumer's claim CASes from `READY(pos)`, so exactly one of the two
    /// wins. The queue cell stays behind as a stale entry that consumers skip
    /// (as they skip a dead consumer's claim) and [`evict_head`] clears.
    ///
    /// [`evict_head`]: Self::evict_head
    pub(crate) fn revoke(&self, slot: u32) -> Result<bool, Corrupt> {
        let word = self
            .claims
            .get(slot as usize)
            .ok_or(Corrupt("slot index"))?;
        let cur = word.load(Ordering::Acquire);
        match SlotState::decode(cur) {
            // Loom mutant `revoke-store`: withdraw with a plain store, which
            // can overwrite a consumer's claim made since the load.
            Some(SlotState::Ready { .. }) if mutant("revoke-store") => {
                word.store(SlotState::Free.encode(), Ordering::Release);
                Ok(true)
            }
            Some(SlotState::Ready { .. }) => Ok(word
                // AcqRel on success: orders the withdrawal before the
                // producer's next writes to the frame (which follow its
                // check that no group holds the slot).
                .compare_exchange(
                    cur,
                    SlotState::Free.encode(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()),
            Some(_) => Ok(false),
            None => Err(Corrupt("claim word")),
        }
    }

    /// Producer side: makes room in a queue that is nearly full of entries
    /// nobody will take soon (withdrawn frames, or a consumer far behind).
    /// Withdraws the frame at the head if it is still unclaimed and advances
    /// the head past it. Returns the withdrawn slot, if there was one.
    ///
    /// The head only moves past position `h` after the claim word left
    /// `READY(h)` (here: our successful withdrawal, or someone's claim), the
    /// invariant [`take`](Self::take) relies on.
    pub(crate) fn evict_head(&self) -> Result<Option<u32>, Corrupt> {
        // Acquire: as in `take`.
        let h = self.ctrl.head.load(Ordering::Acquire);
        // Relaxed: only the producer (us) writes the tail.
        let t = self.ctrl.tail.load(Ordering::Relaxed);
        if h >= t {
            return Ok(None);
        }
        let cell = self.cells[(h & self.mask) as usize].load(Ordering::Acquire);
        if cell >> SLOT_BITS != stamp(h) {
            // We reuse a cell only after seeing the head past it.
            return Err(Corrupt("queue cell stamp"));
        }
        let slot = (cell & SLOT_MASK) as u32;
        let word = self
            .claims
            .get(slot as usize)
            .ok_or(Corrupt("slot index in queue cell"))?;
        let ready = SlotState::Ready { pos: h }.encode();
        // AcqRel: as in `revoke`.
        let revoked = word
            .compare_exchange(
                ready,
                SlotState::Free.encode(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        // Release: as a consumer's head update. A failure means a consumer
        // moved the head itself.
        let _ = self
            .ctrl
            .head
            .compare_exchange(h, h + 1, Ordering::Release, Ordering::Relaxed);
        Ok(revoked.then_some(slot))
    }

    /// Producer side: forgets every entry (the group has no consumer left:
    /// nobody reads the head concurrently).
    pub(crate) fn clear(&self) {
        let t = self.ctrl.tail.load(Ordering::Relaxed);
        // Release: pairs with the Acquire head load of a consumer that joins
        // later (it sees an empty queue, not the cells of the old one).
        self.ctrl.head.store(t, Ordering::Release);
    }

    /// Cells of the queue (a power of two).
    pub(crate) fn capacity(&self) -> u64 {
        self.cells.len() as u64
    }

    /// Producer side: whether fewer than `limit` entries are queued, reading
    /// the head only if `head_seen` does not tell
    /// ([`QueueCtrl::tail_if_below`]).
    pub(crate) fn below(&self, limit: u64, head_seen: &mut u64) -> bool {
        self.ctrl.tail_if_below(limit, head_seen).is_some()
    }

    /// Producer side, for a waiter's predicate: whether fewer than `limit`
    /// entries are queued, by the head as it is now, counted as
    /// [`below`](Self::below) counts them (modulo 2⁶⁴). So a head scribbled
    /// past the tail means no room here exactly when it means none to the
    /// loan that waits (a saturating count would call that queue empty, and
    /// the wait would end at once, again and again).
    pub(crate) fn below_now(&self, limit: u64) -> bool {
        // Acquire: as in `QueueCtrl::below_from`.
        let mut seen = self.ctrl.head.load(Ordering::Acquire);
        self.below(limit, &mut seen)
    }

    /// Whether the queue holds no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.ctrl.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn slot_pos(c: Option<ReadClaim>) -> Option<(u32, u64)> {
        c.map(|c| (c.slot(), c.pos()))
    }

    #[test]
    fn fifo_and_claims() {
        let ctrl = QueueCtrl::new();
        let cells = words(8);
        let slots = words(4);
        let q = ReadyQueue::new(&ctrl, &cells, &slots);
        for lap in 0..10u64 {
            for s in 0..4 {
                assert_eq!(q.push(s).unwrap(), lap * 4 + s as u64);
            }
            for s in 0..4 {
                let (slot, pos) = slot_pos(q.take(7).unwrap()).unwrap();
                assert_eq!((slot, pos), (s, lap * 4 + s as u64));
                assert_eq!(
                    SlotState::decode(slots[s as usize].load(Ordering::Relaxed)),
                    Some(SlotState::Reading { owner: 7, pos })
                );
                slots[s as usize].store(SlotState::Free.encode(), Ordering::Relaxed);
            }
            assert!(q.take(7).unwrap().is_none());
        }
    }

    #[test]
    fn stale_head_entry_is_skipped() {
        // A consumer that claimed but died before advancing the head.
        let ctrl = QueueCtrl::new();
        let cells = words(8);
        let slots = words(4);
        let q = ReadyQueue::new(&ctrl, &cells, &slots);
        q.push(0).unwrap();
        q.push(1).unwrap();
        slots[0].store(
            SlotState::Reading { owner: 3, pos: 0 }.encode(),
            Ordering::Relaxed,
        );
        assert_eq!(slot_pos(q.take(1).unwrap()), Some((1, 1)));
        // Re-publishing the dead consumer's slot delivers it again.
        q.push(0).unwrap();
        assert_eq!(slot_pos(q.take(1).unwrap()), Some((0, 2)));
        assert!(q.is_empty());
    }

    #[test]
    fn a_queue_nobody_takes_from_is_refused_when_full_with_an_old_head_seen() {
        // Garbage in a shared segment could leave the head still; the
        // producer's old view of it must not let a push run over it.
        let ctrl = QueueCtrl::new();
        let cells = words(8);
        let slots = words(4);
        let q = ReadyQueue::new(&ctrl, &cells, &slots);
        let mut seen = 0;
        for p in 0..8 {
            assert_eq!(q.push_seen(p % 4, &mut seen).unwrap(), p as u64);
        }
        assert!(q.push_seen(0, &mut seen).is_err(), "full");
        // Consumers move the head: the producer sees it when it must.
        ctrl.head.store(5, Ordering::Relaxed);
        assert_eq!(q.push_seen(0, &mut seen).unwrap(), 8);
        assert_eq!(seen, 5);
        assert!(!q.below(4, &mut seen), "4 queued: not below 4");
        assert!(q.below(5, &mut seen));
    }

    #[test]
    fn garbage_is_an_error_not_ub() {
        let ctrl = QueueCtrl::new();
        let cells = words(8);
        let slots = words(4);
        let q = ReadyQueue::new(&ctrl, &cells, &slots);
        ctrl.tail.store(1, Ordering::Relaxed);
        cells[0].store((stamp(0) << SLOT_BITS) | 999, Ordering::Relaxed);
        assert!(q.take(0).is_err());
        cells[0].store(12345, Ordering::Relaxed);
        assert!(q.take(0).is_err());
        ctrl.head.store(5, Ordering::Relaxed);
        assert!(q.take(0).is_err());
        assert!(q.push(9).is_err());
    }
}

/// Property tests over arbitrary words: what another process leaves in
/// shared memory must never make this one panic, hang or step out of bounds.
#[cfg(all(test, not(loom)))]
mod proptests {
    use super::*;
    use crate::protocol::return_queue::ReturnQueue;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn queue_operations_on_garbage_stay_in_bounds(
            head in any::<u64>(),
            tail in any::<u64>(),
            small_positions in any::<bool>(),
            cells in proptest::collection::vec(any::<u64>(), 16),
            slots in proptest::collection::vec(any::<u64>(), 8),
            ret in proptest::collection::vec(any::<u64>(), 8),
            me in any::<u8>(),
        ) {
            let ctrl = QueueCtrl::new();
            let (h, t) = if small_positions { (head % 40, tail % 40) } else { (head, tail) };
            ctrl.head.store(h, Ordering::Relaxed);
            ctrl.tail.store(t, Ordering::Relaxed);
            let cells: Vec<AtomicU64> = cells.into_iter().map(AtomicU64::new).collect();
            let slots: Vec<AtomicU64> = slots.into_iter().map(AtomicU64::new).collect();
            let q = ReadyQueue::new(&ctrl, &cells, &slots);
            for _ in 0..4 {
                if let Ok(Some(c)) = q.take(me) {
                    prop_assert!((c.slot() as usize) < slots.len());
                }
            }
            for s in 0..10 {
                let r = q.push(s);
                if s >= 8 {
                    prop_assert!(r.is_err());
                }
            }
            let rctrl = QueueCtrl::new();
            rctrl.head.store(h, Ordering::Relaxed);
            let rcells: Vec<AtomicU64> = ret.into_iter().map(AtomicU64::new).collect();
            let rq = ReturnQueue::new(&rctrl, &rcells);
            let mut n = 0usize;
            let mut producer_head = t;
            match rq.drain(&mut producer_head, |_| n += 1) {
                Ok(k) => prop_assert!(k == n && k <= rcells.len() && producer_head == t.wrapping_add(k as u64)),
                Err(_) => prop_assert!(n <= rcells.len()),
            }
            let _ = rq.is_collected();
            let _ = rq.pending().count();
            let mut cur = rq.cursor();
            let _ = rq.push(1, &mut cur);
        }
    }
}
