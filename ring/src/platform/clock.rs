//! The clocks every process of a ring agrees on.
//!
//! Also [`SlicedDeadline`]: a timeout waited in slices, for the waits of
//! `take` and `loan`.
//!
//! Read with `clock_gettime(2)` straight from libc (a vDSO call, no system
//! call, inlined into the hot paths that stamp every frame).

use std::time::{Duration, Instant};

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

/// CLOCK_REALTIME derived from a CLOCK_MONOTONIC reading the caller has
/// already taken, with the offset between the two clocks read again at most
/// every [`WallClock::RESYNC_NS`]: the producer stamps each frame with both
/// clocks, and a second `clock_gettime` per frame was a tenth of a small
/// frame's hand-off. Between two readings the result follows the monotonic
/// clock: an NTP slew (at most 500 ppm) moves it by at most 10 µs, a step of
/// the wall clock shows after at most 20 ms.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WallClock {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC at the last reading, in ns.
    offset: u64,
    /// The monotonic reading it was taken with; 0: never.
    synced_at: u64,
}

impl WallClock {
    /// How often the offset is read again.
    pub(crate) const RESYNC_NS: u64 = 20_000_000;

    /// CLOCK_REALTIME in ns at the moment `mono_ns` (a CLOCK_MONOTONIC
    /// reading just taken) was read.
    #[inline]
    pub(crate) fn realtime_at(&mut self, mono_ns: u64) -> u64 {
        if self.synced_at == 0 || mono_ns.wrapping_sub(self.synced_at) >= Self::RESYNC_NS {
            self.offset = realtime_ns().wrapping_sub(mono_ns);
            self.synced_at = mono_ns.max(1);
        }
        mono_ns.wrapping_add(self.offset)
    }
}

/// A timeout waited in slices (so that the waiter can look at its peers in
/// between), with the clock read only once a first slice has run out: a wait
/// that ends within its first slice — a frame or a slot that comes at once,
/// the common case — costs no clock read. The deadline then counts from the
/// end of that slice, minus the slice: a little later than `timeout` after
/// the start, never earlier. `Duration::MAX` (or any timeout past a
/// century) means no deadline. A waiter woken again and again before any
/// slice runs out (by a peer, or by words scribbled in the segment) fixes
/// the deadline after [`UNCLOCKED_SLICES`] slices all the same, so its wait
/// still ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlicedDeadline {
    timeout: Duration,
    deadline: Option<Instant>,
    /// Slices handed out before the deadline was fixed.
    unclocked: u32,
}

/// Slices a [`SlicedDeadline`] hands out before it reads the clock even
/// though none ran out.
pub(crate) const UNCLOCKED_SLICES: u32 = 64;

impl SlicedDeadline {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: None,
            unclocked: 0,
        }
    }

    /// The next slice to wait, at most `max`; `None` once the deadline has
    /// passed.
    pub(crate) fn next_slice(&mut self, max: Duration) -> Option<Duration> {
        if self.deadline.is_none() {
            self.unclocked += 1;
            if self.unclocked > UNCLOCKED_SLICES {
                self.ran_out(Duration::ZERO);
            }
        }
        match self.deadline {
            None => Some(max.min(self.timeout)),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| max.min(left))
            }
        }
    }

    /// Says that a slice of length `slice` ran out; the first time, the
    /// deadline is fixed.
    pub(crate) fn ran_out(&mut self, slice: Duration) {
        if self.deadline.is_none() {
            const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
            let now = Instant::now();
            let rest = self.timeout.saturating_sub(slice).min(CENTURY);
            self.deadline = Some(now.checked_add(rest).unwrap_or(now));
        }
    }

    /// Whether the deadline (fixed by [`ran_out`](Self::ran_out)) has passed.
    pub(crate) fn passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_sliced_deadline_woken_again_and_again_still_ends() {
        let slice = Duration::from_millis(10);
        let mut w = SlicedDeadline::new(Duration::from_millis(20));
        // Woken before every slice ran out: no deadline yet...
        for _ in 0..UNCLOCKED_SLICES {
            assert_eq!(w.next_slice(slice), Some(slice));
        }
        assert!(!w.passed());
        // ... until the clock is read all the same.
        assert!(w.next_slice(slice).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.passed());
        assert_eq!(w.next_slice(slice), None);
    }

    #[test]
    fn a_sliced_deadline_counts_from_its_first_slice_and_max_is_none() {
        let slice = Duration::from_millis(10);
        let mut w = SlicedDeadline::new(Duration::from_millis(25));
        assert_eq!(w.next_slice(slice), Some(slice));
        assert!(!w.passed(), "no deadline before a slice ran out");
        w.ran_out(slice);
        let left = w.next_slice(slice).unwrap();
        assert!(left <= slice);
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.passed());
        assert_eq!(w.next_slice(slice), None);
        // A zero timeout: one zero slice, then over.
        let mut z = SlicedDeadline::new(Duration::ZERO);
        assert_eq!(z.next_slice(slice), Some(Duration::ZERO));
        z.ran_out(Duration::ZERO);
        assert_eq!(z.next_slice(slice), None);
        // No deadline: never passes, never overflows.
        let mut forever = SlicedDeadline::new(Duration::MAX);
        forever.ran_out(slice);
        assert_eq!(forever.next_slice(slice), Some(slice));
        assert!(!forever.passed());
    }

    #[test]
    fn the_derived_wall_clock_agrees_with_the_wall_clock() {
        let mut wall = WallClock::default();
        for _ in 0..3 {
            let before = realtime_ns();
            let derived = wall.realtime_at(monotonic_ns());
            let after = realtime_ns();
            // Within 1 ms of the readings around it (a slew moves it by at
            // most 10 µs between resyncs; the rest is slack for a loaded CI).
            assert!(
                derived + 1_000_000 >= before && derived <= after + 1_000_000,
                "{before} <= {derived} <= {after}"
            );
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}
