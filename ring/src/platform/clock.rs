//! The clocks every process of a ring agrees on.
//!
//! Read with `clock_gettime(2)` straight from libc (a vDSO call, no system
//! call, inlined into the hot paths that stamp every frame).

/// Reads clock `id` in nanoseconds.
#[inline]
fn read_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; clock_gettime writes nothing else. The clocks used here exist on
    // every Linux, so it cannot fail (EINVAL/EFAULT only); on failure `ts`
    // stays zero, which callers treat as "long ago".
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one host
/// (unlike `std::time::Instant`, whose origin is private).
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the same clock as
/// [`monotonic_ns`], at the resolution of the kernel's tick (1–4 ms) and up
/// to one tick behind, read without the time stamp counter. For signs of life
/// that are compared at a resolution of a quarter second.
#[inline]
pub(crate) fn monotonic_coarse_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch: wall-clock time, for
/// capture timestamps that must mean something on another host (see
/// [`crate::FrameInfo::capture_ns`]).
#[inline]
pub(crate) fn realtime_ns() -> u64 {
    read_ns(libc::CLOCK_REALTIME)
}
