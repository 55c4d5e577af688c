//! The one place the ring core takes its atomics from.
//!
//! Under `--cfg loom` the model checker's atomics stand in for `std`'s, so the
//! queue and event algorithms in [`crate::queue`] and [`crate::event`] are
//! checked exactly as they are compiled for production (the approach of
//! iceoryx2 and crossbeam). Code outside the ring core never uses this module.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

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
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
