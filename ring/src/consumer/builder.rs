//! [`ConsumerBuilder`]: how a consumer attaches.

use crate::error::{AttachError, OpenError};
use crate::options::{validate_group_name, Backpressure};
use crate::platform::segment::Segment;
use crate::protocol::event::WaitStrategy;
use crate::shape::FrameShape;
use std::time::{Duration, Instant};

use super::{Canceller, Consumer};

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
        let mut logged = false;
        loop {
            match Consumer::attach_once(&self) {
                Err(AttachError::Open(ref e))
                    if Instant::now() < deadline && ring_may_come(&self.name, e) =>
                {
                    if self.cancel.as_ref().is_some_and(Canceller::is_cancelled) {
                        return Err(AttachError::Cancelled {
                            name: self.name.clone(),
                        });
                    }
                    if !logged {
                        tracing::info!(ring = %self.name, "waiting for the ring to appear");
                        logged = true;
                    }
                    // Short: how soon a waiting consumer sees a new ring is part
                    // of the time to the first frame; a failed open costs ~2 us.
                    std::thread::sleep(Duration::from_millis(2));
                }
                r => return r,
            }
        }
    }
}

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
