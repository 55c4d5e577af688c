//! Liveness that crosses PID namespaces: open-file-description locks.
//!
//! A pid means nothing to a process in another PID namespace (a container
//! sharing /dev/shm, `unshare -p`), and `/proc` there shows other
//! processes, or none. What every process sharing the segment can test is a
//! lock the kernel holds for a live process and drops when it dies: an
//! open-file-description lock (`fcntl(F_OFD_SETLK)`, Linux ≥ 3.15) on one
//! byte of the segment file. The producer holds byte [`PRODUCER_BYTE`];
//! consumer table entry `c` is held through byte [`consumer_byte`]`(c)`.
//! The locks are advisory and cover bytes nobody reads through them (the
//! frames are reached through the mapping), and they belong to the open file
//! description of the holder's [`crate::platform::segment::Segment`], so they live
//! exactly as long as its mapping's file: released at exit, however the
//! process ends. Tested with `F_OFD_GETLK`, which needs no write access:
//! read-only inspection tools can test them too.
//!
//! A consumer locks an entry's byte *before* claiming the entry (the CAS on
//! its owner word), so an owner word is never visible without its lock; the
//! pid recorded beside it is for display only. Where the file system does
//! not support these locks, every call reports [`Lock::Unsupported`] and
//! callers fall back to pid + start-time checks ([`crate::platform::process`]).

pub(crate) use crate::platform::file_lock::{probe, try_lock, unlock, Lock};
use crate::platform::process::ProcessId;
use crate::platform::segment::Segment;
use crate::protocol::layout::FLAG_LIVENESS_LOCK;
use crate::protocol::sync::Ordering;

/// How often an idle waiter wakes to check that its peers are alive.
pub(crate) const PEER_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The byte the producer holds.
pub(crate) const PRODUCER_BYTE: u64 = crate::protocol::layout::PRODUCER_LOCK_BYTE;

/// The byte the owner of consumer table entry `c` holds.
pub(crate) const fn consumer_byte(c: usize) -> u64 {
    1 + c as u64
}

/// Whether the producer of `seg` is alive: its lock is held, or, where
/// locks do not work, the pid and start time in the header name a running
/// process.
pub(crate) fn producer_alive(seg: &Segment) -> bool {
    let locked = seg.header().flags.load(Ordering::Acquire) & FLAG_LIVENESS_LOCK != 0;
    match probe(seg.file(), PRODUCER_BYTE) {
        Lock::Held => true,
        // Nobody holds it: dead, if it ever held it.
        Lock::Other if locked => false,
        Lock::Other | Lock::Unsupported => {
            let h = seg.header();
            let p = ProcessId {
                pid: h.producer_pid.load(Ordering::Acquire),
                start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
            };
            p.pid != 0 && p.is_alive()
        }
    }
}

/// Whether the owner of consumer entry `c` (owner word `owner`, not 0) is
/// alive, by its lock or, where locks do not work, its pid.
pub(crate) fn consumer_alive(seg: &Segment, c: usize, owner: u64) -> bool {
    // Relaxed: written before the owner CAS we acquired when reading `owner`.
    let locked = seg.consumers()[c].liveness_lock.load(Ordering::Relaxed) == 1;
    match probe(seg.file(), consumer_byte(c)) {
        Lock::Held => true,
        // Nobody holds it: dead, if its owner took it.
        Lock::Other if locked => false,
        Lock::Other | Lock::Unsupported => ProcessId::owner_word_alive(owner),
    }
}
