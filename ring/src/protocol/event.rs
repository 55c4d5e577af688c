//! A futex-backed event: "something changed, look again".
//!
//! An [`Event`] is two 32-bit words in shared memory: a monotonically
//! increasing `seq` (the futex word) and a count of `waiters` asleep or about
//! to sleep on it. It carries no data: the condition a waiter waits for lives
//! elsewhere (a queue's tail, a return ring), and the event only says when to
//! look again.
//!
//! # Protocol (no lost wake-up)
//!
//! Notifier, after making the condition true with a `Release` store:
//!
//! ```text
//! N1  seq.fetch_add(1, SeqCst)
//! N2  fence(SeqCst)
//! N3  if waiters.load(SeqCst) != 0 { FUTEX_WAKE(seq, all) }
//! ```
//!
//! Waiter, per round:
//!
//! ```text
//! W1  seen = seq.load(SeqCst)
//! W2  if condition() { done }
//! W3  waiters.fetch_add(1, SeqCst)
//! W4  fence(SeqCst)
//! W5  if seq.load(SeqCst) != seen || condition() { waiters -= 1; next round / done }
//! W6  FUTEX_WAIT(seq, seen, timeout); waiters -= 1; next round
//! ```
//!
//! Why a sleeping waiter is always woken: take the two `SeqCst` fences N2 and
//! W4. If W4 precedes N2 in the single total order, W3's increment is visible
//! to N3, so the notifier wakes (and the kernel either finds the waiter queued
//! or the waiter's W6 finds `seq != seen` and returns at once). If N2 precedes
//! W4, W5 sees N1's increment (and the condition store before it), so the
//! waiter does not sleep. The waiter never resets anything the notifier
//! writes (no 0/1 flag), so a notification can never be erased. Wrap-around
//! of `seq` would need 2³² notifications between W1 and W6.
//!
//! The notifier's common case costs one locked add and one fence: no system
//! call unless somebody sleeps.
//!
//! # The cheaper notifier: [`Event::notify_if_waiting`]
//!
//! A consumer taking a frame may unblock a producer waiting for room in a
//! group's queue, but nobody waits in the common case, and a locked add per
//! frame on a line the producer also writes would cost a cache-line transfer.
//! So that path skips N1 unless someone waits:
//!
//! ```text
//! M1  fence(SeqCst)                       (after the condition store)
//! M2  if waiters.load(Relaxed) != 0 { notify() }   (N1..N3)
//! ```
//!
//! This is sound because W5 re-checks the *condition* too, not only `seq`.
//! Take the fences M1 and W4: if W4 precedes M1, M2 sees W3's increment and
//! notifies as above; if M1 precedes W4, the condition store (before M1) is
//! visible to W5's re-check after W4, and the waiter does not sleep. Without
//! the fence M1 (a bare Relaxed load of `waiters`, as an earlier version
//! did) both can miss each other and the waiter sleeps until its timeout;
//! without the re-check in W5 the same. Both broken variants are loom
//! mutants (`notify-unfenced`, `wait-no-recheck`) that the model
//! `a_producer_waiting_for_room_is_woken_by_a_take` catches. The waiter spins first (a futex wake of an
//! idle core costs 10–20 µs on a VM, a spin hand-off about 50 ns), and every
//! sleep has a timeout so that the caller can check for a dead peer or the end
//! of the stream. It spins only while its recent waits were mostly short
//! (see `SPIN_CREDIT`). The protocol is model-checked in `models.rs` (beside this file).

use crate::platform::futex;
use crate::protocol::sync::{fence, mutant, spin_hint, yield_now, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// See the [module documentation](self). Lives in shared memory; all-zero
/// bytes are a valid, idle event.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Event {
    seq: AtomicU32,
    waiters: AtomicU32,
}

/// Checks made with a bare CPU hint between them before a spin-then-sleep
/// waiter starts yielding the CPU between checks.
const PURE_SPINS: u32 = 64;

/// Longest a spin-then-sleep waiter spins (pure spins plus yields) before it
/// sleeps. Frames that come faster than this are handed off without a system
/// call; a consumer fed every millisecond by a decoding producer sleeps after
/// 50 µs instead of calling `sched_yield` for ~1 ms (2,000 checks): in a
/// 2,000-frame JPEG run its system time fell from 0.18 s to 0.02 s.
const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// Most short waits [`SPIN_CREDIT`] remembers.
const SPIN_CREDIT_MAX: u8 = 8;

#[cfg(not(loom))]
std::thread_local! {
    /// This thread's recent waits: up by one for each that ended within
    /// [`SPIN_WINDOW`], down by one for each that did not (between 0 and
    /// [`SPIN_CREDIT_MAX`]). Its spin-then-sleep waits spin only while it is
    /// above zero, that is while at least as many recent waits were short
    /// as long; otherwise they sleep at once.
    ///
    /// Spinning through a long wait costs more than CPU. Past the pure
    /// spins the waiter yields, and on a core busy with a thread that does
    /// not yield back (a decoder) the waiter then took its frames late: a
    /// consumer of a 2-core JPEG run (a frame every ~1.2 ms) took them
    /// 1.2-1.7 ms (p50) after their publication, against 20-40 µs when it
    /// sleeps at once (docs/benchmarks.md). Where waits are short (frames
    /// every few microseconds, peers that yield back: a producer and two
    /// consumers sharing two cores) the spinning and yielding stay; there,
    /// sleeping after every long wait cost up to 0.64x, and never yielding
    /// at all 0.12-0.4x.
    static SPIN_CREDIT: std::cell::Cell<u8> = const { std::cell::Cell::new(SPIN_CREDIT_MAX) };
}

/// Whether this thread's recent waits make spinning worth it.
fn spin_pays() -> bool {
    #[cfg(not(loom))]
    return SPIN_CREDIT.with(|c| c.get() > 0);
    #[cfg(loom)]
    true
}

/// Records how this thread's wait ended (see `SPIN_CREDIT`).
fn note_wait(short: bool) {
    #[cfg(not(loom))]
    SPIN_CREDIT.with(|c| {
        c.set(match short {
            true => (c.get() + 1).min(SPIN_CREDIT_MAX),
            false => c.get().saturating_sub(1),
        })
    });
    #[cfg(loom)]
    let _ = short;
}

/// How a process waits for frames (consumers) or free slots (the
/// producer): spin first, then sleep in the kernel on a futex.
///
/// ```
/// use framering_ring::WaitStrategy;
///
/// assert_eq!(WaitStrategy::default(), WaitStrategy::SPIN_THEN_FUTEX);
/// assert!(!WaitStrategy::SPIN.sleep);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Most checks of the condition before sleeping: 64 with a CPU spin
    /// hint between, then `sched_yield` between, for at most 50 µs. A
    /// sleeping strategy spins only while most of the calling thread's
    /// recent waits ended within those 50 µs; otherwise it sleeps at once
    /// (frames that come every millisecond are not worth spinning for, and
    /// a yield on a busy core can cost a whole time slice).
    pub spins: u32,
    /// Whether to sleep with `FUTEX_WAIT` after spinning; `false` spins (and
    /// yields the CPU) until the deadline.
    pub sleep: bool,
}

impl WaitStrategy {
    /// Spin briefly (while waits are short), then sleep in the kernel: the
    /// default.
    pub const SPIN_THEN_FUTEX: Self = Self {
        spins: 2_000,
        sleep: true,
    };
    /// Never sleep: lowest latency, burns a core while idle.
    pub const SPIN: Self = Self {
        spins: u32::MAX,
        sleep: false,
    };
    /// Sleep at once: lowest CPU use while idle.
    pub const FUTEX: Self = Self {
        spins: 0,
        sleep: true,
    };
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::SPIN_THEN_FUTEX
    }
}

impl Event {
    /// Creates an idle event (for tests and models; in the segment the
    /// zero-filled memory is already one).
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Tells waiters to look again. Call after the `Release` store that makes
    /// their condition true.
    #[inline]
    pub(crate) fn notify(&self) {
        // N1: SeqCst RMW (also a release of the caller's condition store).
        self.seq.fetch_add(1, Ordering::SeqCst);
        // N2: orders N1 before N3 against the waiter's W3/W5 (see module doc).
        fence(Ordering::SeqCst);
        // N3
        if self.waiters.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.seq);
        }
    }

    /// Tells waiters to look again, cheaply when nobody waits: see the
    /// [module documentation](self#the-cheaper-notifier-eventnotify_if_waiting)
    /// for why this is sound. Call after the store that makes their
    /// condition true.
    #[inline]
    pub(crate) fn notify_if_waiting(&self) {
        // M1 (loom mutant `notify-unfenced`: without it).
        if !mutant("notify-unfenced") {
            fence(Ordering::SeqCst);
        }
        // M2
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.notify();
        }
    }

    /// Number of processes currently asleep (or about to be) on this event.
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Waits until `check` returns `Some`, or `timeout` passes (then returns
    /// `check()`'s last answer, `None`). `check` must only read shared state
    /// with `Acquire` (or stronger) loads.
    pub(crate) fn wait_until<T>(
        &self,
        strategy: WaitStrategy,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        // A spin-then-sleep waiter spins only while its recent waits were
        // mostly short (see SPIN_CREDIT).
        let adaptive = strategy.sleep && strategy.spins > 0;
        let spin_limit = match adaptive && !spin_pays() {
            true => 0,
            false => strategy.spins,
        };
        let mut spins = 0u32;
        let mut yielding_since: Option<Instant> = None;
        while spins < spin_limit {
            if let Some(v) = check() {
                if adaptive {
                    // Short unless a yield took long (the clock is read
                    // once yielding; the pure spins take about a microsecond).
                    note_wait(yielding_since.map_or(true, |t| t.elapsed() < SPIN_WINDOW));
                }
                return Some(v);
            }
            // The clock is read only once yielding (a yield costs far more).
            if strategy.sleep && spins >= PURE_SPINS && spins % 16 == 0 {
                let now = Instant::now();
                if now.duration_since(*yielding_since.get_or_insert(now)) >= SPIN_WINDOW {
                    break;
                }
            }
            // Past a short pure spin, give the core to whoever else is
            // runnable: with more busy processes than cores (a producer and
            // two consumers on two cores), a spinning waiter would otherwise
            // steal the time of the process it is waiting for. When nobody
            // else wants the core, sched_yield returns at once.
            if spins >= PURE_SPINS && strategy.sleep {
                yield_now();
            } else {
                spin_hint();
            }
            spins += 1;
            // A pure spinner still yields now and then, and honours the
            // deadline (checked rarely: reading the clock costs ~20 ns).
            if !strategy.sleep && spins % 4096 == 0 {
                return self.spin_rest(timeout, check);
            }
        }
        if !strategy.sleep {
            return self.spin_rest(timeout, check);
        }
        let begun = Instant::now();
        // Spun through the window: a long wait. Slept at once: as long as
        // it turns out to be.
        let started = match spins {
            0 => Some(begun),
            _ => None,
        };
        let note_end = || {
            if adaptive {
                note_wait(started.is_some_and(|t| t.elapsed() < SPIN_WINDOW));
            }
        };
        let deadline = begun + timeout;
        loop {
            // W1
            let seen = self.seq.load(Ordering::SeqCst);
            // W2
            if let Some(v) = check() {
                note_end();
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                // Nothing came: never a short wait, however short the timeout.
                if adaptive {
                    note_wait(false);
                }
                return None;
            }
            // W3 (loom mutant `wait-unannounced`: without it, so a notifier
            // cannot know that it must wake us).
            let announce = !mutant("wait-unannounced");
            if announce {
                self.waiters.fetch_add(1, Ordering::SeqCst);
            }
            // W4. With W3 and W5 both SeqCst this fence is implied (and the
            // kernel's FUTEX_WAIT issues a full barrier before comparing the
            // word), so removing it breaks nothing a model can show; it is
            // kept so that the argument above rests on the two fences alone.
            fence(Ordering::SeqCst);
            // W5: the count, then the condition (see notify_if_waiting).
            // Loom mutant `wait-no-recheck`: the count only.
            if self.seq.load(Ordering::SeqCst) == seen {
                if !mutant("wait-no-recheck") {
                    if let Some(v) = check() {
                        if announce {
                            self.waiters.fetch_sub(1, Ordering::SeqCst);
                        }
                        note_end();
                        return Some(v);
                    }
                }
                // W6
                futex::wait(&self.seq, seen, Some(deadline - now));
            }
            if announce {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn spin_rest<T>(&self, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            for _ in 0..4096 {
                if let Some(v) = check() {
                    return Some(v);
                }
                spin_hint();
            }
            if Instant::now() >= deadline {
                return check();
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn wait_sees_condition_set_before_and_after() {
        let ev = Arc::new(Event::new());
        let flag = Arc::new(AtomicBool::new(false));
        for strategy in [
            WaitStrategy::FUTEX,
            WaitStrategy::SPIN,
            WaitStrategy::SPIN_THEN_FUTEX,
        ] {
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
            let (e2, f2) = (ev.clone(), flag.clone());
            let h = std::thread::spawn(move || {
                e2.wait_until(strategy, Duration::from_secs(10), || {
                    f2.load(std::sync::atomic::Ordering::Acquire).then_some(())
                })
            });
            std::thread::sleep(Duration::from_millis(10));
            flag.store(true, std::sync::atomic::Ordering::Release);
            ev.notify();
            assert_eq!(h.join().unwrap(), Some(()), "{strategy:?}");
        }
    }

    #[test]
    fn wait_times_out_without_notify() {
        let ev = Event::new();
        let t0 = Instant::now();
        let r: Option<()> = ev.wait_until(WaitStrategy::FUTEX, Duration::from_millis(30), || None);
        assert!(r.is_none());
        assert!(t0.elapsed() >= Duration::from_millis(25));
        assert_eq!(ev.waiters(), 0);
    }

    /// Checks a spin-then-sleep wait makes of a condition that never
    /// holds, within a 1 ms timeout: many if it spins, a few if it sleeps.
    fn checks_of_a_failed_wait(ev: &Event) -> u32 {
        let mut checks = 0;
        let r: Option<()> = ev.wait_until(
            WaitStrategy::SPIN_THEN_FUTEX,
            Duration::from_millis(1),
            || {
                checks += 1;
                None
            },
        );
        assert!(r.is_none());
        checks
    }

    #[test]
    fn a_thread_whose_waits_run_long_sleeps_at_once_until_one_is_short() {
        // A thread of its own: the credit is per thread.
        std::thread::spawn(|| {
            let ev = Event::new();
            assert!(spin_pays(), "a new thread spins");
            assert!(checks_of_a_failed_wait(&ev) > PURE_SPINS, "spun");
            // Each timed-out wait is long: the credit runs out.
            for _ in 1..SPIN_CREDIT_MAX {
                checks_of_a_failed_wait(&ev);
            }
            assert!(!spin_pays());
            let checks = checks_of_a_failed_wait(&ev);
            assert!(checks < 8, "slept at once, but checked {checks} times");
            // A poll that finds nothing is not a short wait.
            let r: Option<()> =
                ev.wait_until(WaitStrategy::SPIN_THEN_FUTEX, Duration::ZERO, || None);
            assert!(r.is_none());
            assert!(!spin_pays());
            // A wait that ends at once is short: spinning pays again.
            let r = ev.wait_until(
                WaitStrategy::SPIN_THEN_FUTEX,
                Duration::from_secs(1),
                || Some(()),
            );
            assert_eq!(r, Some(()));
            assert!(spin_pays());
            assert!(checks_of_a_failed_wait(&ev) > PURE_SPINS, "spun again");
            // Neither a pure spinner nor a pure sleeper counts.
            assert!(!spin_pays());
            for strategy in [WaitStrategy::FUTEX, WaitStrategy::SPIN] {
                let r: Option<()> = ev.wait_until(strategy, Duration::from_millis(1), || None);
                assert!(r.is_none());
            }
            assert!(!spin_pays());
        })
        .join()
        .unwrap();
    }
}
