//! The errors of the ring's operations: one enum per operation, each with a
//! `Display` a person can read (`ring "cam0" does not exist (no
//! /dev/shm/cam0)`), and the values that explain it as fields.

use crate::shape::FrameShape;
use std::time::Duration;

/// Where POSIX shared-memory objects appear on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Something in shared memory contradicts the ring's invariants: another
/// process wrote garbage. Never caused by a crash of a well-behaved peer.
/// (Internal: turned into [`RingCorrupt`] with the ring's name.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// A word in the ring's shared memory holds a value no conforming process
/// writes: some process scribbled over the segment. The ring cannot go on
/// safely; nothing was read out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ring {ring:?} is corrupt: {what}")]
pub struct RingCorrupt {
    /// The ring.
    pub ring: String,
    /// What was found wrong.
    pub what: &'static str,
}

impl RingCorrupt {
    pub(crate) fn new(ring: &str, c: Corrupt) -> Self {
        Self {
            ring: ring.to_string(),
            what: c.0,
        }
    }
}

/// Why a producer gave up on its ring, as its consumers see it
/// ([`crate::Take::ProducerFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// The ring's shared memory held a word no conforming process writes.
    #[error("ring corrupt")]
    RingCorrupt,
    /// Its input failed (a read error, a stream that ended inside a frame,
    /// a decoder that failed).
    #[error("its input failed")]
    Input,
    /// Another error (I/O, …).
    #[error("it failed")]
    Other,
}

impl FailReason {
    /// The code stored in the segment's header.
    pub(crate) fn code(self) -> u32 {
        match self {
            FailReason::RingCorrupt => 1,
            FailReason::Input => 2,
            FailReason::Other => 3,
        }
    }

    /// The reason for a code read from the segment (unknown: `Other`).
    pub(crate) fn from_code(code: u32) -> Self {
        match code {
            1 => FailReason::RingCorrupt,
            2 => FailReason::Input,
            _ => FailReason::Other,
        }
    }
}

/// A ring name that cannot be a shared-memory object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid ring name {0:?}: use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.'"
)]
pub struct InvalidName(pub String);

/// A consumer group name that is empty, longer than 32 bytes, or has
/// characters other than ASCII letters, digits, `_`, `-` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid group name {0:?}: use 1 to 32 letters, digits, '_', '-' or '.'")]
pub struct InvalidGroupName(pub String);

/// A ring shape outside the limits (see [`crate::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A dimension is zero or above its limit.
    #[error("{what} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// Which dimension (`slots`, `height`, …).
        what: &'static str,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// The value given.
        got: u64,
    },
    /// The segment would be larger than the address space.
    #[error("slots × height × width × channels is too large for this machine's address space")]
    Overflow,
}

/// Why a ring could not be opened (by a consumer, or for inspection).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name cannot be a ring's.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// No ring of that name.
    #[error("ring {name:?} does not exist (no {SHM_DIR}/{name})")]
    NotFound {
        /// Ring name.
        name: String,
    },
    /// Its producer is still creating it (try again in a moment).
    #[error("ring {name:?} is still being initialised by its producer")]
    NotReady {
        /// Ring name.
        name: String,
    },
    /// The segment's mode does not let this user open it.
    #[error("permission denied opening ring {name:?} ({SHM_DIR}/{name}, mode {mode}): run as its owner, or have the producer create it with a wider mode such as 0660")]
    PermissionDenied {
        /// Ring name.
        name: String,
        /// The segment's mode as octal text, if it could be read.
        mode: String,
    },
    /// The file is not a framering ring (another program's shared memory).
    #[error("{SHM_DIR}/{name} is not a framering ring")]
    NotARing {
        /// File name under /dev/shm.
        name: String,
    },
    /// Made by a build with another segment layout.
    #[error("ring {name:?} has layout version {found}; this build understands version {expected} (restart its producer with this build)")]
    Version {
        /// Ring name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// The header contradicts itself or the file.
    #[error("ring {name:?} is corrupt: {reason}")]
    Corrupt {
        /// Ring name.
        name: String,
        /// What disagreed.
        reason: String,
    },
    /// A system call failed.
    #[error("ring {name:?}: {op} failed: {source}")]
    Io {
        /// Ring name.
        name: String,
        /// The operation.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Why [`crate::ProducerBuilder::create`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name cannot be a ring's.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// No frame shape was given to the builder.
    #[error("ring {name:?}: no frame shape given (ProducerBuilder::shape)")]
    NoShape {
        /// Ring name.
        name: String,
    },
    /// The shape is outside the limits.
    #[error("ring {name:?}: {source}")]
    Shape {
        /// Ring name.
        name: String,
        /// What is out of range.
        source: ShapeError,
    },
    /// A declared group name is invalid.
    #[error(transparent)]
    InvalidGroup(#[from] InvalidGroupName),
    /// The mode is not a permission set that includes owner read and write.
    #[error("ring {name:?}: mode {mode:04o} must be at most 0777 and include 0600 (owner read and write)")]
    InvalidMode {
        /// Ring name.
        name: String,
        /// The mode given.
        mode: u32,
    },
    /// More declared groups than the group table holds.
    #[error("ring {name:?}: {given} groups declared but max_groups is {max}")]
    TooManyGroups {
        /// Ring name.
        name: String,
        /// Groups declared.
        given: usize,
        /// Table size.
        max: u32,
    },
    /// A live producer owns a ring of that name.
    #[error("ring {name:?} is in use by a running producer (pid {pid}); stop it or choose another ring name")]
    InUse {
        /// Ring name.
        name: String,
        /// The live producer.
        pid: u32,
    },
    /// The existing object of that name belongs to someone else.
    #[error("permission denied creating ring {name:?} ({SHM_DIR}/{name}, mode {mode}): it belongs to another user; remove it as that user or choose another ring name")]
    PermissionDenied {
        /// Ring name.
        name: String,
        /// The existing object's mode.
        mode: String,
    },
    /// /dev/shm cannot hold the ring.
    #[error("not enough shared memory for ring {name:?}: it needs {needed} bytes but {SHM_DIR} has {available} bytes free; enlarge {SHM_DIR} (in Docker: --shm-size) or use fewer slots or smaller frames")]
    NoSpace {
        /// Ring name.
        name: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free in /dev/shm.
        available: u64,
    },
    /// A ring of that name exists and could not be checked for a live
    /// producer (another layout version, corrupt): it is left alone.
    #[error("ring {name:?} exists and cannot be reclaimed: {source}")]
    Unreclaimable {
        /// Ring name.
        name: String,
        /// Why it could not be opened.
        source: OpenError,
    },
    /// An empty or blank file of that name, too recent to be judged a dead
    /// producer's leftover: someone may be writing it right now.
    #[error("{SHM_DIR}/{name} exists but is empty or blank (last changed {age_secs:.1} s ago): not a ring yet; a producer removes such a file only once it is {grace_secs} s old. Remove it if it is a leftover (framering clean --force {name}), or choose another ring name")]
    Blank {
        /// Ring name.
        name: String,
        /// Seconds since the file last changed.
        age_secs: f64,
        /// The age from which it is reclaimed.
        grace_secs: u64,
    },
    /// A system call failed.
    #[error("ring {name:?}: {op} failed: {source}")]
    Io {
        /// Ring name.
        name: String,
        /// The operation.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Why [`crate::ConsumerBuilder::attach`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The ring could not be opened (absent, not ready, refused…).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The group name is invalid.
    #[error(transparent)]
    InvalidGroup(#[from] InvalidGroupName),
    /// The ring's frames are not the shape the consumer insisted on.
    #[error("ring {name:?} holds {ring} frames, but this consumer expects {expected} (leave the shape unset to adopt the ring's)")]
    ShapeMismatch {
        /// Ring name.
        name: String,
        /// The ring's shape.
        ring: FrameShape,
        /// The shape asked for.
        expected: FrameShape,
    },
    /// The consumer's [`Canceller`](crate::Canceller) was cancelled while
    /// it waited for the ring.
    #[error("cancelled while waiting for ring {name:?}")]
    Cancelled {
        /// Ring name.
        name: String,
    },
    /// Every consumer table entry is taken.
    #[error("ring {name:?} already has its maximum of {max} consumers attached")]
    TooManyConsumers {
        /// Ring name.
        name: String,
        /// Table size.
        max: u32,
    },
}

/// Why [`crate::Producer::loan`] returned no slot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoanError {
    /// No slot became free within the timeout (consumers hold them all, or
    /// with the block policy no group is subscribed, or every group has
    /// `max_queued` frames waiting).
    #[error("no free slot within {waited:?}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The ring's shared memory holds garbage.
    #[error(transparent)]
    Corrupt(#[from] RingCorrupt),
}

/// Why [`crate::WriteSlot::publish`] failed. The slot went back to the
/// producer's free pool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// /dev/shm could not hold the frames' memory (reserved in the
    /// background since the producer was created).
    #[error("not enough shared memory for ring {name:?}: it needs {needed} bytes but {SHM_DIR} has {available} bytes free; enlarge {SHM_DIR} (in Docker: --shm-size) or use fewer slots or smaller frames")]
    NoSpace {
        /// Ring name.
        name: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free in /dev/shm.
        available: u64,
    },
    /// Reserving the frames' memory failed otherwise.
    #[error("ring {name:?}: reserving the frames' memory failed: {source}")]
    Io {
        /// Ring name.
        name: String,
        /// The error.
        source: std::io::Error,
    },
    /// The ring's shared memory holds garbage.
    #[error(transparent)]
    Corrupt(#[from] RingCorrupt),
    /// [`crate::FrameMeta::user_meta`] is longer than the ring's per-frame
    /// capacity (the frame was not published; its slot went back to the
    /// free pool).
    #[error("user metadata of {len} bytes does not fit the ring's {capacity} bytes per frame (ProducerBuilder::user_meta_bytes)")]
    UserMetaTooLong {
        /// Bytes given.
        len: usize,
        /// Bytes per frame.
        capacity: usize,
    },
    /// The producer already ended the stream
    /// ([`crate::Producer::finish`]): a group whose frames all came back
    /// has ended its consumers' stream, so nothing more can be published.
    #[error(
        "ring {name:?} has ended its stream (Producer::finish): nothing can be published after it"
    )]
    Finished {
        /// Ring name.
        name: String,
    },
}

/// Why [`crate::Consumer::take`] returned no frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    /// No frame arrived within the timeout.
    #[error("no frame within {waited:?}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The producer refused the consumer's group: its group table is full.
    #[error(
        "ring {name:?} cannot take group {group:?}: it already has its maximum of {max} groups"
    )]
    GroupRefused {
        /// Ring name.
        name: String,
        /// The group asked for.
        group: String,
        /// Size of the group table.
        max: u32,
    },
    /// The consumer's [`Canceller`](crate::Canceller) was cancelled, and no
    /// frame was queued.
    #[error("cancelled while waiting for a frame of ring {name:?}")]
    Cancelled {
        /// Ring name.
        name: String,
    },
    /// The ring's shared memory holds garbage.
    #[error(transparent)]
    Corrupt(#[from] RingCorrupt),
}

/// Why [`Producer::drain`](crate::Producer::drain) or
/// [`Producer::wait_for_groups`](crate::Producer::wait_for_groups) returned
/// before what it waits for happened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// It did not happen within the timeout (the ring did not drain, or
    /// fewer groups subscribed). Waiting again may still succeed.
    #[error("not done within {waited:?}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The ring's shared memory holds garbage (the ring is now marked failed).
    #[error(transparent)]
    Corrupt(#[from] RingCorrupt),
}

impl WaitError {
    /// Whether this is [`WaitError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, WaitError::Timeout { .. })
    }
}

impl LoanError {
    /// Whether this is [`LoanError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, LoanError::Timeout { .. })
    }
}

impl TakeError {
    /// Whether this is [`TakeError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, TakeError::Timeout { .. })
    }

    /// Whether this is [`TakeError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TakeError::Cancelled { .. })
    }
}

/// Why [`crate::Frame::detach`] could not copy a frame out of its slot
/// (the frame stays held, returned with the error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetachError {
    /// The consumer was attached without
    /// [`crate::ConsumerBuilder::detachable`].
    #[error("ring {name:?}: this consumer cannot detach frames (attach it with `detachable()`)")]
    NotDetachable {
        /// Ring name.
        name: String,
    },
    /// Mapping memory for the copy or for the slot failed (out of memory,
    /// or of mappings: `vm.max_map_count`).
    #[error("ring {name:?}: could not copy the frame of slot {slot} out of the ring: {op} failed: {source}")]
    Io {
        /// Ring name.
        name: String,
        /// The frame's slot.
        slot: u32,
        /// The operation.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}
