//! The consumer-to-producer queue of returned slots: one per consumer.
//!
//! A single-producer single-consumer ring of 32-bit cells with 64-bit
//! positions (iceoryx2's `safely_overflowing_index_queue` idea without the
//! overflow). The consumer writes a cell (Relaxed) and then its tail
//! (Release, which also orders its reads of the frame before the producer's
//! next writes to it); the producer reads the tail (Acquire), the cells, and
//! stores its head (Release).
//!
//! Crash safety does not depend on this queue: a slot stays
//! `READING(consumer)` in its claim word ([`crate::protocol::slot`]) until the producer
//! collects it, so a consumer that dies before its tail store has not lost
//! the slot — recovery finds it by its owner.
//!
//! Only one thread of a consumer process may push at a time (the consumer
//! serialises its pushes with a lock, since frames may be returned from
//! worker threads).

use crate::error::Corrupt;
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::sync::{AtomicU32, Ordering};

/// A consumer's return queue. See the [module documentation](self).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReturnQueue<'a> {
    ctrl: &'a QueueCtrl,
    cells: &'a [AtomicU32],
    mask: u64,
}

impl<'a> ReturnQueue<'a> {
    /// Binds the queue. Panics unless `cells.len()` is a power of two (a
    /// local, validated value, never read from the segment).
    pub(crate) fn new(ctrl: &'a QueueCtrl, cells: &'a [AtomicU32]) -> Self {
        assert!(cells.len().is_power_of_two());
        Self {
            ctrl,
            cells,
            mask: cells.len() as u64 - 1,
        }
    }

    /// [`push_seen`](Self::push_seen) with no head seen before.
    #[cfg(any(test, loom))]
    pub(crate) fn push(&self, value: u32) -> Result<(), Corrupt> {
        self.push_seen(value, &mut 0)
    }

    /// Consumer side: hands `value` back to the producer. Call only after the
    /// last read of the frame, and from one thread at a time. `head_seen` is
    /// the owner's last read of the head: it is read again only when the
    /// queue looks full by it ([`QueueCtrl::tail_if_below`]).
    pub(crate) fn push_seen(&self, value: u32, head_seen: &mut u64) -> Result<(), Corrupt> {
        // Only the owning consumer writes the tail. Acquire (when the head
        // is read): the producer's reads of old cells happen before we reuse
        // them. A consumer holds at most `slots` frames and the queue has
        // room for all of them, so "full" only happens with garbage.
        let t = self
            .ctrl
            .tail_if_below(self.cells.len() as u64, head_seen)
            .ok_or(Corrupt("return queue full"))?;
        self.cells[(t & self.mask) as usize].store(value, Ordering::Relaxed);
        // Release: publishes the cell, and orders every read this consumer
        // made of the frame before the producer's next writes to it.
        self.ctrl.tail.store(t + 1, Ordering::Release);
        Ok(())
    }

    /// Producer side: passes every returned value to `f`, oldest first.
    /// Values are unchecked here: `f` must validate them.
    pub(crate) fn drain(&self, mut f: impl FnMut(u32)) -> Result<usize, Corrupt> {
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

    /// Whether nothing waits to be collected.
    pub(crate) fn is_empty(&self) -> bool {
        self.ctrl.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
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
