//! SIGINT/SIGTERM turned into a flag the pipelines poll.
//!
//! The first signal asks for a graceful stop (finish the current frames,
//! return slots, signal end of stream); a second one asks for a quick exit
//! that still returns slots.

use std::sync::atomic::{AtomicU32, Ordering};

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic add.
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT and SIGTERM.
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
}

/// Number of SIGINT/SIGTERM received so far.
pub fn received() -> u32 {
    SIGNALS.load(Ordering::Relaxed)
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    received() > 0
}
