//! The index queues that live inside the segment: slot indices travel from the
//! producer to the consumers through a [`ReadyQueue`], and back to the
//! producer through one [`ReturnQueue`] per consumer. Only offsets and
//! indices are stored; never a pointer.
//!
//! # Why not a Vyukov MPMC queue
//!
//! In crossbeam's `ArrayQueue` (after Dmitry Vyukov's bounded MPMC queue) a
//! consumer first advances the head, then reads the cell and stamps it free.
//! Between processes that is not crash-safe: a consumer killed between the two
//! steps leaves a cell that is never stamped, the producer waits on it
//! forever, and the slot it named is lost. Here the *claim* of a frame and
//! the record of who owns it are one CAS on the slot's ownership word
//! ([`crate::slot`]), and the shared head is only a hint that anyone may
//! advance. A process may die at any instruction:
//!
//! * before its claim CAS — nothing changed;
//! * after it — the slot word names the dead consumer (recovery re-publishes
//!   the frame), and the head still points at the claimed cell, which every
//!   other consumer recognises as stale and helps to skip.
//!
//! # Ready queue (single producer, many consumers)
//!
//! `cells.len()` is a power of two at least twice the number of slots. Cell
//! `p & mask` holds `stamp(p) << 16 | slot` where `stamp(p) = (p + 1) mod 2⁴⁸`
//! — the per-cell sequence stamp of crossbeam's queue, here against a consumer
//! that read an old head and then lost the CPU while the producer lapped it.
//! Positions are 64-bit and never wrap in practice.
//!
//! Producer, publishing slot `s` at position `t = tail`:
//! 1. slot word `:= READY(t)` (Release: the frame's bytes and metadata, written
//!    before, become visible to whoever acquires the word);
//! 2. cell `:= stamp(t) | s` (Release, see the consumer's step 3);
//! 3. `tail := t + 1` (Release: publishes 1 and 2).
//!
//! Consumer, taking a frame:
//! 1. `h := head`, `t := tail` (Acquire); empty if `h == t`;
//! 2. read cell `h` (Acquire). If its stamp is not `stamp(h)` the producer has
//!    already reused it, which it only does after seeing `head > h`; so the
//!    head has moved on: retry (if the head still reads `h`, the segment is
//!    corrupt);
//! 3. if slot word `== READY(h)`, CAS it to `READING(me, h)` (AcqRel: acquires
//!    the producer's release of step 1). On success the frame is ours; then
//!    CAS `head` from `h` to `h + 1` (a failure means someone helped);
//! 4. otherwise the frame at `h` was claimed (perhaps by a consumer that died
//!    before advancing the head) or re-published elsewhere: CAS `head` from
//!    `h` to `h + 1` to help, and retry.
//!
//! A frame is claimed only while `head == h` (the head moves past `h` only
//! after the slot word left `READY(h)`), so stale cells are never ahead of
//! the head: between head and tail there are at most `slots + 1` entries and
//! the queue, twice that size, never fills. `push` still checks, because the
//! segment is shared with processes we do not trust.
//!
//! # Return queue (one consumer, the producer)
//!
//! A single-producer single-consumer ring of slot indices with 64-bit
//! positions (iceoryx2's `safely_overflowing_index_queue` idea without the
//! overflow): the consumer writes a cell (Relaxed) and then its tail
//! (Release, which also orders its reads of the frame before the producer's
//! next writes); the producer reads the tail (Acquire), the cells, and stores
//! its head (Release). A slot stays `READING(consumer)` until the producer
//! collects it, so a consumer that dies before its tail store has not lost the
//! slot: recovery finds it by its owner.

use crate::slot::{SlotState, POS_MASK};
use crate::sync::{AtomicU32, AtomicU64, Ordering, Padded};

/// Head and tail of a queue, each on its own pair of cache lines.
#[repr(C)]
#[derive(Debug, Default)]
pub struct QueueCtrl {
    /// Next position to be written; written only by the queue's producer.
    pub tail: Padded<AtomicU64>,
    /// Next position to be read.
    pub head: Padded<AtomicU64>,
}

impl QueueCtrl {
    /// An empty queue (the all-zero bytes of a new segment are one too).
    pub fn new() -> Self {
        Self {
            tail: Padded(AtomicU64::new(0)),
            head: Padded(AtomicU64::new(0)),
        }
    }

    /// Entries between head and tail, as seen now (for status displays).
    pub fn len(&self) -> u64 {
        let t = self.tail.load(Ordering::Acquire);
        let h = self.head.load(Ordering::Acquire);
        t.saturating_sub(h)
    }

    /// Whether [`len`](Self::len) is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Something in shared memory contradicts the queue's invariants: another
/// process wrote garbage. Never caused by a crash of a well-behaved peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shared queue is corrupt: {0}")]
pub struct Corrupt(pub &'static str);

const SLOT_BITS: u32 = 16;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// The most slots a queue cell can name.
pub const MAX_SLOTS: u32 = 1 << SLOT_BITS;

#[inline]
fn stamp(pos: u64) -> u64 {
    pos.wrapping_add(1) & POS_MASK
}

/// Attempts a consumer makes before declaring the queue corrupt. Each failed
/// attempt means another consumer made progress, so real contention needs a
/// handful; only garbage that keeps changing gets this far.
const MAX_ATTEMPTS: u32 = 1 << 20;

/// The producer-to-consumers queue. See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct ReadyQueue<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [AtomicU64],
    slots: &'a [AtomicU64],
    mask: u64,
}

impl<'a> ReadyQueue<'a> {
    /// Binds the queue to its control words, cells and the slot ownership
    /// words. Panics unless `cells.len()` is a power of two at least twice
    /// `slots.len()` and `slots.len() <= MAX_SLOTS` (the layout guarantees
    /// both; they come from local, validated values, never from the segment).
    pub fn new(ctrl: &'a QueueCtrl, cells: &'a [AtomicU64], slots: &'a [AtomicU64]) -> Self {
        assert!(cells.len().is_power_of_two() && cells.len() >= 2 * slots.len());
        assert!(slots.len() <= MAX_SLOTS as usize);
        Self {
            ctrl,
            cells,
            slots,
            mask: cells.len() as u64 - 1,
        }
    }

    /// Publishes slot `slot`, which the caller (the one producer) owns.
    /// Returns the queue position it was published at.
    pub fn push(&self, slot: u32) -> Result<u64, Corrupt> {
        let word = self.slots.get(slot as usize).ok_or(Corrupt("slot index"))?;
        // Only this process writes the tail: Relaxed reads our own last store.
        let t = self.ctrl.tail.load(Ordering::Relaxed);
        // Acquire: consumers' reads of cell `h - cap` happen before we reuse it.
        let h = self.ctrl.head.load(Ordering::Acquire);
        if t.wrapping_sub(h) >= self.cells.len() as u64 {
            return Err(Corrupt("ready queue full"));
        }
        // Step 1. Release: frame bytes and metadata written before are
        // visible to the consumer whose claim CAS reads this value.
        word.store(SlotState::Ready { pos: t }.encode(), Ordering::Release);
        // Step 2. Release: pairs with the consumer's Acquire cell load, so that
        // a consumer that sees this cell also sees our head load above.
        self.cells[(t & self.mask) as usize]
            .store((stamp(t) << SLOT_BITS) | slot as u64, Ordering::Release);
        // Step 3. Release: publishes steps 1 and 2.
        self.ctrl.tail.store(t + 1, Ordering::Release);
        Ok(t)
    }

    /// Claims the oldest published frame for consumer `me`: returns its slot
    /// and position, or `None` if the queue is empty.
    pub fn take(&self, me: u8) -> Result<Option<(u32, u64)>, Corrupt> {
        for _ in 0..MAX_ATTEMPTS {
            // Acquire on both: the tail publishes cells and slot words; the
            // head is advanced by consumers after they read a cell.
            let h = self.ctrl.head.load(Ordering::Acquire);
            let t = self.ctrl.tail.load(Ordering::Acquire);
            if h == t {
                return Ok(None);
            }
            if h > t {
                // Re-read: a head read before the tail can be older, never newer.
                if self.ctrl.head.load(Ordering::Acquire) > self.ctrl.tail.load(Ordering::Acquire) {
                    return Err(Corrupt("head ahead of tail"));
                }
                continue;
            }
            // Acquire: pairs with the producer's Release cell store.
            let cell = self.cells[(h & self.mask) as usize].load(Ordering::Acquire);
            if cell >> SLOT_BITS != stamp(h) {
                // Reused for a later lap: the producer saw head > h first.
                if self.ctrl.head.load(Ordering::Acquire) == h {
                    return Err(Corrupt("queue cell stamp"));
                }
                continue;
            }
            let slot = (cell & SLOT_MASK) as u32;
            let word = self
                .slots
                .get(slot as usize)
                .ok_or(Corrupt("slot index in queue cell"))?;
            let ready = SlotState::Ready { pos: h }.encode();
            if word.load(Ordering::Acquire) == ready {
                let mine = SlotState::Reading { owner: me, pos: h }.encode();
                // AcqRel: acquires the producer's step-1 release (the frame),
                // and releases nothing of ours yet but orders the claim before
                // our head update. Acquire on failure: we re-read anyway.
                match word.compare_exchange(ready, mine, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        // Release: our cell read happens before the producer
                        // reuses the cell. A failure means somebody helped.
                        let _ = self.ctrl.head.compare_exchange(
                            h,
                            h + 1,
                            Ordering::Release,
                            Ordering::Relaxed,
                        );
                        return Ok(Some((slot, h)));
                    }
                    Err(_) => continue,
                }
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
    /// consumers if none of them has claimed it yet (drop-oldest policy, or a
    /// group that lost its last consumer). Returns whether it was withdrawn;
    /// `false` means a consumer claimed it first (or it was not published
    /// here), and the slot must then be left to that consumer.
    ///
    /// The withdrawal is a CAS from `READY(pos)` to `FREE` on the same word
    /// a consumer's claim CASes from `READY(pos)`, so exactly one of the two
    /// wins. The queue cell stays behind as a stale entry that consumers skip
    /// (as they skip a dead consumer's claim) and [`evict_head`] clears.
    ///
    /// [`evict_head`]: Self::evict_head
    pub fn revoke(&self, slot: u32) -> Result<bool, Corrupt> {
        let word = self.slots.get(slot as usize).ok_or(Corrupt("slot index"))?;
        // Acquire: nothing to acquire from a consumer here, but a failed CAS
        // below re-reads anyway; Relaxed would do as well.
        let cur = word.load(Ordering::Acquire);
        match SlotState::decode(cur) {
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
    pub fn evict_head(&self) -> Result<Option<u32>, Corrupt> {
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
            .slots
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
    pub fn clear(&self) {
        let t = self.ctrl.tail.load(Ordering::Relaxed);
        // Release: pairs with the Acquire head load of a consumer that joins
        // later (it sees an empty queue, not the cells of the old one).
        self.ctrl.head.store(t, Ordering::Release);
    }

    /// Cells of the queue (a power of two).
    pub fn capacity(&self) -> u64 {
        self.cells.len() as u64
    }

    /// Entries between head and tail (some may be stale).
    pub fn len(&self) -> u64 {
        self.ctrl.len()
    }

    /// Whether the queue holds no entries.
    pub fn is_empty(&self) -> bool {
        self.ctrl.is_empty()
    }
}

/// A consumer-to-producer queue of returned slot indices. See the
/// [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub struct ReturnQueue<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [AtomicU32],
    mask: u64,
}

impl<'a> ReturnQueue<'a> {
    /// Binds the queue. Panics unless `cells.len()` is a power of two (a
    /// local, validated value).
    pub fn new(ctrl: &'a QueueCtrl, cells: &'a [AtomicU32]) -> Self {
        assert!(cells.len().is_power_of_two());
        Self {
            ctrl,
            cells,
            mask: cells.len() as u64 - 1,
        }
    }

    /// Consumer side: hands `slot` back to the producer. Call only after the
    /// last read of the frame.
    pub fn push(&self, slot: u32) -> Result<(), Corrupt> {
        // Only the owning consumer writes the tail.
        let t = self.ctrl.tail.load(Ordering::Relaxed);
        // Acquire: the producer's reads of old cells happen before we reuse them.
        let h = self.ctrl.head.load(Ordering::Acquire);
        if t.wrapping_sub(h) >= self.cells.len() as u64 {
            // A consumer holds at most `slots` frames and the queue has room
            // for all of them, so this only happens with garbage.
            return Err(Corrupt("return queue full"));
        }
        self.cells[(t & self.mask) as usize].store(slot, Ordering::Relaxed);
        // Release: publishes the cell, and orders every read this consumer
        // made of the frame before the producer's next writes to it.
        self.ctrl.tail.store(t + 1, Ordering::Release);
        Ok(())
    }

    /// Producer side: passes every returned slot index to `f`, oldest first.
    /// Indices are unchecked here: `f` must validate them.
    pub fn drain(&self, mut f: impl FnMut(u32)) -> Result<usize, Corrupt> {
        let h = self.ctrl.head.load(Ordering::Relaxed);
        // Acquire: pairs with the consumer's Release tail store.
        let t = self.ctrl.tail.load(Ordering::Acquire);
        if t == h {
            return Ok(0);
        }
        if t < h || t - h > self.cells.len() as u64 {
            return Err(Corrupt("return queue positions"));
        }
        for p in h..t {
            f(self.cells[(p & self.mask) as usize].load(Ordering::Relaxed));
        }
        // Release: our cell reads happen before the consumer reuses the cells.
        self.ctrl.head.store(t, Ordering::Release);
        Ok((t - h) as usize)
    }

    /// Returned slots not yet collected by the producer.
    pub fn len(&self) -> u64 {
        self.ctrl.len()
    }

    /// Whether nothing waits to be collected.
    pub fn is_empty(&self) -> bool {
        self.ctrl.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
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
                let (slot, pos) = q.take(7).unwrap().unwrap();
                assert_eq!((slot, pos), (s, lap * 4 + s as u64));
                assert_eq!(
                    SlotState::decode(slots[s as usize].load(Ordering::Relaxed)),
                    Some(SlotState::Reading { owner: 7, pos })
                );
                slots[s as usize].store(SlotState::Free.encode(), Ordering::Relaxed);
            }
            assert_eq!(q.take(7).unwrap(), None);
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
        assert_eq!(q.take(1).unwrap(), Some((1, 1)));
        // Re-publishing the dead consumer's slot delivers it again.
        q.push(0).unwrap();
        assert_eq!(q.take(1).unwrap(), Some((0, 2)));
        assert!(q.is_empty());
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

    #[test]
    fn return_queue_round_trip_and_garbage() {
        let ctrl = QueueCtrl::new();
        let cells: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let r = ReturnQueue::new(&ctrl, &cells);
        for round in 0..5 {
            for s in 0..4 {
                r.push(s + round).unwrap();
            }
            assert!(r.push(0).is_err(), "full");
            let mut got = vec![];
            assert_eq!(r.drain(|s| got.push(s)).unwrap(), 4);
            assert_eq!(got, (round..round + 4).collect::<Vec<_>>());
        }
        ctrl.tail.store(1000, Ordering::Relaxed);
        assert!(r.drain(|_| {}).is_err());
    }
}
