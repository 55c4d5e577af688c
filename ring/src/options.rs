//! What producers and consumers are configured with, and the metadata that
//! travels with each frame.

use crate::error::InvalidGroupName;
use crate::protocol::layout::{GROUP_NAME_MAX, NAME_MAX};

/// What the producer does when no slot is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for a consumer to return one: lossless.
    #[default]
    Block,
    /// Withdraw the oldest published frame nobody is reading and reuse its
    /// slot: for live sources that must never be slowed down. A frame being
    /// read is never withdrawn.
    DropOldest,
}

impl std::fmt::Display for Backpressure {
    /// `block` or `drop_oldest`, as configuration files spell them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backpressure::Block => "block",
            Backpressure::DropOldest => "drop_oldest",
        })
    }
}

/// What a producer's input is doing, as it tells status displays
/// ([`Producer::set_input_state`](crate::Producer::set_input_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputState {
    /// Reading, or nothing said: if nothing is published, look at the
    /// consumers and slots.
    #[default]
    Reading,
    /// Waiting for its input (a camera, a pipe): nothing to publish yet.
    Waiting,
}

/// The group consumers join unless told otherwise, and the group a producer
/// declares unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// Checks a group name: 1 to 32 bytes of ASCII letters, digits, `_`, `-`
/// or `.`.
///
/// ```
/// assert!(framering_ring::validate_group_name("preview-1").is_ok());
/// assert!(framering_ring::validate_group_name("no spaces").is_err());
/// ```
pub fn validate_group_name(name: &str) -> Result<(), InvalidGroupName> {
    let ok = !name.is_empty()
        && name.len() <= GROUP_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidGroupName(name.into()))
    }
}

/// Checks a ring name: it becomes `/dev/shm/NAME`, so 1 to 200 ASCII
/// letters, digits, `.`, `_` or `-`, not starting with `.`.
///
/// ```
/// assert!(framering_ring::validate_ring_name("cam-0").is_ok());
/// assert!(framering_ring::validate_ring_name("../etc").is_err());
/// ```
pub fn validate_ring_name(name: &str) -> Result<(), crate::error::InvalidName> {
    crate::platform::segment::validate_name(name)
}

/// What the producer says about a frame it publishes
/// ([`crate::WriteSlot::publish`]).
///
/// ```
/// use framering_ring::FrameMeta;
///
/// let meta = FrameMeta::new()
///     .source(b"cam0/000123.jpg")
///     .src_size(1920, 1080)
///     .pts_ns(40_000_000)
///     .user_meta(br#"{"exposure_us": 8000}"#);
/// assert_eq!(meta.src_width, 1920);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameMeta<'a> {
    /// Where the frame came from (a path, a URL): up to 96 bytes are kept.
    pub source: &'a [u8],
    /// Width of the source image before it was fitted to the ring's shape.
    pub src_width: u32,
    /// Height of the source image before it was fitted to the ring's shape.
    pub src_height: u32,
    /// When the frame was captured, CLOCK_REALTIME nanoseconds since the
    /// Unix epoch; 0: the time of publishing (the publish stamp's
    /// CLOCK_MONOTONIC reading plus the offset between the two clocks, read
    /// again every 20 ms: a step of the wall clock shows within 20 ms).
    pub capture_ns: u64,
    /// Presentation timestamp in nanoseconds (video), if any.
    pub pts_ns: Option<i64>,
    /// Bytes for the frame's user metadata area (at most
    /// [`crate::Producer::user_meta_capacity`]): copied beside the pixels.
    pub user_meta: &'a [u8],
}

impl<'a> FrameMeta<'a> {
    /// No source name, source size 0×0, captured when published, no
    /// presentation timestamp, no user metadata.
    pub const fn new() -> Self {
        Self {
            source: &[],
            src_width: 0,
            src_height: 0,
            capture_ns: 0,
            pts_ns: None,
            user_meta: &[],
        }
    }

    /// Sets the capture time (CLOCK_REALTIME ns, e.g. from a camera's
    /// driver, or a remote producer's).
    pub const fn capture_ns(mut self, ns: u64) -> Self {
        self.capture_ns = ns;
        self
    }

    /// Sets the presentation timestamp, in nanoseconds.
    pub const fn pts_ns(mut self, ns: i64) -> Self {
        self.pts_ns = Some(ns);
        self
    }

    /// Sets the user metadata bytes (copied into the slot at publish; more
    /// than the ring's capacity is a [`crate::PublishError::UserMetaTooLong`]).
    pub const fn user_meta(mut self, bytes: &'a [u8]) -> Self {
        self.user_meta = bytes;
        self
    }

    /// Sets the source name (truncated to 96 bytes in the ring).
    pub const fn source(mut self, source: &'a [u8]) -> Self {
        self.source = source;
        self
    }

    /// Sets the source size.
    pub const fn src_size(mut self, width: u32, height: u32) -> Self {
        self.src_width = width;
        self.src_height = height;
        self
    }
}

/// Metadata of a taken frame, copied out of the segment when it was taken
/// (no allocation), so it stays valid after the frame is handed back.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Sequence number: 0, 1, 2, … in publish order.
    pub seq: u64,
    /// When it was published: CLOCK_MONOTONIC nanoseconds (compare with
    /// `clock_gettime(CLOCK_MONOTONIC)` in the reading process).
    pub publish_ns: u64,
    /// When it was captured: CLOCK_REALTIME nanoseconds (compare with
    /// `clock_gettime(CLOCK_REALTIME)`, also on another host); the publish time
    /// unless the producer said otherwise.
    pub capture_ns: u64,
    /// Presentation timestamp in nanoseconds, if the producer gave one.
    pub pts_ns: Option<i64>,
    /// Width of the source before fitting.
    pub src_width: u32,
    /// Height of the source before fitting.
    pub src_height: u32,
    /// How many times this frame was delivered before, to consumers that
    /// died holding it (0 normally).
    pub redeliveries: u32,
    /// Index of the slot that holds it.
    pub slot: u32,
    pub(crate) source: [u8; NAME_MAX],
    pub(crate) source_len: usize,
    /// Valid bytes of the user metadata (checked against the capacity).
    pub(crate) user_len: usize,
}

impl FrameInfo {
    /// The source name's bytes (as the producer gave them, truncated).
    pub fn source(&self) -> &[u8] {
        &self.source[..self.source_len]
    }
}
