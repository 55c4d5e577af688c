//! Process-level handlers: SIGINT/SIGTERM turned into a flag the pipelines
//! poll, and this process's pid kept current across `fork` ([`pid`]).
//!
//! The first signal asks for a graceful stop (finish the current frames,
//! return slots, signal end of stream); a second one asks for a quick exit
//! that still returns slots.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// This process's pid, 0 until [`pid`] first runs.
static PID: AtomicU32 = AtomicU32::new(0);
static FORK_HANDLER: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Runs in the child right after fork(), before fork() returns there:
    // getpid(2) and an atomic store are async-signal-safe.
    PID.store(std::process::id(), Ordering::Relaxed);
}

/// This process's id, like [`std::process::id`] but without a system call
/// (it runs on every frame handed back): cached, and refreshed in the child
/// by a `pthread_atfork` handler when the process forks (through the C
/// library's `fork`, as Python's `os.fork` and `multiprocessing` do).
///
/// ```
/// assert_eq!(framering_ring::signals::pid(), std::process::id());
/// ```
pub fn pid() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    FORK_HANDLER.call_once(|| {
        PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a child handler that only calls getpid(2) and
        // stores an atomic, both async-signal-safe, as a handler run
        // between fork and its return in the child must be.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        if rc != 0 {
            tracing::warn!(rc, "cannot register the fork handler");
        }
    });
    PID.load(Ordering::Relaxed)
}

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic add.
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Exit code after a SIGBUS (documented with the others in `cli::exit`).
pub const SIGBUS_EXIT: i32 = 5;

extern "C" fn on_sigbus(_: libc::c_int) {
    const MSG: &[u8] = b"error: SIGBUS: the shared ring became inaccessible (its segment was truncated by another process, or /dev/shm ran out of memory); restart the producer, or enlarge /dev/shm (Docker: --shm-size)\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static
    // buffer of the given length. Returning from a SIGBUS handler would
    // re-run the faulting access, so the process ends here.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(SIGBUS_EXIT);
    }
}

/// Installs the handlers for SIGINT and SIGTERM, and turns SIGBUS (a
/// truncated segment) into a message and exit code 5 instead of a bare
/// "Bus error".
pub fn install() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic add on a static, which
        // is async-signal-safe, and it replaces no handler that other code
        // relies on (the binaries install it once, at start).
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            tracing::warn!(signal = ?sig, error = %e, "cannot install signal handler");
        }
    }
    let bus = SigAction::new(
        SigHandler::Handler(on_sigbus),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions (see above).
    if let Err(e) = unsafe { sigaction(Signal::SIGBUS, &bus) } {
        tracing::warn!(error = %e, "cannot install the SIGBUS handler");
    }
}

/// Number of SIGINT/SIGTERM received so far.
pub fn received() -> u32 {
    SIGNALS.load(Ordering::Relaxed)
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    received() > 0
}
