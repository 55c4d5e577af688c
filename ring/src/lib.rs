//! A crash-safe ring of frame slots in one POSIX shared-memory segment, for
//! moving images between processes without copying them.
//!
//! One [`Producer`] process creates the ring (`/dev/shm/NAME`): N slots of
//! H × W × C bytes. It [loans](Producer::loan) a free slot, fills it in place
//! and [publishes](WriteSlot::publish) it. Any number of [`Consumer`]
//! processes, started and stopped at any time, [take](Consumer::take)
//! frames and read them in place; dropping a [`Frame`] hands its slot back.
//!
//! * **Groups**: every consumer group receives every frame (broadcast: a
//!   recorder and a detector); the consumers of one group share its frames
//!   (work-sharing: each frame goes to one of them).
//! * **Backpressure**: [`Backpressure::Block`] (lossless: the producer
//!   waits) or [`Backpressure::DropOldest`] (live: the oldest frame nobody
//!   is reading is dropped instead).
//! * **Crashes**: a consumer killed at any instruction loses nothing — the
//!   producer notices and delivers its frames again (with
//!   [`FrameInfo::redeliveries`] counted); a dead producer lets its consumers
//!   take what it published and then reports [`Take::ProducerGone`]; a ring
//!   left by a dead producer is reclaimed by the next one, a live one is
//!   never clobbered.
//! * **Untrusted memory**: the segment is shared with processes this one
//!   does not trust; every index read from it is checked, and garbage is
//!   reported as [`RingCorrupt`], never undefined behaviour.
//! * **Waiting**: idle processes sleep on futexes in the segment; busy ones
//!   hand frames over without a system call.
//!
//! # Example
//!
//! A producer and a consumer (here in one process; normally two):
//!
//! ```
//! use framering_ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
//! use std::time::Duration;
//!
//! let ring = format!("doc-example-{}", std::process::id());
//! let producer = Producer::builder(&ring)
//!     .shape(FrameShape::new(2, 2, 3))
//!     .slots(4)
//!     .create()?;
//! let consumer = Consumer::builder(&ring).attach()?; // adopts the ring's shape
//! assert_eq!(consumer.shape(), FrameShape::new(2, 2, 3));
//!
//! let mut slot = producer.loan(Duration::from_secs(1))?;
//! slot.pixels_mut().fill(7);
//! let seq = slot.publish(&FrameMeta::new().source(b"seven.png"))?;
//!
//! match consumer.take(Duration::from_secs(1))? {
//!     Take::Frame(frame) => {
//!         assert_eq!(frame.seq(), seq);
//!         assert_eq!(frame.info().source(), b"seven.png");
//!         assert!(frame.pixels().iter().all(|&b| b == 7));
//!     } // dropping the frame hands the slot back
//!     other => panic!("{other:?}"),
//! }
//!
//! drop(consumer);
//! producer.finish();
//! producer.drain(Duration::from_secs(1))?;
//! producer.unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Frame`] owns its slot, not a borrow of its consumer: a consumer
//! feeding a thread pool hands each frame to a worker as it is (no copy; the
//! slot goes back when the worker drops it, see [`Frame`]).
//!
//! # What a frame guarantees
//!
//! A [`Frame`]'s [`pixels`](Frame::pixels) are a `&[u8]` over shared memory,
//! as [memmap2](https://docs.rs/memmap2)'s maps of a file are: **another
//! process — or this one, through the segment's file in /dev/shm or a
//! second mapping — can change those bytes while the frame is being read**,
//! and Rust's aliasing guarantee for a `&[u8]` cannot be enforced across
//! processes. What the crate guarantees is that *conforming* processes (this
//! crate, its Python binding, the `framering` binaries) never write a slot
//! while any group holds it: from [`take`](Consumer::take) until the frame
//! is dropped, released or given back, the producer does not reuse its slot
//! (with [`Backpressure::DropOldest`] it withdraws only frames nobody has
//! claimed, never one being read). What it cannot guarantee is anything
//! about a process that ignores the protocol, or that writes the file
//! directly: the bytes may then change under the reader (never undefined
//! behaviour in the sense of a wild read: every index read from the segment
//! is checked, `u8` has no invalid values, and a garbled control word is
//! reported as [`RingCorrupt`]). A segment truncated under a mapping makes
//! the next access fault with SIGBUS ([`exit_on_sigbus`] turns that into a
//! message). Give the ring a mode that keeps untrusted users out
//! ([`ProducerBuilder::mode`], default 0600), and copy what must not change.
//!
//! # Cancelling
//!
//! The library installs no signal handler. A consumer waiting in
//! [`take`](Consumer::take) (or in [`attach`](ConsumerBuilder::attach) for
//! its ring) is interrupted by its [`Canceller`], which another thread — a
//! program's own Ctrl-C handler — cancels; or it waits with a short timeout
//! and checks its own stop condition between takes.
//!
//! # Layers
//!
//! The source folders are the layers, each using only those below it:
//!
//! * `platform/`: the calls into the operating system — the segment's file
//!   lifecycle and mapping (`segment`) and the typed views of it (`views`),
//!   a detachable consumer's own slot mappings (`slot_maps`), the futex
//!   system call (`futex`), the kernel-released locks and process identity
//!   that tell a live peer from a dead one (`file_lock`, `liveness`,
//!   `process`), the pid kept across fork and the opt-in SIGBUS handler
//!   (`signals`), the clocks (`clock`). All `unsafe` code is here, each
//!   block with its `SAFETY` argument.
//! * `protocol/`: the lock-free building blocks over the segment's atomics
//!   — the segment layout, the per-slot claim words, the groups' ready
//!   queues and the consumers' return queues, the futex-backed event, the
//!   join handshake (roster), the producer's ledger — reached through a
//!   `sync` shim so that loom model-checks them (`models`).
//! * `producer/` (the handle, its builder and the group engine) and
//!   `consumer/` (the handle, its builder and the frames): this API.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
// Under loom only the building blocks are compiled, without the API that
// uses the rest of their functions.
#![cfg_attr(loom, allow(dead_code))]

mod error;
mod platform;
mod protocol;
mod shape;

// Everything above the atomics needs the real mapping and OS; under
// `--cfg loom` only the building blocks (and their models) are compiled.
#[cfg(not(loom))]
mod consumer;
#[cfg(not(loom))]
pub mod inspect;
#[cfg(not(loom))]
mod options;
#[cfg(not(loom))]
mod producer;

/// The crate's README.md, whose example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(all(test, not(loom)))]
mod tests;

pub use error::{
    AttachError, CreateError, DetachError, FailReason, InvalidGroupName, InvalidName, LoanError,
    OpenError, PublishError, RingCorrupt, ShapeError, TakeError, WaitError,
};
pub use protocol::event::WaitStrategy;

#[cfg(not(loom))]
pub use consumer::{
    builder::ConsumerBuilder,
    cancel::Canceller,
    frame::{DetachedFrame, Frame},
    Consumer, Take,
};
#[cfg(not(loom))]
pub use options::{
    validate_group_name, validate_ring_name, Backpressure, FrameInfo, FrameMeta, InputState,
    DEFAULT_GROUP,
};
#[cfg(not(loom))]
pub use platform::signals::{exit_on_sigbus, process_id};
#[cfg(not(loom))]
pub use producer::{builder::ProducerBuilder, Producer, WriteSlot};
pub use protocol::ledger::SlotReuse;
pub use shape::{Dtype, FrameShape, UnknownDtype};

/// The ring's limits, for validating a configuration before creating a ring.
pub mod limits {
    /// Most slots a ring may have.
    pub const MAX_SLOTS: u32 = crate::protocol::layout::MAX_RING_SLOTS;
    /// Largest frame height or width.
    pub const MAX_DIM: u32 = crate::protocol::layout::MAX_DIM;
    /// Most consumers attached to one ring at once.
    pub const MAX_CONSUMERS: u32 = crate::protocol::layout::MAX_CONSUMERS;
    /// Most consumer groups of one ring at once.
    pub const MAX_GROUPS: u32 = crate::protocol::layout::MAX_GROUPS;
    /// Longest ring name, in bytes.
    pub const MAX_NAME_LEN: usize = crate::protocol::layout::RING_NAME_MAX;
    /// Longest group name, in bytes.
    pub const MAX_GROUP_NAME_LEN: usize = crate::protocol::layout::GROUP_NAME_MAX;
    /// Most bytes of user metadata per frame.
    pub const MAX_USER_META: u32 = crate::protocol::layout::USER_META_MAX;
}

/// The size of the shared-memory segment of a ring of `slots` frames of
/// `shape` with room for `max_consumers` consumers, `max_groups` groups and
/// `user_meta_bytes` of user metadata per frame (what /dev/shm must have
/// free; [`ProducerBuilder::user_meta_bytes`], default 256), or why there is
/// no such ring.
///
/// ```
/// use framering_ring::{segment_size, FrameShape};
///
/// let bytes = segment_size(FrameShape::new(720, 1080, 3), 8, 16, 8, 256)?;
/// assert!(bytes >= 8 * 720 * 1080 * 3);
/// # Ok::<(), framering_ring::ShapeError>(())
/// ```
#[cfg(not(loom))]
pub fn segment_size(
    shape: FrameShape,
    slots: u32,
    max_consumers: u32,
    max_groups: u32,
    user_meta_bytes: u32,
) -> Result<u64, ShapeError> {
    protocol::layout::Geometry::compute(protocol::layout::RingSpec {
        slots,
        height: shape.height,
        width: shape.width,
        channels: shape.channels,
        dtype: shape.dtype.code(),
        user_meta_bytes,
        max_consumers,
        max_groups,
    })
    .map(|g| g.total_size)
}

/// Bytes free in /dev/shm now, if it can be read.
#[cfg(not(loom))]
pub fn shm_free_bytes() -> Option<u64> {
    platform::segment::shm_free_bytes()
}
