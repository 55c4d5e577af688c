//! The consumer-to-producer queue of returned slots: one per consumer.
//!
//! A single-producer single-consumer ring of 64-bit cells, each stamped with
//! the position it was written for (the per-cell stamps of Vyukov's bounded
//! queue, as in `crossbeam-queue`'s `ArrayQueue`, with one writer and one
//! reader): a cell holds `((pos + 1) mod 2³²) << 32 | value`. The consumer
//! writes the cell (Release, which also orders its reads of the frame before
//! the producer's next writes to it) and nothing else: its tail is its own,
//! kept in its process. The producer reads the cell at its head (Acquire) and
//! knows it is new by its stamp, then stores its head (Release).
//!
//! So a hand-back moves one cache line from the consumer to the producer,
//! where a queue with a shared tail moves two (the cell and the tail) — and
//! a consumer cannot make the producer read a position that cannot be: the
//! only positions the producer reads are its own.
//!
//! Crash safety does not depend on this queue: a slot stays
//! `READING(consumer)` in its claim word ([`crate::protocol::slot`]) until the producer
//! collects it, so a consumer that dies before its cell store has not lost
//! the slot — recovery finds it by its owner. A cell is one 64-bit store: it
//! is either there or not.
//!
//! Only one thread of a consumer process may push at a time (the consumer
//! serialises its pushes with a lock, since frames may be returned from
//! worker threads), with the [`ReturnCursor`] that lock guards.

use crate::error::Corrupt;
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::sync::{AtomicU64, Ordering};

/// A consumer's return queue. See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReturnQueue<'a> {
    /// Only its `head` is used (written by the producer); the tail is the
    /// consumer's own ([`ReturnCursor`]).
    ctrl: &'a QueueCtrl,
    cells: &'a [AtomicU64],
    mask: u64,
}

/// The consumer's side of its return queue, in its own memory: the next
/// position to write, and the producer's head as last read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReturnCursor {
    tail: u64,
    head_seen: u64,
}

/// The cell for `value` at position `pos`.
fn stamped(pos: u64, value: u32) -> u64 {
    (pos.wrapping_add(1) & 0xffff_ffff) << 32 | u64::from(value)
}

/// Whether `cell` was written for position `pos`.
fn is_for(cell: u64, pos: u64) -> bool {
    cell >> 32 == pos.wrapping_add(1) & 0xffff_ffff
}

impl<'a> ReturnQueue<'a> {
    /// Binds the queue. Panics unless `cells.len()` is a power of two (a
    /// local, validated value, never read from the segment).
    pub(crate) fn new(ctrl: &'a QueueCtrl, cells: &'a [AtomicU64]) -> Self {
        assert!(cells.len().is_power_of_two());
        Self {
            ctrl,
            cells,
            mask: cells.len() as u64 - 1,
        }
    }

    /// Consumer side, once when it takes over the queue (its table entry):
    /// the cursor that writes after everything the producer collected.
    /// The producer collects a departed consumer's returns before it frees
    /// the entry, so nothing stamped lies beyond the head.
    pub(crate) fn cursor(&self) -> ReturnCursor {
        // Acquire: the producer's reads of the old cells happen before we
        // write them again.
        let head = self.ctrl.head.load(Ordering::Acquire);
        ReturnCursor {
            tail: head,
            head_seen: head,
        }
    }

    /// Consumer side: hands `value` back to the producer. Call only after
    /// the last read of the frame, and from one thread at a time, with the
    /// queue's cursor. The producer's head is read only when the queue looks
    /// full by the head last seen ([`QueueCtrl::below_from`]'s bound,
    /// kept here in the cursor).
    pub(crate) fn push(&self, value: u32, cur: &mut ReturnCursor) -> Result<(), Corrupt> {
        let t = cur.tail;
        // Acquire (when the head is read): the producer's reads of old cells
        // happen before we reuse them. A consumer holds at most `slots`
        // frames and the queue has room for all of them, so "full" (or a
        // head beyond our tail) only happens with garbage.
        if !self
            .ctrl
            .below_from(t, self.cells.len() as u64, &mut cur.head_seen)
        {
            return Err(Corrupt("return queue full"));
        }
        // Release (loom mutant `return-cell-relaxed`: Relaxed): publishes
        // the value, and orders every read this consumer made of the frame
        // before the producer's next writes to it.
        let order = if crate::protocol::sync::mutant("return-cell-relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.cells[(t & self.mask) as usize].store(stamped(t, value), order);
        cur.tail = t + 1;
        Ok(())
    }

    /// Producer side: passes every returned value to `f`, oldest first, and
    /// advances `head` — the producer's own copy of the queue's head, the
    /// only position it reads: what a consumer (or anyone) writes into the
    /// shared head cannot move it. The shared head is stored after (for the
    /// consumer's full check). Values are unchecked here: `f` must validate
    /// them.
    ///
    /// The cell at a position is stamped for it (a return), for the
    /// position a lap before (not written yet), or zero (never written, in
    /// the first lap). Anything else is garbage — a consumer writing where
    /// it must not, or a scribble — and an error: the consumer's returns
    /// could not be told apart any more.
    pub(crate) fn drain(&self, head: &mut u64, mut f: impl FnMut(u32)) -> Result<usize, Corrupt> {
        let h = *head;
        let cap = self.cells.len() as u64;
        let mut p = h;
        // At most a lap: the consumer cannot be a lap ahead of our head.
        while p.wrapping_sub(h) < cap {
            // Acquire: pairs with the consumer's Release cell store.
            let cell = self.cells[(p & self.mask) as usize].load(Ordering::Acquire);
            if !is_for(cell, p) {
                if !self.unwritten(cell, p) {
                    return Err(Corrupt("return queue cell stamped for another position"));
                }
                break;
            }
            f(cell as u32);
            p = p.wrapping_add(1);
        }
        if p != h {
            *head = p;
            // Release: our cell reads happen before the consumer reuses them.
            self.ctrl.head.store(p, Ordering::Release);
        }
        Ok(p.wrapping_sub(h) as usize)
    }

    /// Whether `cell`, at position `pos`, is one the consumer has not
    /// written for it yet: stamped a lap before, or never written.
    fn unwritten(&self, cell: u64, pos: u64) -> bool {
        let cap = self.cells.len() as u64;
        match pos.checked_sub(cap) {
            Some(before) => is_for(cell, before),
            None => cell == 0,
        }
    }

    /// Producer side: whether nothing waits to be collected at `head` (the
    /// producer's copy): the cell there is not stamped for it. One line of
    /// the consumer's. Garbage counts as something ([`drain`](Self::drain)
    /// then reports it).
    pub(crate) fn is_empty_at(&self, head: u64) -> bool {
        let cell = self.cells[(head & self.mask) as usize].load(Ordering::Relaxed);
        self.unwritten(cell, head)
    }

    /// Whether the producer has collected everything (its head as it last
    /// stored it): for a consumer waiting for its group to drain.
    pub(crate) fn is_collected(&self) -> bool {
        let h = self.ctrl.head.load(Ordering::Acquire);
        !is_for(
            self.cells[(h & self.mask) as usize].load(Ordering::Acquire),
            h,
        )
    }

    /// The values waiting to be collected, oldest first, without taking
    /// them (status displays).
    pub(crate) fn pending(&self) -> impl Iterator<Item = u32> + '_ {
        let h = self.ctrl.head.load(Ordering::Acquire);
        (h..h.wrapping_add(self.cells.len() as u64))
            .map(move |p| {
                (
                    p,
                    self.cells[(p & self.mask) as usize].load(Ordering::Acquire),
                )
            })
            .take_while(|&(p, cell)| is_for(cell, p))
            .map(|(_, cell)| cell as u32)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn queue(n: usize) -> (QueueCtrl, Vec<AtomicU64>) {
        (
            QueueCtrl::new(),
            (0..n).map(|_| AtomicU64::new(0)).collect(),
        )
    }

    #[test]
    fn round_trip_full_and_laps() {
        let (ctrl, cells) = queue(4);
        let r = ReturnQueue::new(&ctrl, &cells);
        let mut cur = r.cursor();
        let mut head = 0;
        for round in 0..5 {
            assert!(r.is_empty_at(head) && r.is_collected());
            for s in 0..4 {
                r.push(s + round, &mut cur).unwrap();
            }
            assert!(!r.is_empty_at(head) && !r.is_collected());
            assert!(r.push(0, &mut cur).is_err(), "full");
            assert_eq!(r.pending().count(), 4);
            let mut got = vec![];
            assert_eq!(r.drain(&mut head, |s| got.push(s)), Ok(4));
            assert_eq!(got, (round..round + 4).collect::<Vec<_>>());
            assert_eq!(r.drain(&mut head, |_| {}), Ok(0));
        }
        assert_eq!((head, ctrl.head.load(Ordering::Relaxed)), (20, 20));
    }

    #[test]
    fn garbage_is_an_error_and_the_shared_head_is_not_read() {
        let (ctrl, cells) = queue(4);
        let r = ReturnQueue::new(&ctrl, &cells);
        let mut head = 0;
        // A scribbled shared head: the producer reads its own.
        ctrl.head.store(1000, Ordering::Relaxed);
        assert!(r.is_empty_at(head));
        assert_eq!(r.drain(&mut head, |_| panic!("nothing to collect")), Ok(0));
        // A cell stamped for the head is a return (its value is checked by
        // the caller); the drain stops at the first cell not written yet.
        cells[0].store(stamped(0, 9), Ordering::Relaxed);
        let mut got = vec![];
        assert_eq!(r.drain(&mut head, |s| got.push(s)), Ok(1));
        assert_eq!((got.as_slice(), head), ([9].as_slice(), 1));
        // A cell stamped for any other position than its own or the one a
        // lap before is garbage.
        cells[1].store(stamped(7, 3), Ordering::Relaxed);
        assert!(!r.is_empty_at(head), "garbage is looked at");
        assert!(r.drain(&mut head, |_| {}).is_err());
        assert_eq!(head, 1);
        cells[1].store(u64::MAX, Ordering::Relaxed);
        assert!(r.drain(&mut head, |_| {}).is_err());
        // Every cell stamped for its position: one lap at most.
        for p in 1..5u64 {
            cells[(p & 3) as usize].store(stamped(p, p as u32), Ordering::Relaxed);
        }
        assert_eq!(r.drain(&mut head, |_| {}), Ok(4));
        assert_eq!(head, 5);
        // Cell 1 holds position 1's stamp, a lap before the head (5).
        assert!(r.is_empty_at(head));
    }

    #[test]
    fn a_new_owner_writes_after_what_was_collected() {
        let (ctrl, cells) = queue(4);
        let r = ReturnQueue::new(&ctrl, &cells);
        let mut old = r.cursor();
        for s in 0..3 {
            r.push(s, &mut old).unwrap();
        }
        let mut head = 0;
        assert_eq!(r.drain(&mut head, |_| {}), Ok(3));
        // The entry's next consumer starts at the head.
        let mut new = r.cursor();
        r.push(42, &mut new).unwrap();
        let mut got = vec![];
        r.drain(&mut head, |s| got.push(s)).unwrap();
        assert_eq!(got, [42]);
        // A head beyond the cursor (garbage) is refused, not wrapped.
        ctrl.head.store(1000, Ordering::Relaxed);
        let mut stale = ReturnCursor {
            tail: 3,
            head_seen: 0,
        };
        assert!(r.push(0, &mut stale).is_ok(), "room by the head last seen");
        let mut full = ReturnCursor {
            tail: 8,
            head_seen: 0,
        };
        assert!(r.push(0, &mut full).is_err());
    }
}
