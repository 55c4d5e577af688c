//! [`Canceller`]: how another thread interrupts a consumer that waits.

use super::shared::Shared;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// A handle that interrupts the consumers it was given to: after
/// [`cancel`](Self::cancel), a [`take`](crate::Consumer::take) that finds no
/// frame returns [`TakeError::Cancelled`](crate::TakeError::Cancelled) at
/// once instead of waiting (one blocked in its wait is woken), and an
/// [`attach`](crate::ConsumerBuilder::attach) waiting for its ring returns
/// [`AttachError::Cancelled`](crate::AttachError::Cancelled). Frames already
/// queued are still taken. Cancelling is for good.
///
/// Cheap to clone (the clones are one handle), `Send + Sync`: a signal
/// watcher, a supervisor thread or a UI can hold one. Give one to several
/// consumers with [`ConsumerBuilder::cancel_with`](crate::ConsumerBuilder::cancel_with),
/// or ask a consumer for its own with [`Consumer::canceller`](crate::Consumer::canceller).
/// The library installs no signal handler: a program that stops on Ctrl-C
/// cancels from its own.
///
/// ```
/// use framering_ring::{Canceller, Consumer, FrameShape, Producer, TakeError};
/// use std::time::{Duration, Instant};
///
/// let ring = format!("doc-cancel-{}", std::process::id());
/// let producer = Producer::builder(&ring).shape(FrameShape::new(2, 2, 1)).create()?;
/// let stop = Canceller::new();
/// let consumer = Consumer::builder(&ring).cancel_with(stop.clone()).attach()?;
///
/// let start = Instant::now();
/// let waiter = std::thread::spawn(move || consumer.take(Duration::from_secs(60)).map(|_| ()));
/// stop.cancel(); // from another thread: the take returns now, not in a minute
/// let r = waiter.join().unwrap();
/// assert!(matches!(r, Err(TakeError::Cancelled { .. })));
/// assert!(start.elapsed() < Duration::from_secs(30));
/// # producer.unlink()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Canceller {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    /// The consumers to wake (they hold the handle; it does not keep them).
    consumers: Mutex<Vec<Weak<Shared>>>,
}

impl Canceller {
    /// A handle not cancelled yet, for no consumer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the consumers given this handle, now and from now on, and
    /// wakes those waiting for a frame.
    pub fn cancel(&self) {
        // SeqCst, then the event's SeqCst notification: a waiter that
        // checks after announcing itself sees the flag (see
        // `protocol::event`).
        self.inner.cancelled.store(true, Ordering::SeqCst);
        for c in self.inner.consumers.lock().iter().filter_map(Weak::upgrade) {
            // Wakes every waiter of the ring; the others look again and
            // sleep on.
            c.seg.header().ready_event.notify();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Makes `shared` one of the consumers `cancel` wakes.
    pub(super) fn register(&self, shared: &Arc<Shared>) {
        let mut consumers = self.inner.consumers.lock();
        consumers.retain(|w| w.strong_count() > 0);
        consumers.push(Arc::downgrade(shared));
    }
}
