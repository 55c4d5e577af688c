//! [`ProducerBuilder`]: the settings of a new ring.

use crate::error::CreateError;
use crate::options::Backpressure;
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::USER_META_DEFAULT;
use crate::shape::FrameShape;
use std::time::Duration;

use super::Producer;

/// Creates a ring and its [`Producer`]. Start with [`Producer::builder`].
///
/// Every setting but the frame shape has a default: 8 slots, 16 consumers,
/// 8 groups, no declared group (consumers create theirs), a linger period of
/// 30 s, [`Backpressure::Block`], mode 0600,
/// [`WaitStrategy::SPIN_THEN_FUTEX`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct ProducerBuilder {
    pub(super) name: String,
    pub(super) shape: Option<FrameShape>,
    pub(super) slots: u32,
    pub(super) max_consumers: u32,
    pub(super) max_groups: u32,
    pub(super) groups: Vec<(String, Option<Backpressure>)>,
    pub(super) linger: Duration,
    pub(super) backpressure: Backpressure,
    pub(super) max_queued: u32,
    pub(super) mode: u32,
    pub(super) wait: WaitStrategy,
    pub(super) user_meta_bytes: u32,
    pub(super) frame_rate: u64,
}

impl ProducerBuilder {
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            shape: None,
            slots: 8,
            max_consumers: 16,
            max_groups: 8,
            groups: Vec::new(),
            linger: Duration::from_secs(30),
            backpressure: Backpressure::Block,
            max_queued: 0,
            mode: 0o600,
            wait: WaitStrategy::default(),
            user_meta_bytes: USER_META_DEFAULT,
            frame_rate: 0,
        }
    }

    /// The frames' shape and element type (required).
    pub fn shape(mut self, shape: FrameShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// Bytes of user metadata each frame may carry beside its pixels
    /// ([`FrameMeta::user_meta`](crate::FrameMeta::user_meta)), 0 to 65536 (default 256). They share the
    /// frame's last page where it has room.
    pub fn user_meta_bytes(mut self, bytes: u32) -> Self {
        self.user_meta_bytes = bytes;
        self
    }

    /// Number of frame slots, 1 to 4096 (default 8).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// Most consumers attached at once, 1 to 64 (default 16).
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.max_consumers = n;
        self
    }

    /// Most consumer groups at once, 1 to 64 (default 8).
    pub fn max_groups(mut self, n: u32) -> Self {
        self.max_groups = n;
        self
    }

    /// The declared groups, with the ring's default backpressure (replaces
    /// any declared before). A declared group receives every frame from the
    /// first one, with or without consumers, and keeps the frames of
    /// consumers that die for redelivery, for as long as the ring lives.
    /// Default: none, only ad-hoc groups, created by the consumers that join
    /// them (see [`Producer`]).
    ///
    /// ```
    /// # use framering_ring::{FrameShape, Producer};
    /// let b = Producer::builder("cam").shape(FrameShape::new(2, 2, 1)).groups(["rec"]);
    /// ```
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(|g| (g.into(), None)).collect();
        self
    }

    /// Declares one more group, with its own backpressure: a lossless
    /// recorder and a live preview on one ring.
    ///
    /// ```
    /// # use framering_ring::{Backpressure, FrameShape, Producer};
    /// let b = Producer::builder("cam")
    ///     .shape(FrameShape::new(2, 2, 1))
    ///     .group("rec", Backpressure::Block)
    ///     .group("preview", Backpressure::DropOldest);
    /// ```
    pub fn group(mut self, name: &str, policy: Backpressure) -> Self {
        self.groups.push((name.to_string(), Some(policy)));
        self
    }

    /// How long an ad-hoc group whose last consumer died keeps its frames
    /// (and goes on receiving new ones) for a consumer that restarts
    /// (default 30 s). Zero: released at once, like a group whose last
    /// consumer left.
    pub fn group_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// What to do when no slot is free (default [`Backpressure::Block`]):
    /// the policy of every group that does not ask for its own.
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// With [`Backpressure::Block`]: publish no further while a group has
    /// this many frames queued and not yet taken. 0 (default): 2 to 8
    /// frames, as many as fit in 8 MiB. Keeps the frames consumers read
    /// recent (in cache) and the latency short in a deep ring; the other
    /// slots still serve consumers that hold frames.
    pub fn max_queued(mut self, n: u32) -> Self {
        self.max_queued = n;
        self
    }

    /// Permissions of the segment, e.g. `0o660` to let the owner's group
    /// attach (default `0o600`). Must include `0o600`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How [`Producer::loan`] waits for a free slot.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// The source's frame rate, `num / den` frames per second, recorded in
    /// the ring for consumers ([`crate::Consumer::frame_rate`]): a consumer
    /// encoding a video writes it at this rate. Unset, or a zero in either
    /// term: not known.
    pub fn frame_rate(mut self, num: u32, den: u32) -> Self {
        self.frame_rate = if num == 0 || den == 0 {
            0
        } else {
            u64::from(num) << 32 | u64::from(den)
        };
        self
    }

    /// Creates the ring and becomes its producer. A ring of that name left
    /// by a dead producer is reclaimed; one whose producer is alive is
    /// refused with [`CreateError::InUse`].
    pub fn create(self) -> Result<Producer, CreateError> {
        Producer::create(self)
    }
}
