//! Cross-process futex wait and wake on a 32-bit word in shared memory.
//!
//! The only system calls of the ring core's waiting path. The word may live in
//! a shared mapping used by several processes, so the *shared* futex
//! operations are used (never `FUTEX_PRIVATE_FLAG`, whose hash key is
//! per-process and would make a wake from another process a no-op).
//!
//! Under `--cfg loom` the kernel is replaced by a model with the same contract
//! (compare-and-block under a lock, wake under the same lock), so that the
//! event protocol in [`crate::protocol::event`] can be checked for lost wake-ups.

use crate::protocol::sync::AtomicU32;
use std::time::Duration;

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Woken by [`wake_all`] (or spuriously, or by a signal): re-check.
    Woken,
    /// The word did not hold the expected value: it changed before we slept.
    Changed,
    /// The timeout elapsed.
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (`None`: no limit).
///
/// The kernel compares the word and queues the caller atomically with respect
/// to [`wake_all`], which is what makes the protocol in [`crate::protocol::event`] free
/// of lost wake-ups.
#[cfg(not(loom))]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitOutcome {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word.as_ptr()` is a valid, 4-byte aligned address for as long as
    // `word` is borrowed (the whole call). FUTEX_WAIT only reads the word and
    // `ts_ptr` is null or points at a live timespec on this stack frame. The
    // remaining arguments are ignored by FUTEX_WAIT.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == 0 {
        return WaitOutcome::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => WaitOutcome::Changed,
        Some(libc::ETIMEDOUT) => WaitOutcome::TimedOut,
        // EINTR (a signal) or anything unexpected: the caller re-checks its
        // condition, which is always correct.
        _ => WaitOutcome::Woken,
    }
}

/// Wakes every process sleeping in [`wait`] on `word`; returns how many woke.
#[cfg(not(loom))]
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    // SAFETY: as in `wait`: a valid aligned address for the duration of the
    // call; FUTEX_WAKE does not access the word's memory at all beyond using
    // its address as a key. The remaining arguments are ignored.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    r.max(0) as usize
}

#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};
    // One global "kernel": a lock plus a condition variable. Waking every
    // waiter on every wake is what FUTEX_WAKE(INT_MAX) does.
    loom::lazy_static! {
        pub static ref KERNEL: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }
}

/// Loom model of `FUTEX_WAIT`: compare under the kernel lock, then block until
/// a wake. The timeout is ignored on purpose: a lost wake-up then shows as a
/// deadlock that loom reports.
#[cfg(loom)]
pub(crate) fn wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> WaitOutcome {
    use crate::protocol::sync::{fence, Ordering};
    let (lock, cv) = &*model::KERNEL;
    let guard = lock.lock().unwrap();
    // The kernel issues a full barrier before reading the futex word.
    fence(Ordering::SeqCst);
    if word.load(Ordering::SeqCst) != expected {
        return WaitOutcome::Changed;
    }
    drop(cv.wait(guard).unwrap());
    WaitOutcome::Woken
}

/// Loom model of `FUTEX_WAKE`.
#[cfg(loom)]
pub(crate) fn wake_all(_word: &AtomicU32) -> usize {
    use crate::protocol::sync::{fence, Ordering};
    fence(Ordering::SeqCst);
    let (lock, cv) = &*model::KERNEL;
    let _guard = lock.lock().unwrap();
    cv.notify_all();
    1
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_returns_changed_when_word_differs() {
        let w = AtomicU32::new(5);
        assert_eq!(wait(&w, 4, None), WaitOutcome::Changed);
    }

    #[test]
    fn wait_times_out() {
        let w = AtomicU32::new(0);
        let t0 = Instant::now();
        assert_eq!(
            wait(&w, 0, Some(Duration::from_millis(20))),
            WaitOutcome::TimedOut
        );
        assert!(t0.elapsed() >= Duration::from_millis(15));
    }

    /// A thread asleep in `wait` is released by `wake_all` — not by its
    /// timeout (30 s, far beyond the test's bound), and not by a change of
    /// the word (it stays 0): `wake_all` must report it woke one sleeper and
    /// the sleeper must see `Woken`. Waking is retried until somebody is
    /// asleep, so the test never depends on the thread's timing.
    #[test]
    fn wake_releases_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let t0 = Instant::now();
        let h = std::thread::spawn(move || wait(&w2, 0, Some(Duration::from_secs(30))));
        let woken = loop {
            match wake_all(&w) {
                0 => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "wake_all never found the sleeper"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                n => break n,
            }
        };
        assert_eq!(woken, 1);
        assert_eq!(h.join().unwrap(), WaitOutcome::Woken);
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert_eq!(w.load(Ordering::SeqCst), 0);
    }
}
