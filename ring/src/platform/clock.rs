//! The clock every process of a ring agrees on.

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes on one host
/// (unlike `std::time::Instant`, whose origin is private). A vDSO call, no
/// system call.
pub(crate) fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available on Linux");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch: wall-clock time, for
/// capture timestamps that must mean something on another host (see
/// [`crate::FrameInfo::capture_ns`]). A vDSO call, no system call.
pub(crate) fn realtime_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .expect("CLOCK_REALTIME is always available on Linux");
    (ts.tv_sec() as u64).saturating_mul(1_000_000_000) + ts.tv_nsec() as u64
}
