//! The producer's private bookkeeping of slots: its free pool and which
//! groups still hold each published slot.
//!
//! Kept in the producer's own memory, never in the segment: no shared
//! reference count exists that a process dying between two instructions
//! could leave wrong. A slot is in exactly one of these states here:
//!
//! * **free** — in the `free` pool, loaned in the order
//!   [`SlotReuse`] asks for: the slot handed back last first (it is still
//!   warm in the cache), or the one handed back longest ago;
//! * **loaned** — a [`WriteClaim`] exists for it (exactly one);
//! * **published** — `pending[s]` has a bit for every group that has not
//!   handed it back yet; when the last bit clears, it is free again.
//!
//! Returns are collected from the consumers' return queues
//! ([`crate::protocol::return_queue`]) and each is checked against the group's claim
//! word, which must name the returning consumer: a bogus return (garbage, a
//! duplicate) is counted and ignored, never freeing a slot someone reads.

use crate::error::Corrupt;
use crate::protocol::return_queue::ReturnQueue;
use crate::protocol::slot::SlotState;
use crate::protocol::sync::{AtomicU64, Ordering};

/// Which free slot [`Producer::loan`](crate::Producer::loan) hands out when
/// several are free ([`ProducerBuilder::reuse`](crate::ProducerBuilder::reuse)).
///
/// The choice is about caches. Writing a line another core holds costs a
/// transfer or an invalidation of that line first, and writing one this
/// core still holds costs nothing extra. Which matters more depends on how
/// fast the frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotReuse {
    /// The slot handed back last (default): its lines, and those this
    /// producer wrote into it a moment ago, are the likeliest to be in the
    /// caches. Best when frames are written at memory speed (copies, a
    /// camera's buffer, raw frames), where a few slots in use stay cached.
    #[default]
    LastFreed,
    /// The slot handed back longest ago: the consumers read it the longest
    /// time ago, so their cores are the least likely to still hold its
    /// lines. Best when each frame is written slowly, by a decoder, and read
    /// whole on another core; it needs more slots than the producer keeps
    /// in flight to have a choice. Measured on framering's image decoding
    /// (2 cores, zune-jpeg, 8 slots): 1.02-1.03x the images per second
    /// (medians of 20 and 30 interleaved pairs), up to 1.16x in runs where
    /// the cores' cache-line transfers were slow.
    FirstFreed,
}

/// Proof that the producer loaned slot `slot` for writing: minted only by
/// [`Ledger::loan`], neither `Clone` nor `Copy`, consumed by
/// [`Ledger::publish`] or [`Ledger::discard`]. While it lives no group holds
/// the slot, so this process may write the frame:
/// [`crate::platform::segment::Segment::frame_mut`] relies on that.
#[derive(Debug)]
pub(crate) struct WriteClaim {
    slot: u32,
    /// The mapping the claim belongs to (its base address).
    origin: usize,
}

impl WriteClaim {
    /// The slot loaned.
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// Base address of the mapping this claim belongs to.
    pub(crate) fn origin(&self) -> usize {
        self.origin
    }
}

/// A return-queue cell: the group in bits 16–30, the slot in the low half,
/// and bit 31 ([`UNCONSUMED`]) set for a frame handed back unconsumed.
pub(crate) fn pack_return(group: u8, slot: u32) -> u32 {
    ((group as u32) << 16) | (slot & 0xffff)
}

/// Bit 31 of a return-queue cell: the consumer hands the frame back
/// *unconsumed* ([`crate::Frame::give_back`]), to be delivered again to its
/// group. Groups are at most 64, so the bit is never part of a group index.
pub(crate) const UNCONSUMED: u32 = 1 << 31;

/// A return-queue cell for a frame handed back unconsumed.
pub(crate) fn pack_give_back(group: u8, slot: u32) -> u32 {
    pack_return(group, slot) | UNCONSUMED
}

/// The inverse of [`pack_return`]: (group, slot), without the
/// [`UNCONSUMED`] flag (unchecked: callers validate both).
pub(crate) fn unpack_return(v: u32) -> (usize, usize) {
    (((v & !UNCONSUMED) >> 16) as usize, (v & 0xffff) as usize)
}

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Ledger {
    /// Free slots, in the order they were freed (the newest at the back).
    /// A `Vec`: the default loan pops its end; `FirstFreed` takes its
    /// front, a move of the few free slots' indices.
    free: Vec<u32>,
    /// Which end of `free` a loan takes.
    reuse: SlotReuse,
    /// Per slot: the groups that still hold it (bit per group).
    pending: Vec<u64>,
    /// Per slot: sequence number of the frame in it (drop-oldest order).
    seq: Vec<u64>,
    /// Base address of the mapping, stamped into every WriteClaim.
    origin: usize,
    /// Returns that named a slot the consumer did not hold.
    bogus: u64,
}

impl Ledger {
    /// All `slots` free; claims are stamped with `origin`.
    pub(crate) fn new(slots: usize, origin: usize) -> Self {
        Self {
            free: (0..slots as u32).rev().collect(),
            reuse: SlotReuse::LastFreed,
            pending: vec![0; slots],
            seq: vec![0; slots],
            origin,
            bogus: 0,
        }
    }

    /// Loans slots in the order `reuse` asks for (default: the most
    /// recently freed first).
    pub(crate) fn with_reuse(mut self, reuse: SlotReuse) -> Self {
        self.reuse = reuse;
        self
    }

    /// Loans a free slot (the most recently freed, or the least, as
    /// [`SlotReuse`] says), marking it `WRITING` in the producer's
    /// (informational) slot word.
    pub(crate) fn loan(&mut self, states: &[AtomicU64]) -> Option<WriteClaim> {
        let slot = match self.reuse {
            SlotReuse::LastFreed => self.free.pop()?,
            SlotReuse::FirstFreed if self.free.is_empty() => return None,
            SlotReuse::FirstFreed => self.free.remove(0),
        };
        states[slot as usize].store(SlotState::Writing.encode(), Ordering::Relaxed);
        Some(WriteClaim {
            slot,
            origin: self.origin,
        })
    }

    /// Takes a loaned slot back unpublished.
    pub(crate) fn discard(&mut self, claim: WriteClaim, states: &[AtomicU64]) {
        states[claim.slot as usize].store(SlotState::Free.encode(), Ordering::Relaxed);
        self.free.push(claim.slot);
    }

    /// Records that the loaned slot was published as frame `seq` to the
    /// groups in `groups` (none: it is free again). Returns its index.
    pub(crate) fn publish(
        &mut self,
        claim: WriteClaim,
        groups: u64,
        seq: u64,
        states: &[AtomicU64],
    ) -> u32 {
        let s = claim.slot;
        self.seq[s as usize] = seq;
        if groups == 0 {
            self.discard(claim, states);
        } else {
            states[s as usize].store(SlotState::Ready { pos: seq }.encode(), Ordering::Relaxed);
            self.pending[s as usize] = groups;
        }
        s
    }

    /// Group `g` no longer holds slot `s`; frees the slot if no group does.
    /// Returns whether it was freed.
    pub(crate) fn release(&mut self, g: usize, s: usize, states: &[AtomicU64]) -> bool {
        self.pending[s] &= !(1 << g);
        if self.pending[s] != 0 {
            return false;
        }
        // We own the slot again; nobody else writes this word.
        states[s].store(SlotState::Free.encode(), Ordering::Relaxed);
        self.free.push(s as u32);
        true
    }

    /// Whether group `g` still holds slot `s`.
    pub(crate) fn holds(&self, g: usize, s: usize) -> bool {
        self.pending[s] & (1 << g) != 0
    }

    /// The groups that hold slot `s`.
    pub(crate) fn holders(&self, s: usize) -> u64 {
        self.pending[s]
    }

    /// Sequence number of the frame last published in slot `s`.
    pub(crate) fn seq(&self, s: usize) -> u64 {
        self.seq[s]
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> usize {
        self.pending.len()
    }

    /// Slots in the free pool.
    pub(crate) fn free_len(&self) -> usize {
        self.free.len()
    }

    /// Returns that were ignored as bogus.
    #[allow(dead_code)]
    pub(crate) fn bogus(&self) -> u64 {
        self.bogus
    }

    /// Collects what consumer `c` handed back through `ret`. `claims(g)` is
    /// group `g`'s claim words (`None` for a group index out of range). Each
    /// return counts only if the group's claim word names `c` and the group
    /// still holds the slot; the claim word is then reset to `FREE` (the slot
    /// is ours until published again) and the group's hold released.
    ///
    /// A return flagged [`UNCONSUMED`] that passes the same checks is not
    /// released: `(group, slot)` is appended to `again`, for the caller to
    /// publish to the group once more (the claim word still names `c` until
    /// then, and the group keeps holding the slot). A second such return of
    /// the same slot before that is bogus.
    /// `head` is the producer's own copy of the queue's head. Returns how many
    /// returns were read; a cell that cannot be is an error.
    pub(crate) fn collect<'a>(
        &mut self,
        c: usize,
        ret: ReturnQueue<'_>,
        head: &mut u64,
        claims: impl Fn(usize) -> Option<&'a [AtomicU64]>,
        states: &[AtomicU64],
        again: &mut Vec<(usize, usize)>,
    ) -> Result<usize, Corrupt> {
        ret.drain(head, |v| {
            let (g, s) = unpack_return(v);
            let word = claims(g).and_then(|w| w.get(s));
            let unconsumed = v & UNCONSUMED != 0;
            match word {
                // Any second return of a slot given back in this drain (a
                // give-back or a consumed return) is bogus: the slot is to
                // be published again, it must not be freed as well.
                Some(_) if again.contains(&(g, s)) => {
                    self.bogus += 1;
                    tracing::warn!(
                        consumer = c,
                        group = g,
                        slot = s,
                        "ignoring a return of a slot already given back"
                    );
                }
                Some(w)
                    if matches!(
                        SlotState::decode(w.load(Ordering::Acquire)),
                        Some(SlotState::Reading { owner, .. }) if owner as usize == c
                    ) && self.holds(g, s) =>
                {
                    // Loom mutant `give-back-consumed`: treat a give-back as
                    // a consumed return (the frame is lost to its group).
                    if unconsumed && !crate::protocol::sync::mutant("give-back-consumed") {
                        // Not ours yet: the group still holds it, and the
                        // caller publishes it to the group again (a Release
                        // store of READY over READING(c)). The consumer's
                        // reads of the frame happened before its tail store,
                        // which `drain` acquired; the frame is not written.
                        again.push((g, s));
                        return;
                    }
                    // Acquire above: the consumer's reads of the frame (before
                    // its Release tail store, which `drain` acquired) happen
                    // before we write the slot again.
                    w.store(SlotState::Free.encode(), Ordering::Relaxed);
                    self.release(g, s, states);
                }
                _ => {
                    self.bogus += 1;
                    tracing::warn!(
                        consumer = c,
                        group = g,
                        slot = s,
                        "ignoring a bogus slot return"
                    );
                }
            }
        })
    }

    /// Whether group `g` holds slot `s` and its claim word (in `claims`,
    /// the group's) says consumer `c` is reading it: what a dead consumer of
    /// `g` took and never returned.
    pub(crate) fn read_by(&self, c: usize, g: usize, s: usize, claims: &[AtomicU64]) -> bool {
        // Loom mutant `recover-any-reader`: ignore who reads it (would
        // re-publish a frame a live consumer is reading).
        let any = crate::protocol::sync::mutant("recover-any-reader");
        // Loom mutant `recover-wrong-reader`: look for another consumer's
        // frames (the dead one's are then never re-published: lost).
        let c = if crate::protocol::sync::mutant("recover-wrong-reader") {
            c + 1
        } else {
            c
        };
        self.holds(g, s)
            && claims.get(s).is_some_and(|w| {
                matches!(SlotState::decode(w.load(Ordering::Acquire)),
                    Some(SlotState::Reading { owner, .. }) if any || owner as usize == c)
            })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::queue_ctrl::QueueCtrl;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn loans_lifo_and_frees_when_every_group_returned() {
        let states = words(3);
        let mut l = Ledger::new(3, 42);
        let a = l.loan(&states).unwrap();
        assert_eq!((a.slot(), a.origin()), (0, 42));
        let s = l.publish(a, 0b11, 7, &states);
        assert_eq!(l.holders(0), 0b11);
        assert!(!l.release(0, s as usize, &states));
        assert!(l.release(1, s as usize, &states));
        // The slot returned last is loaned first.
        assert_eq!(l.loan(&states).unwrap().slot(), 0);
    }

    /// All 4 slots loaned and published, handed back 2, 0, 3, 1: the
    /// slots of the next 4 loans.
    fn loans_after_returns(reuse: SlotReuse) -> Vec<u32> {
        let states = words(4);
        let mut l = Ledger::new(4, 0).with_reuse(reuse);
        let claims: Vec<_> = (0..4).map(|_| l.loan(&states).unwrap()).collect();
        assert!(l.loan(&states).is_none());
        for (seq, c) in claims.into_iter().enumerate() {
            l.publish(c, 1, seq as u64, &states);
        }
        for s in [2, 0, 3, 1] {
            assert!(l.release(0, s, &states));
        }
        (0..4).map(|_| l.loan(&states).unwrap().slot()).collect()
    }

    #[test]
    fn first_freed_loans_the_slot_handed_back_longest_ago() {
        assert_eq!(loans_after_returns(SlotReuse::FirstFreed), [2, 0, 3, 1]);
        // The default, for contrast: the last handed back first.
        assert_eq!(loans_after_returns(SlotReuse::LastFreed), [1, 3, 0, 2]);
    }

    #[test]
    fn a_return_counts_only_if_the_claim_word_names_the_consumer() {
        let states = words(2);
        let claims = words(2);
        let ctrl = QueueCtrl::new();
        let cells = words(2);
        let ret = ReturnQueue::new(&ctrl, &cells);
        let mut cur = ret.cursor();
        let ret_head = std::cell::Cell::new(0);
        let mut l = Ledger::new(2, 0);
        let a = l.loan(&states).unwrap();
        l.publish(a, 1, 0, &states);
        claims[0].store(
            SlotState::Reading { owner: 3, pos: 0 }.encode(),
            Ordering::Relaxed,
        );
        // Consumer `c`'s return queue, collected into `l` (group 0 only).
        let collect = |l: &mut Ledger, c: usize, again: &mut Vec<(usize, usize)>| {
            let mut head = ret_head.get();
            let n = l.collect(
                c,
                ret,
                &mut head,
                |g| (g == 0).then_some(&claims[..]),
                &states,
                again,
            );
            ret_head.set(head);
            n
        };
        // Consumer 2 returns a slot consumer 3 reads: ignored.
        ret.push(pack_return(0, 0), &mut cur).unwrap();
        let mut again = vec![];
        assert_eq!(collect(&mut l, 2, &mut again), Ok(1));
        assert_eq!((l.bogus(), l.free_len()), (1, 1));
        // Consumer 3 gives it back unconsumed (twice: the second is bogus):
        // still held, to be published again.
        ret.push(pack_give_back(0, 0), &mut cur).unwrap();
        ret.push(pack_give_back(0, 0), &mut cur).unwrap();
        assert_eq!(collect(&mut l, 3, &mut again), Ok(2));
        assert_eq!(again, vec![(0, 0)]);
        assert_eq!((l.bogus(), l.free_len(), l.holders(0)), (2, 1, 1));
        // A give-back naming a group out of range is bogus too.
        ret.push(pack_give_back(9, 0), &mut cur).unwrap();
        again.clear();
        assert_eq!(collect(&mut l, 3, &mut again), Ok(1));
        assert!(again.is_empty());
        assert_eq!(l.bogus(), 3);
        // Consumer 3 returns it: freed.
        ret.push(pack_return(0, 0), &mut cur).unwrap();
        assert_eq!(collect(&mut l, 3, &mut again), Ok(1));
        assert_eq!((l.bogus(), l.free_len()), (3, 2));
    }

    #[test]
    fn the_unconsumed_flag_is_never_part_of_a_group() {
        let v = pack_give_back(63, 4095);
        assert_eq!(unpack_return(v), (63, 4095));
        assert_ne!(v & UNCONSUMED, 0);
        assert_eq!(pack_return(63, 4095) & UNCONSUMED, 0);
    }
}
