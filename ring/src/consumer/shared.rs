//! What a consumer shares with its frames and its canceller.

use crate::error::Corrupt;
use crate::platform::segment::Segment;
use crate::platform::slot_maps::SlotMaps;
use crate::protocol::ledger::{pack_give_back, pack_return};
use crate::protocol::ready_queue::ReadClaim;
use crate::protocol::return_queue::ReturnCursor;
use crate::protocol::roster::{self};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a consumer shares with its frames.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(super) seg: Segment,
    pub(super) index: u8,
    pub(super) group_name: String,
    /// The group index once admitted; `NOT_ADMITTED` before.
    pub(super) admitted: AtomicU32,
    /// Serialises pushes into the single-producer return queue (frames may
    /// be handed back from several threads), and holds the consumer's side
    /// of it: its tail, and the producer's head as last read.
    pub(super) returns: Mutex<ReturnCursor>,
    /// Whether a frame was handed back unconsumed.
    pub(super) gave_back: std::sync::atomic::AtomicBool,
    /// A return that could not be pushed (the return queue is corrupt):
    /// reported by the next `take`, never forgotten.
    pub(super) return_failed: Mutex<Option<Corrupt>>,
    /// Whether `return_failed` holds an error: what every `take` looks at,
    /// without taking the lock (two locked instructions per frame).
    pub(super) any_return_failed: std::sync::atomic::AtomicBool,
    /// The process that attached. A child forked while frames were held
    /// inherits copies of them; dropping those copies there must not hand
    /// back the parent's slots, nor leave the parent's table entry.
    pub(super) creator_pid: u32,
    /// The consumer's own mapping of each slot, if it is detachable.
    pub(super) slot_maps: Option<SlotMaps>,
}

pub(super) const NOT_ADMITTED: u32 = u32::MAX;

impl Shared {
    /// Hands a claimed slot back to the producer: consumed, or (`consumed`
    /// false) to be delivered again to the group.
    pub(super) fn release(&self, group: u8, claim: ReadClaim, consumed: bool) {
        if !self.in_creator() {
            return;
        }
        let seg = &self.seg;
        let cell = if consumed {
            pack_return(group, claim.slot())
        } else {
            pack_give_back(group, claim.slot())
        };
        let pushed = {
            let mut cursor = self.returns.lock();
            seg.return_queue(self.index as usize)
                .push(cell, &mut cursor)
        };
        if let Err(e) = pushed {
            // Only garbage in the segment gets here; the slot stays marked as
            // ours. The next `take` reports it (the consumer cannot go on).
            tracing::error!(ring = seg.name(), error = e.0, "could not return a slot");
            self.return_failed.lock().get_or_insert(e);
            // Release: the error stored above is seen by whoever sees this.
            self.any_return_failed.store(true, Ordering::Release);
            return;
        }
        if !consumed {
            self.gave_back.store(true, Ordering::Relaxed);
        }
        // Only a waiting producer needs a wake-up; a busy one finds the
        // return when it next collects (no shared counter to bump).
        seg.header().free_event.notify_if_waiting();
    }
}

impl Shared {
    /// Whether this is the process that attached (not a forked child).
    pub(super) fn in_creator(&self) -> bool {
        crate::platform::signals::process_id() == self.creator_pid
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.in_creator() {
            // A forked child's copy: the entry and its frames are the
            // parent's.
            return;
        }
        // The consumer and every frame are gone, so every slot was handed
        // back. The producer frees the entry once it has collected them.
        let h = self.seg.header();
        roster::leave(
            &self.seg.consumers()[self.index as usize],
            &h.roster,
            &h.free_event,
            self.gave_back.load(Ordering::Relaxed),
        );
    }
}
