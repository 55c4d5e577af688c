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
