//! The head and tail of an index queue in shared memory.
//!
//! Both queues of the ring ([`crate::protocol::ready_queue`], [`crate::protocol::return_queue`])
//! keep 64-bit positions that never wrap in practice (2⁶⁴ frames), each on
//! its own pair of cache lines so that the writer of one never invalidates
//! the line of the other.

use crate::protocol::sync::{AtomicU64, Ordering, Padded};

/// Head and tail of a queue, each on its own pair of cache lines.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct QueueCtrl {
    /// Next position to be written; written only by the queue's producer.
    pub(crate) tail: Padded<AtomicU64>,
    /// Next position to be read.
    pub(crate) head: Padded<AtomicU64>,
}

impl QueueCtrl {
    /// An empty queue (the all-zero bytes of a new segment are one too).
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Self {
        Self {
            tail: Padded(AtomicU64::new(0)),
            head: Padded(AtomicU64::new(0)),
        }
    }

    /// For the one process that writes the tail: the tail, if fewer than
    /// `limit` entries are queued; `None` if `limit` or more are.
    ///
    /// `seen` is a head this process read before. Heads only move forward,
    /// so it is a lower bound, and `tail - seen < limit` settles the answer
    /// without reading the head — a line the other side writes on every
    /// entry it takes, which the tail's writer would otherwise pull over
    /// and hand back on every entry it adds (the cache-line ping-pong that
    /// rtrb's and crossbeam's SPSC rings avoid the same way). Only when the
    /// bound is not enough is the head read again (Acquire: whatever the
    /// readers did before moving it, such as reading the cells now reused,
    /// happens before our next writes) and `seen` updated. A `seen` beyond
    /// the tail (garbage) also leads to a fresh read.
    #[inline]
    pub(crate) fn tail_if_below(&self, limit: u64, seen: &mut u64) -> Option<u64> {
        // Relaxed: only the caller writes the tail.
        let t = self.tail.load(Ordering::Relaxed);
        self.below_from(t, limit, seen).then_some(t)
    }

    /// Whether fewer than `limit` entries lie between the head and `tail`
    /// (the tail's writer's own, wherever it keeps it), by the bound `seen`
    /// first and the head only if the bound is not enough (as in
    /// [`tail_if_below`](Self::tail_if_below)).
    #[inline]
    pub(crate) fn below_from(&self, tail: u64, limit: u64, seen: &mut u64) -> bool {
        if tail.wrapping_sub(*seen) < limit {
            return true;
        }
        *seen = self.head.load(Ordering::Acquire);
        tail.wrapping_sub(*seen) < limit
    }

    /// Entries between head and tail, as seen now.
    pub(crate) fn len(&self) -> u64 {
        let t = self.tail.load(Ordering::Acquire);
        let h = self.head.load(Ordering::Acquire);
        t.saturating_sub(h)
    }

    /// Whether [`len`](Self::len) is zero.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_read_only_when_the_bound_it_gave_is_not_enough() {
        let q = QueueCtrl::new();
        let mut seen = 0;
        q.tail.store(3, Ordering::Relaxed);
        q.head.store(2, Ordering::Relaxed);
        // 3 - 0 < 4: room, by the old bound alone (the head is not read).
        assert_eq!(q.tail_if_below(4, &mut seen), Some(3));
        assert_eq!(seen, 0);
        // 3 - 0 >= 2: the head is read (2), and 3 - 2 < 2.
        assert_eq!(q.tail_if_below(2, &mut seen), Some(3));
        assert_eq!(seen, 2);
        // Full by the real head too.
        q.tail.store(6, Ordering::Relaxed);
        assert_eq!(q.tail_if_below(4, &mut seen), None);
        assert_eq!(seen, 2);
        // A bound beyond the tail (garbage, or a reset queue) is not trusted.
        let mut ahead = 100;
        assert_eq!(q.tail_if_below(8, &mut ahead), Some(6));
        assert_eq!(ahead, 2);
    }
}
