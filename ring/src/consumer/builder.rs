//! [`ConsumerBuilder`]: how a consumer attaches.

use super::cancel::Canceller;
use super::shared::{Shared, NOT_ADMITTED};
use super::Consumer;
use crate::error::{AttachError, OpenError};
use crate::options::{validate_group_name, Backpressure, DEFAULT_GROUP};
use crate::platform::clock::monotonic_ns;
use crate::platform::liveness;
use crate::platform::process::ProcessId;
use crate::platform::segment::Segment;
use crate::platform::shm_watch::ShmWatch;
use crate::platform::slot_maps::SlotMaps;
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::{BACKPRESSURE_BLOCK, BACKPRESSURE_DROP_OLDEST, POLICY_RING};
use crate::protocol::roster::{self};
use crate::shape::FrameShape;
use parking_lot::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attaches a [`Consumer`] to a ring. Start with [`Consumer::builder`].
///
/// Defaults: group `"default"`, every frame in order (not only the latest),
/// [`WaitStrategy::SPIN_THEN_FUTEX`], the ring's own frame shape, and no
/// waiting for a ring that does not exist yet.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `attach` is called"]
pub struct ConsumerBuilder {
    pub(super) name: String,
    pub(super) group: String,
    pub(super) latest: bool,
    pub(super) wait: WaitStrategy,
    pub(super) expect: Option<FrameShape>,
    pub(super) any_dtype: bool,
    pub(super) wait_for_ring: Duration,
    pub(super) cancel: Option<Canceller>,
    pub(super) policy: Option<Backpressure>,
    pub(super) detachable: bool,
    /// Counts the attempts to open the ring (tests).
    #[cfg(test)]
    pub(crate) looks: Option<Arc<std::sync::atomic::AtomicU32>>,
}

impl ConsumerBuilder {
    /// The group to join (default `"default"`). Every group receives every
    /// frame; the consumers of one group share its frames.
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_string();
        self
    }

    /// The backpressure of the group, should this consumer create it (an
    /// ad-hoc group nobody has joined yet): [`Backpressure::DropOldest`]
    /// makes a live group (a preview) that never slows the producer and
    /// loses the frames it cannot keep up with. Default: the ring's policy.
    /// A group that exists keeps its own ([`Consumer::group_backpressure`]).
    ///
    /// ```no_run
    /// # use framering_ring::{Backpressure, Consumer};
    /// let preview = Consumer::builder("cam")
    ///     .group("preview")
    ///     .group_backpressure(Backpressure::DropOldest)
    ///     .attach()?;
    /// # Ok::<(), framering_ring::AttachError>(())
    /// ```
    pub fn group_backpressure(mut self, policy: Backpressure) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Skip to the newest queued frame on every take, handing the older ones
    /// straight back (counted in [`Consumer::skipped`]): for previews.
    pub fn latest(mut self, latest: bool) -> Self {
        self.latest = latest;
        self
    }

    /// How [`Consumer::take`] waits for a frame.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Refuse a ring whose frames are not of this shape
    /// ([`AttachError::ShapeMismatch`]). Without it the consumer adopts the
    /// ring's shape ([`Consumer::shape`]). A dimension of 0 accepts any
    /// value: `FrameShape::new(0, 0, 3)` insists on three channels only.
    pub fn expect_shape(mut self, shape: FrameShape) -> Self {
        self.expect = Some(shape);
        self
    }

    /// With [`expect_shape`](Self::expect_shape): accept the ring's dtype,
    /// whatever it is (the dimensions asked for are still checked; the
    /// frames' dtype is then [`Consumer::shape`]'s). Default: the dtype of
    /// the expected shape is insisted on.
    ///
    /// ```no_run
    /// # use framering_ring::{Consumer, FrameShape};
    /// // Three channels of any element type.
    /// let c = Consumer::builder("cam")
    ///     .expect_shape(FrameShape::new(0, 0, 3))
    ///     .any_dtype()
    ///     .attach()?;
    /// println!("{}", c.shape().dtype);
    /// # Ok::<(), framering_ring::AttachError>(())
    /// ```
    pub fn any_dtype(mut self) -> Self {
        self.any_dtype = true;
        self
    }

    /// Wait up to `timeout` for the ring to appear (a consumer may start
    /// before its producer). Default: not at all.
    pub fn wait_for_ring(mut self, timeout: Duration) -> Self {
        self.wait_for_ring = timeout;
        self
    }

    /// Interrupt this consumer through `cancel` (shared with whoever
    /// cancels): waiting for the ring ends with [`AttachError::Cancelled`],
    /// a take that finds no frame with
    /// [`TakeError::Cancelled`](crate::TakeError::Cancelled). Default: a
    /// handle of its own ([`Consumer::canceller`]).
    pub fn cancel_with(mut self, cancel: Canceller) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Let this consumer's frames [detach](crate::Frame::detach) from their
    /// slots: it maps every slot on its own (one mapping per slot, made now)
    /// and reads each frame through its slot's mapping, so that a frame's
    /// pages can be swapped for a private copy at the same address. For
    /// bindings whose views of a frame may outlive it (Python's numpy
    /// arrays). Default: off (the frames are read in the segment's mapping).
    pub fn detachable(mut self) -> Self {
        self.detachable = true;
        self
    }

    /// Opens the ring, registers in its consumer table and asks to join the
    /// group.
    pub fn attach(self) -> Result<Consumer, AttachError> {
        validate_group_name(&self.group)?;
        let deadline = Instant::now() + self.wait_for_ring;
        // Made at the first look that finds no ring, before the next: a
        // ring that appears after it wakes the wait below at once.
        let mut watch: Option<ShmWatch> = None;
        loop {
            #[cfg(test)]
            if let Some(looks) = &self.looks {
                looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match Consumer::attach_once(&self) {
                Err(AttachError::Open(ref e))
                    if Instant::now() < deadline && ring_may_come(&self.name, e) =>
                {
                    let Some(w) = &watch else {
                        tracing::info!(ring = %self.name, "waiting for the ring to appear");
                        watch = Some(ShmWatch::new(&self.name));
                        continue;
                    };
                    // Looks again when the name changed; a cancel is seen
                    // within CANCEL_CHECK.
                    loop {
                        if self.cancel.as_ref().is_some_and(Canceller::is_cancelled) {
                            return Err(AttachError::Cancelled {
                                name: self.name.clone(),
                            });
                        }
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() || w.wait(left.min(CANCEL_CHECK)) {
                            break;
                        }
                    }
                }
                r => return r,
            }
        }
    }
}

/// How often a consumer waiting for its ring looks at its canceller.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// Whether a consumer waiting for `name` should keep waiting after `e`: the
/// ring is absent or being created, or is a blank leftover that its next
/// producer will reclaim.
fn ring_may_come(name: &str, e: &OpenError) -> bool {
    match e {
        OpenError::NotFound { .. } | OpenError::NotReady { .. } => true,
        OpenError::NotARing { .. } => Segment::is_blank(name),
        _ => false,
    }
}

impl Consumer {
    /// Starts attaching to the ring `name`; the defaults join group
    /// `"default"` and adopt the ring's shape.
    pub fn builder(name: &str) -> ConsumerBuilder {
        ConsumerBuilder {
            name: name.to_string(),
            group: DEFAULT_GROUP.to_string(),
            latest: false,
            wait: WaitStrategy::default(),
            expect: None,
            any_dtype: false,
            wait_for_ring: Duration::ZERO,
            cancel: None,
            policy: None,
            detachable: false,
            #[cfg(test)]
            looks: None,
        }
    }

    fn attach_once(b: &ConsumerBuilder) -> Result<Consumer, AttachError> {
        let name = b.name.as_str();
        let seg = Segment::open(name)?;
        let g = *seg.geometry();
        if let Some(asked) = b.expect {
            let ring = g.frame_shape();
            // 0 = any: the ring's own value.
            let pick = |asked: u32, ring: u32| if asked == 0 { ring } else { asked };
            let expected = FrameShape::new(
                pick(asked.height, ring.height),
                pick(asked.width, ring.width),
                pick(asked.channels, ring.channels),
            )
            .with_dtype(if b.any_dtype { ring.dtype } else { asked.dtype });
            if ring != expected {
                return Err(AttachError::ShapeMismatch {
                    name: name.into(),
                    ring,
                    expected,
                });
            }
        }
        // Mapped before the table entry is claimed: nothing to undo.
        let slot_maps = if b.detachable {
            Some(SlotMaps::new(&seg).map_err(|e| OpenError::Io {
                name: name.into(),
                op: "mmap of a slot",
                source: e.into(),
            })?)
        } else {
            None
        };
        let me = ProcessId::current();
        // Entries of consumers that left are freed by the producer; give it
        // a moment if the table is full of them.
        let deadline = Instant::now() + Duration::from_secs(2);
        let index = loop {
            // Holding entry i's lock byte, we are the only process that can
            // claim it by lock: we say so in the entry before the owner CAS
            // publishes it (Release), so that no prober ever sees our owner
            // word without knowing that a lock stands for it.
            let lock = |i: usize| match liveness::try_lock(seg.file(), liveness::consumer_byte(i)) {
                liveness::Lock::Held => {
                    seg.consumers()[i].liveness_lock.store(1, O::Relaxed);
                    true
                }
                liveness::Lock::Unsupported => true,
                liveness::Lock::Other => false,
            };
            let unlock = |i: usize| {
                // The CAS failed: a claimant without a lock owns it.
                seg.consumers()[i].liveness_lock.store(0, O::Relaxed);
                liveness::unlock(seg.file(), liveness::consumer_byte(i));
            };
            match roster::claim_entry_locked(seg.consumers(), me.owner_word(), lock, unlock) {
                Some(i) => break i,
                None if Instant::now() < deadline
                    && seg.consumers().iter().any(|e| {
                        // Left, or freed but its lock byte still held by
                        // the exiting owner: free in a moment.
                        matches!(roster::request(e), roster::Request::Leave { .. })
                            || e.owner.load(O::Relaxed) == 0
                    }) =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                None => {
                    return Err(AttachError::TooManyConsumers {
                        name: name.into(),
                        max: g.max_consumers,
                    })
                }
            }
        };
        let e = &seg.consumers()[index];
        use crate::protocol::sync::Ordering as O;
        e.start_ticks.store(me.start_ticks, O::Relaxed);
        e.pid.store(me.pid, O::Relaxed);
        e.frames.store(0, O::Relaxed);
        e.skipped.store(0, O::Relaxed);
        e.heartbeat_ns.store(monotonic_ns(), O::Relaxed);
        // Published to the producer by request_join's Release store.
        e.policy.store(
            match b.policy {
                None => POLICY_RING,
                Some(Backpressure::Block) => BACKPRESSURE_BLOCK + 1,
                Some(Backpressure::DropOldest) => BACKPRESSURE_DROP_OLDEST + 1,
            },
            O::Relaxed,
        );
        // Before asking to join: until admitted, nobody collects from this
        // entry's queue, and its last owner's returns were collected before
        // the entry was freed.
        let returns = seg.return_queue(index).cursor();
        let h = seg.header();
        roster::request_join(e, b.group.as_bytes(), &h.roster, &h.free_event);
        let shared = Arc::new(Shared {
            seg,
            index: index as u8,
            group_name: b.group.clone(),
            admitted: AtomicU32::new(NOT_ADMITTED),
            returns: Mutex::new(returns),
            gave_back: std::sync::atomic::AtomicBool::new(false),
            return_failed: Mutex::new(None),
            any_return_failed: std::sync::atomic::AtomicBool::new(false),
            creator_pid: crate::platform::signals::process_id(),
            slot_maps,
        });
        let cancel = b.cancel.clone().unwrap_or_default();
        cancel.register(&shared);
        Ok(Consumer {
            shared,
            cancel,
            latest: b.latest,
            wait: b.wait,
        })
    }
}
