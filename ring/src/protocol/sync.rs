//! The one place the ring core takes its atomics from.
//!
//! Under `--cfg loom` the model checker's atomics stand in for `std`'s, so the
//! queue and event algorithms in [`crate::queue`] and [`crate::protocol::event`] are
//! checked exactly as they are compiled for production (the approach of
//! iceoryx2 and crossbeam). Every module that touches shared memory takes its
//! atomics from here.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Loom builds only: whether the deliberately broken variant `name` of a
/// protocol step is switched on (`FRAMERING_LOOM_MUTANT=name`), so that
/// `ring/loom-mutants.sh` can show each model failing on it. Outside loom
/// builds this is the constant `false` and the broken code compiles away.
#[cfg(loom)]
pub(crate) fn mutant(name: &str) -> bool {
    std::env::var("FRAMERING_LOOM_MUTANT").is_ok_and(|m| m == name)
}

/// See the loom version: always `false` in real builds.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn mutant(_name: &str) -> bool {
    false
}

/// A busy-wait hint: `spin_loop` on real hardware, a scheduling point under loom
/// (so that a model never spins forever).
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives the CPU to another runnable thread, if any (`sched_yield`); a
/// scheduling point under loom.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Pads and aligns a value to 128 bytes (two cache lines, as crossbeam's
/// `CachePadded` does on x86_64 because of the adjacent-line prefetcher), so
/// that words written by different processes never share a line.
///
/// `repr(C)` keeps the layout of the shared segment exactly as documented.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
