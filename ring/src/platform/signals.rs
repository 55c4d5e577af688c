//! Process-level facts and the one handler of the ring's own failure: this
//! process's pid kept current across `fork` ([`process_id`], which tells a forked
//! child's copies of a producer, consumer or frame from the originals), and
//! an opt-in SIGBUS handler ([`exit_on_sigbus`]) that turns a truncated
//! segment into a message instead of a bare "Bus error". Stop signals
//! (SIGINT, SIGTERM) are the application's business: a consumer is
//! interrupted through its [`Canceller`](crate::Canceller).

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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
/// assert_eq!(framering_ring::process_id(), std::process::id());
/// ```
pub fn process_id() -> u32 {
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

/// The exit code [`exit_on_sigbus`] ends the process with.
static SIGBUS_CODE: AtomicI32 = AtomicI32::new(1);

extern "C" fn on_sigbus(_: libc::c_int) {
    const MSG: &[u8] = b"error: SIGBUS: the shared ring became inaccessible (its segment was truncated by another process, or /dev/shm ran out of memory); restart the producer, or enlarge /dev/shm (Docker: --shm-size)\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static
    // buffer of the given length. Returning from a SIGBUS handler would
    // re-run the faulting access, so the process ends here.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(SIGBUS_CODE.load(Ordering::Relaxed));
    }
}

/// Turns SIGBUS — what reading or writing a ring's mapping raises once
/// another process truncated its segment, or /dev/shm ran out of memory
/// for a page first touched — into a message on stderr and exit `code`,
/// instead of a bare "Bus error". Process-wide (it replaces the process's
/// SIGBUS disposition), so it is opt-in, for programs: a library never
/// installs it. Returning from a SIGBUS handler would fault again, so the
/// process ends in the handler.
///
/// ```no_run
/// framering_ring::exit_on_sigbus(5);
/// ```
pub fn exit_on_sigbus(code: i32) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    SIGBUS_CODE.store(code, Ordering::Relaxed);
    let bus = SigAction::new(
        SigHandler::Handler(on_sigbus),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions (write(2),
    // _exit(2), an atomic load).
    if let Err(e) = unsafe { sigaction(Signal::SIGBUS, &bus) } {
        tracing::warn!(error = %e, "cannot install the SIGBUS handler");
    }
}
