//! The clocks the ring's timestamps are in: `FrameInfo::publish_ns` is
//! CLOCK_MONOTONIC (comparable between processes of one host, unlike
//! `std::time::Instant`), `FrameInfo::capture_ns` CLOCK_REALTIME (comparable
//! across hosts).

use nix::time::{clock_gettime, ClockId};

fn now_ns(clock: ClockId) -> u64 {
    let ts = clock_gettime(clock).expect("CLOCK_MONOTONIC and CLOCK_REALTIME exist on Linux");
    (ts.tv_sec() as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec() as u64)
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call).
pub fn monotonic_ns() -> u64 {
    now_ns(ClockId::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch (a vDSO call).
pub fn realtime_ns() -> u64 {
    now_ns(ClockId::CLOCK_REALTIME)
}
