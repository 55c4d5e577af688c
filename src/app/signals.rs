//! The programs' stop signals: SIGINT/SIGTERM counted into a flag the
//! pipelines poll, and a [`Canceller`] that interrupts the consumers given
//! it (a waiting `take` or `attach` returns at once). The first signal asks
//! for a graceful stop (finish the current frames, return slots, signal end
//! of stream); a second one for a quick exit that still returns slots.
//!
//! The handlers are signal-hook's (no `unsafe` here): a thread of its own
//! receives the signals and does the counting and cancelling.

use framering_ring::Canceller;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};

static RECEIVED: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();

/// The canceller the first stop signal cancels: give it to the consumers
/// that must stop waiting on Ctrl-C
/// ([`ConsumerBuilder::cancel_with`](framering_ring::ConsumerBuilder::cancel_with)).
pub fn canceller() -> Canceller {
    static CANCEL: OnceLock<Canceller> = OnceLock::new();
    CANCEL.get_or_init(Canceller::new).clone()
}

/// Counts SIGINT and SIGTERM (cancelling [`canceller`] at the first), and
/// turns SIGBUS (a truncated segment) into a message and exit code
/// [`SHM_LOST`](crate::app::exit::SHM_LOST) instead of a bare "Bus error".
/// Once per process; later calls do nothing.
pub fn install() {
    INSTALL.call_once(|| {
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(mut signals) => {
                let cancel = canceller();
                let spawned = std::thread::Builder::new()
                    .name("signals".into())
                    .spawn(move || {
                        for _ in signals.forever() {
                            RECEIVED.fetch_add(1, Ordering::SeqCst);
                            cancel.cancel();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start the signal thread");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot install the stop signal handlers"),
        }
        framering_ring::exit_on_sigbus(crate::app::exit::SHM_LOST);
    });
}

/// Number of SIGINT/SIGTERM received so far.
pub fn received() -> u32 {
    RECEIVED.load(Ordering::SeqCst)
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    received() > 0
}
