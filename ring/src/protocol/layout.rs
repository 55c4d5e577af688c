//! The byte layout of a ring segment: what lies where, computed from the
//! shape alone, so that a process attaching to a segment can recompute every
//! offset and refuse a header that disagrees with it.
//!
//! All integers are native-endian (the segment never leaves the host); all
//! offsets are from the start of the segment. See README.md for a map a
//! Python/numpy reader can follow.
//!
//! ```text
//! 0            Header (512 bytes; the rest of the first page reserved)
//! 4096         group table: max_groups × 384 B                 (GroupEntry; its ready
//!              queue's tail @+0, head @+128)
//! (128-align)  ready queue cells: max_groups × ready_cap × u64
//! (128-align)  claim words: max_groups × slots × u64          (crate::protocol::slot, per group)
//! (128-align)  producer's slot words: slots × u64             (free / writing / published)
//! (128-align)  slot metadata: slots × 192 B                    (SlotMeta)
//! (128-align)  consumer table: max_consumers × 384 B           (ConsumerEntry)
//! (128-align)  return queue cells: max_consumers × return_cap × u64
//! (4096-align) frames: slots × slot_stride, each H×W×C of the dtype,
//!              row-major, HWC; then (64-align, at `user_meta_offset` from
//!              the frame's start) the frame's user metadata bytes
//! ```

use crate::error::ShapeError;
use crate::protocol::event::Event;
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::ready_queue::MAX_SLOTS;
use crate::protocol::sync::{AtomicU32, AtomicU64, Padded};
use std::mem::size_of;

/// First 8 bytes of every framering segment.
pub(crate) const MAGIC: [u8; 8] = *b"FRAMERNG";
/// Version of this layout; bumped on any change of it. 0 means "still being
/// initialised" and is never a valid version.
pub(crate) const LAYOUT_VERSION: u32 = 7;
/// Page size the layout aligns frames to (fixed, so the layout does not depend
/// on the machine).
pub(crate) const PAGE: u64 = 4096;
/// Bytes of a source name kept per frame.
pub(crate) const NAME_MAX: usize = 96;
/// Limits on the shape (also checked by the configuration, with key names).
pub(crate) const MAX_DIM: u32 = 32_768;
/// The most slots a ring may have.
pub(crate) const MAX_RING_SLOTS: u32 = 4096;
/// The most consumers that can be attached at once (slot words carry an 8-bit
/// owner index).
pub(crate) const MAX_CONSUMERS: u32 = 64;
/// Most consumer groups a ring can have (a producer-side bit mask per slot).
pub(crate) const MAX_GROUPS: u32 = 64;
/// Longest ring name, in bytes (it becomes a file name under /dev/shm).
pub(crate) const RING_NAME_MAX: usize = 200;
/// Longest group name, in bytes.
pub(crate) const GROUP_NAME_MAX: usize = 32;
/// Most bytes of user metadata per frame.
pub(crate) const USER_META_MAX: u32 = 65_536;
/// Bytes of user metadata per frame unless the producer asks otherwise.
pub(crate) const USER_META_DEFAULT: u32 = 256;
/// [`SlotMeta::flags`]: the frame has a presentation timestamp.
pub(crate) const META_HAS_PTS: u32 = 1;

const _: () = assert!(MAX_RING_SLOTS <= MAX_SLOTS);

/// Header flag: a producer is running and publishing.
pub(crate) const FLAG_RUNNING: u32 = 1;
/// Header flag: the producer published its last frame.
pub(crate) const FLAG_END_OF_STREAM: u32 = 2;
/// Header flag: after end of stream, every slot came back to the producer.
pub(crate) const FLAG_DRAINED: u32 = 4;
/// [`Header::flags`]: the producer holds its liveness lock
/// ([`crate::platform::liveness`]); without it, its liveness is judged by pid.
pub(crate) const FLAG_LIVENESS_LOCK: u32 = 0x100;
/// The byte of the segment file whose open-file-description lock
/// ([`crate::platform::file_lock`]) the producer takes right after creating the file
/// and holds until it exits: the proof that it is alive
/// ([`crate::platform::liveness`]), and the token anyone must hold to remove the name
/// (a reclaimer, `clean`), so that judging a ring dead and removing it is one
/// step with respect to every other creator and reclaimer.
pub(crate) const PRODUCER_LOCK_BYTE: u64 = 0;
/// The byte whose lock a reclaimer (or `clean`) takes *before* the
/// producer's: one reclaimer at a time judges a name, so a reclaimer that
/// finds [`PRODUCER_LOCK_BYTE`] held knows a producer holds it (alive, or
/// still creating its ring), not another reclaimer. Beyond any consumer's
/// byte; locks past the end of a file are allowed.
pub(crate) const RECLAIM_LOCK_BYTE: u64 = 1 << 40;
/// Header flag: the producer failed (its reason in `Header::fail_reason`);
/// consumers take what was published, then report it.
pub(crate) const FLAG_FAILED: u32 = 8;

/// The shape and limits a ring is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingSpec {
    /// Number of frame slots.
    pub(crate) slots: u32,
    /// Frame height in pixels.
    pub(crate) height: u32,
    /// Frame width in pixels.
    pub(crate) width: u32,
    /// Elements per pixel (1 gray, 3 RGB, 4 RGBA).
    pub(crate) channels: u32,
    /// The element type's code ([`crate::Dtype`]).
    pub(crate) dtype: u32,
    /// Bytes of user metadata per frame.
    pub(crate) user_meta_bytes: u32,
    /// Size of the consumer table.
    pub(crate) max_consumers: u32,
    /// Size of the consumer-group table.
    pub(crate) max_groups: u32,
}

/// Everything about a segment's layout, derived from a [`Shape`]. Stored
/// verbatim in the header; `repr(C)` with no padding, plain integers only.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Size of the whole segment in bytes.
    pub(crate) total_size: u64,
    /// Number of slots.
    pub(crate) slots: u32,
    /// Frame height.
    pub(crate) height: u32,
    /// Frame width.
    pub(crate) width: u32,
    /// Elements per pixel.
    pub(crate) channels: u32,
    /// `height × width × channels × dtype size`.
    pub(crate) frame_bytes: u64,
    /// Distance between two frames: `user_meta_offset + user_meta_bytes`
    /// rounded up to a page.
    pub(crate) slot_stride: u64,
    /// Cells of the ready queue (power of two, ≥ 2 × slots).
    pub(crate) ready_cap: u32,
    /// Cells of each consumer's return queue (power of two, ≥ slots).
    pub(crate) return_cap: u32,
    /// Entries of the consumer table.
    pub(crate) max_consumers: u32,
    /// Bytes of source name per slot.
    pub(crate) name_max: u32,
    /// Entries of the group table.
    pub(crate) max_groups: u32,
    /// The element type's code: 0 `u8`, 1 `u16`, 2 `f32` ([`crate::Dtype`]).
    pub(crate) dtype: u32,
    /// Offset of the [`GroupEntry`] table.
    pub(crate) off_groups: u64,
    /// Offset of the ready queues' cells (`ready_cap` per group).
    pub(crate) off_ready_cells: u64,
    /// Offset of the claim words (`slots` per group; see [`crate::protocol::slot`]).
    pub(crate) off_claims: u64,
    /// Offset of the producer's per-slot words.
    pub(crate) off_slot_state: u64,
    /// Offset of the [`SlotMeta`] array.
    pub(crate) off_slot_meta: u64,
    /// Offset of the [`ConsumerEntry`] table.
    pub(crate) off_consumers: u64,
    /// Offset of the return queues' cells.
    pub(crate) off_return_cells: u64,
    /// Offset of frame 0.
    pub(crate) off_data: u64,
    /// Capacity of each frame's user metadata, in bytes.
    pub(crate) user_meta_bytes: u32,
    /// Zero.
    pub(crate) pad: u32,
    /// Where a frame's user metadata starts, from the frame's first byte
    /// (`frame_bytes` rounded up to 64).
    pub(crate) user_meta_offset: u64,
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? & !(a - 1))
}

fn check(what: &'static str, got: u32, min: u32, max: u32) -> Result<(), ShapeError> {
    if got < min || got > max {
        return Err(ShapeError::OutOfRange {
            what,
            min: min as u64,
            max: max as u64,
            got: got as u64,
        });
    }
    Ok(())
}

impl Geometry {
    /// Computes the layout of a shape, with checked arithmetic throughout.
    pub(crate) fn compute(shape: RingSpec) -> Result<Geometry, ShapeError> {
        check("slots", shape.slots, 1, MAX_RING_SLOTS)?;
        check("height", shape.height, 1, MAX_DIM)?;
        check("width", shape.width, 1, MAX_DIM)?;
        check("channels", shape.channels, 1, 4)?;
        check("max_consumers", shape.max_consumers, 1, MAX_CONSUMERS)?;
        check("max_groups", shape.max_groups, 1, MAX_GROUPS)?;
        check("user_meta_bytes", shape.user_meta_bytes, 0, USER_META_MAX)?;
        let dtype = crate::shape::Dtype::from_code(shape.dtype).ok_or(ShapeError::OutOfRange {
            what: "dtype",
            min: 0,
            max: 2,
            got: shape.dtype as u64,
        })?;
        let o = ShapeError::Overflow;
        let frame_bytes = (shape.height as u64)
            .checked_mul(shape.width as u64)
            .and_then(|x| x.checked_mul(shape.channels as u64))
            .and_then(|x| x.checked_mul(dtype.size() as u64))
            .ok_or(o.clone())?;
        let user_meta_offset = align_up(frame_bytes, 64).ok_or(o.clone())?;
        let slot_stride = user_meta_offset
            .checked_add(shape.user_meta_bytes as u64)
            .and_then(|b| align_up(b, PAGE))
            .ok_or(o.clone())?;
        let ready_cap = (2 * shape.slots).next_power_of_two();
        let return_cap = shape.slots.next_power_of_two();
        let slots = shape.slots as u64;
        let groups = shape.max_groups as u64;
        let off_groups = PAGE;
        let off_ready_cells = off_groups + groups * size_of::<GroupEntry>() as u64;
        let off_claims =
            align_up(off_ready_cells + groups * ready_cap as u64 * 8, 128).ok_or(o.clone())?;
        let off_slot_state = align_up(off_claims + groups * slots * 8, 128).ok_or(o.clone())?;
        let off_slot_meta = align_up(off_slot_state + slots * 8, 128).ok_or(o.clone())?;
        let off_consumers =
            align_up(off_slot_meta + slots * size_of::<SlotMeta>() as u64, 128).ok_or(o.clone())?;
        let off_return_cells = align_up(
            off_consumers + shape.max_consumers as u64 * size_of::<ConsumerEntry>() as u64,
            128,
        )
        .ok_or(o.clone())?;
        let off_data = align_up(
            off_return_cells + shape.max_consumers as u64 * return_cap as u64 * 8,
            PAGE,
        )
        .ok_or(o.clone())?;
        let total_size = slot_stride
            .checked_mul(slots)
            .and_then(|d| d.checked_add(off_data))
            .filter(|&t| t <= isize::MAX as u64)
            .ok_or(o)?;
        Ok(Geometry {
            total_size,
            slots: shape.slots,
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            frame_bytes,
            slot_stride,
            ready_cap,
            return_cap,
            max_consumers: shape.max_consumers,
            name_max: NAME_MAX as u32,
            max_groups: shape.max_groups,
            dtype: shape.dtype,
            off_groups,
            off_ready_cells,
            off_claims,
            off_slot_state,
            off_slot_meta,
            off_consumers,
            off_return_cells,
            off_data,
            user_meta_bytes: shape.user_meta_bytes,
            pad: 0,
            user_meta_offset,
        })
    }

    /// The shape this geometry was computed from.
    pub(crate) fn spec(&self) -> RingSpec {
        RingSpec {
            slots: self.slots,
            height: self.height,
            width: self.width,
            channels: self.channels,
            dtype: self.dtype,
            user_meta_bytes: self.user_meta_bytes,
            max_consumers: self.max_consumers,
            max_groups: self.max_groups,
        }
    }

    /// The frames' shape (of a geometry that [`Geometry::compute`] made or
    /// accepted: an unknown dtype code cannot get here).
    pub(crate) fn frame_shape(&self) -> crate::shape::FrameShape {
        let dtype = crate::shape::Dtype::from_code(self.dtype).unwrap_or_default();
        crate::shape::FrameShape::new(self.height, self.width, self.channels).with_dtype(dtype)
    }

    /// Offset of frame `slot`'s first byte (`slot` must be `< slots`).
    pub(crate) fn frame_offset(&self, slot: u32) -> u64 {
        self.off_data + slot as u64 * self.slot_stride
    }
}

/// The segment header at offset 0.
///
/// The creator writes everything with the segment still mode 0600, then
/// stores `layout_version` last (Release); an opener loads it first
/// (Acquire) and treats 0 as "not ready yet".
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub(crate) magic: [u8; 8],
    /// [`LAYOUT_VERSION`], or 0 while initialising.
    pub(crate) layout_version: AtomicU32,
    /// `size_of::<Header>()`.
    pub(crate) header_bytes: u32,
    /// The creating crate's version, NUL-padded (informational).
    pub(crate) crate_version: [u8; 16],
    /// The layout, stored verbatim.
    pub(crate) geometry: Geometry,
    /// The producer's pid (0: none).
    pub(crate) producer_pid: AtomicU32,
    /// [`FLAG_RUNNING`] | [`FLAG_END_OF_STREAM`] | [`FLAG_DRAINED`] |
    /// [`FLAG_FAILED`].
    pub(crate) flags: AtomicU32,
    /// The producer's start time (see [`crate::platform::process`]).
    pub(crate) producer_start_ticks: AtomicU64,
    /// Frames published so far (the next sequence number).
    pub(crate) published: AtomicU64,
    /// Frames re-published after their consumer died or handed them back
    /// unconsumed.
    pub(crate) redelivered: AtomicU64,
    /// Inputs the producer skipped.
    pub(crate) skipped: AtomicU64,
    /// Frames dropped unconsumed under the drop-oldest policy, or published
    /// while no group was subscribed (each group also counts its own).
    pub(crate) dropped: AtomicU64,
    /// [`BACKPRESSURE_BLOCK`] or [`BACKPRESSURE_DROP_OLDEST`].
    pub(crate) backpressure: AtomicU32,
    /// Bumped by a consumer after it asks to join or leave (the producer
    /// looks at the consumer table when it changes).
    pub(crate) roster: AtomicU32,
    /// With [`FLAG_FAILED`]: why the producer failed
    /// ([`crate::FailReason`]'s code; written before the flag).
    pub(crate) fail_reason: AtomicU32,
    /// 1 while the producer waits for its input (not for consumers): for
    /// inspection tools.
    pub(crate) waiting_input: AtomicU32,
    /// The source's frame rate as `num << 32 | den` (0: not known), for a
    /// consumer writing a video: written by the creator before the version.
    pub(crate) frame_rate: AtomicU64,
    reserved: [u64; 1],
    /// Bumped by the producer after each publish and at end of stream;
    /// consumers wait on it.
    pub(crate) ready_event: Padded<Event>,
    /// Bumped by consumers after returning a slot; the producer waits on it.
    pub(crate) free_event: Padded<Event>,
}

/// Metadata of the frame in a slot. Written by the producer while it owns the
/// slot, read by the consumer that claimed it (the slot word's Release/Acquire
/// orders them; the fields are atomics so that a misbehaving peer cannot make
/// the reads undefined behaviour).
///
/// Every fixed-size field sits in the first cache line and the source name
/// after it, written and read only as far as `name_len` reaches: a frame
/// without a name (a video, raw frames, a benchmark) moves one line of
/// metadata from the producer's core to the consumer's, a named one two or
/// three.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SlotMeta {
    /// Sequence number (0, 1, 2, … in publish order).
    pub(crate) seq: AtomicU64,
    /// Publish time, CLOCK_MONOTONIC nanoseconds.
    pub(crate) publish_ns: AtomicU64,
    /// Capture time, CLOCK_REALTIME nanoseconds (comparable across hosts).
    pub(crate) capture_ns: AtomicU64,
    /// Presentation timestamp in nanoseconds (an `i64`'s bits), valid with
    /// [`META_HAS_PTS`].
    pub(crate) pts_ns: AtomicU64,
    /// Width of the source image before fitting to the slot.
    pub(crate) src_width: AtomicU32,
    /// Height of the source image before fitting to the slot.
    pub(crate) src_height: AtomicU32,
    /// Valid bytes of `name` (untrusted: clamped when read).
    pub(crate) name_len: AtomicU32,
    /// How many times this frame was delivered before (0 normally).
    pub(crate) redeliveries: AtomicU32,
    /// Valid bytes of the frame's user metadata (untrusted: clamped to the
    /// capacity when read).
    pub(crate) user_len: AtomicU32,
    /// [`META_HAS_PTS`].
    pub(crate) flags: AtomicU32,
    reserved0: u64,
    /// Source name (path), UTF-8 where the source was; truncated. Only the
    /// words that hold its `name_len` bytes are written (the last one
    /// NUL-padded): bytes beyond are left from earlier frames.
    pub(crate) name: [AtomicU64; NAME_MAX / 8],
    reserved: [u64; 4],
}

/// One attached consumer.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ConsumerEntry {
    /// 0 when free; else [`crate::platform::process::ProcessId::owner_word`].
    pub(crate) owner: AtomicU64,
    /// Full start time of the owner.
    pub(crate) start_ticks: AtomicU64,
    /// Last sign of life, CLOCK_MONOTONIC ns.
    pub(crate) heartbeat_ns: AtomicU64,
    /// Frames taken by this consumer.
    pub(crate) frames: AtomicU64,
    /// Index of the consumer's group in the group table, valid once `join`
    /// is [`JOIN_ACTIVE`] (written by the producer).
    pub(crate) group: AtomicU32,
    /// Owner pid, for display.
    pub(crate) pid: AtomicU32,
    /// [`JOIN_NONE`] → [`JOIN_REQUESTED`] (consumer) → [`JOIN_ACTIVE`]
    /// (producer) → [`JOIN_LEAVING`] (consumer); the producer frees the entry.
    pub(crate) join: AtomicU32,
    /// The backpressure the consumer asks for if its join creates the
    /// group: [`POLICY_RING`], [`BACKPRESSURE_BLOCK`] + 1 or
    /// [`BACKPRESSURE_DROP_OLDEST`] + 1 (untrusted).
    pub(crate) policy: AtomicU32,
    /// Frames this consumer skipped to stay on the newest (`--latest`).
    pub(crate) skipped: AtomicU64,
    /// Name of the group asked for (UTF-8, NUL-padded; untrusted).
    pub(crate) group_name: [AtomicU64; GROUP_NAME_MAX / 8],
    /// 1 while the owner holds its liveness lock ([`crate::platform::liveness`]); 0
    /// where such locks do not work (liveness by pid then).
    pub(crate) liveness_lock: AtomicU32,
    /// Zero.
    pub(crate) pad2: u32,
    reserved: [u64; 4],
    /// This consumer's return queue (cells in the return-cells region).
    pub(crate) ret: QueueCtrl,
}

/// One consumer group: every group receives every frame published while it
/// is active; its consumers share them. Written only by the producer, except
/// the queue's head, which the group's consumers advance.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct GroupEntry {
    /// The group's ready queue (cells in the ready-cells region).
    pub(crate) ready: QueueCtrl,
    /// [`GROUP_UNUSED`], [`GROUP_ACTIVE`] (has consumers, receives frames),
    /// [`GROUP_DECLARED`] (receives frames whether or not it has consumers)
    /// or [`GROUP_LINGERING`] (its last consumer died; receives frames until
    /// `linger_until_ns`).
    pub(crate) state: AtomicU32,
    /// Consumers in the group.
    pub(crate) members: AtomicU32,
    /// First sequence number published into the group since it last became
    /// active.
    pub(crate) since_seq: AtomicU64,
    /// Frames published into the group.
    pub(crate) delivered: AtomicU64,
    /// Frames the group lost: dropped unconsumed, or released when its last
    /// consumer left.
    pub(crate) dropped: AtomicU64,
    /// Group name (UTF-8, NUL-padded).
    pub(crate) name: [AtomicU64; GROUP_NAME_MAX / 8],
    /// Its backpressure: [`BACKPRESSURE_BLOCK`] or
    /// [`BACKPRESSURE_DROP_OLDEST`].
    pub(crate) policy: AtomicU32,
    /// 1 once the stream ended ([`FLAG_END_OF_STREAM`]) and every frame
    /// published into the group came back: its consumers' `take` ends the
    /// stream at once instead of waiting for the other groups to drain
    /// ([`FLAG_DRAINED`]). Only the producer writes it (Release, after it
    /// collected the group's last return); 0 otherwise. This word was a zero
    /// pad in earlier builds of this layout: a consumer that predates it
    /// ignores it, and a producer that predates it leaves it 0, so its
    /// consumers wait for [`FLAG_DRAINED`] as they always did.
    pub(crate) drained: AtomicU32,
    /// [`GROUP_LINGERING`]: CLOCK_MONOTONIC ns at which it is released.
    pub(crate) linger_until_ns: AtomicU64,
    reserved: [u64; 6],
}

/// [`ConsumerEntry::join`]: not asked yet.
pub(crate) const JOIN_NONE: u32 = 0;
/// [`ConsumerEntry::join`]: the consumer asked to join `group_name`.
pub(crate) const JOIN_REQUESTED: u32 = 1;
/// [`ConsumerEntry::join`]: the producer admitted it into `group`.
pub(crate) const JOIN_ACTIVE: u32 = 2;
/// [`ConsumerEntry::join`]: the consumer returned every frame and left.
pub(crate) const JOIN_LEAVING: u32 = 3;
/// [`ConsumerEntry::join`]: the producer refused it (bad name, table full).
pub(crate) const JOIN_REFUSED: u32 = 4;
/// [`ConsumerEntry::join`]: the consumer left after handing frames back
/// unconsumed (its output failed): its group lingers as if it had died.
pub(crate) const JOIN_LEAVING_FAILED: u32 = 5;

/// [`GroupEntry::state`]: free.
pub(crate) const GROUP_UNUSED: u32 = 0;
/// [`GroupEntry::state`]: subscribed while it has consumers.
pub(crate) const GROUP_ACTIVE: u32 = 1;
/// [`GroupEntry::state`]: declared by the producer; always subscribed.
pub(crate) const GROUP_DECLARED: u32 = 2;
/// [`GroupEntry::state`]: ad hoc, its last consumer died; subscribed (its
/// frames kept for a restarted consumer) until its linger period ends.
pub(crate) const GROUP_LINGERING: u32 = 3;
/// [`ConsumerEntry::policy`]: whatever the ring's default is.
pub(crate) const POLICY_RING: u32 = 0;

/// [`Header::backpressure`]: the producer waits for a free slot (lossless).
pub(crate) const BACKPRESSURE_BLOCK: u32 = 0;
/// [`Header::backpressure`]: the oldest untaken frame is dropped.
pub(crate) const BACKPRESSURE_DROP_OLDEST: u32 = 1;

// The documented sizes (loom's atomics are larger: models never map a segment).
#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Header>() == 512);
    assert!(size_of::<Geometry>() == 144);
    assert!(size_of::<GroupEntry>() == 384);
    assert!(size_of::<SlotMeta>() == 192);
    assert!(size_of::<ConsumerEntry>() == 384);
    assert!(size_of::<QueueCtrl>() == 256);
};

#[cfg(loom)]
impl ConsumerEntry {
    /// A free entry, for models (a new segment's zero bytes are one).
    pub(crate) fn new() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            owner: z(),
            start_ticks: z(),
            heartbeat_ns: z(),
            frames: z(),
            group: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            join: AtomicU32::new(0),
            policy: AtomicU32::new(0),
            skipped: z(),
            group_name: [z(), z(), z(), z()],
            liveness_lock: AtomicU32::new(0),
            pad2: 0,
            reserved: [0; 4],
            ret: QueueCtrl::new(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::offset_of;

    fn shape(slots: u32, h: u32, w: u32, c: u32) -> RingSpec {
        RingSpec {
            slots,
            height: h,
            width: w,
            channels: c,
            dtype: 0,
            user_meta_bytes: USER_META_DEFAULT,
            max_consumers: 16,
            max_groups: 4,
        }
    }

    #[test]
    fn documented_offsets() {
        assert_eq!(offset_of!(Header, layout_version), 8);
        assert_eq!(offset_of!(Header, geometry), 32);
        assert_eq!(offset_of!(Header, producer_pid), 176);
        assert_eq!(offset_of!(Header, dropped), 216);
        assert_eq!(offset_of!(Header, backpressure), 224);
        assert_eq!(offset_of!(Header, frame_rate), 240);
        assert_eq!(offset_of!(GroupEntry, state), 256);
        assert_eq!(offset_of!(GroupEntry, name), 288);
        assert_eq!(offset_of!(ConsumerEntry, group_name), 56);
        assert_eq!(offset_of!(ConsumerEntry, policy), 44);
        assert_eq!(offset_of!(ConsumerEntry, liveness_lock), 88);
        assert_eq!(offset_of!(GroupEntry, policy), 320);
        assert_eq!(offset_of!(GroupEntry, linger_until_ns), 328);
        assert_eq!(offset_of!(Header, ready_event), 256);
        assert_eq!(offset_of!(Header, free_event), 384);
        assert_eq!(offset_of!(Geometry, off_data), 120);
        assert_eq!(offset_of!(SlotMeta, capture_ns), 16);
        assert_eq!(offset_of!(SlotMeta, src_width), 32);
        assert_eq!(offset_of!(SlotMeta, user_len), 48);
        assert_eq!(offset_of!(SlotMeta, flags), 52);
        // The fixed fields in one line, the name from the next.
        assert_eq!(offset_of!(SlotMeta, name), 64);
        assert_eq!(offset_of!(Geometry, dtype), 60);
        assert_eq!(offset_of!(Geometry, user_meta_bytes), 128);
        assert_eq!(offset_of!(Geometry, user_meta_offset), 136);
        assert_eq!(offset_of!(ConsumerEntry, ret), 128);
    }

    #[test]
    fn frames_are_page_aligned_and_disjoint() {
        let g = Geometry::compute(shape(7, 720, 1080, 3)).unwrap();
        assert_eq!(g.frame_bytes, 720 * 1080 * 3);
        assert_eq!(g.slot_stride % PAGE, 0);
        assert!(g.slot_stride >= g.frame_bytes);
        assert_eq!(g.off_data % PAGE, 0);
        assert_eq!(g.ready_cap, 16);
        assert_eq!(g.return_cap, 8);
        assert!(g.off_return_cells + 16 * 8 * 8 <= g.off_data);
        assert_eq!(g.total_size, g.off_data + 7 * g.slot_stride);
        assert_eq!(Geometry::compute(g.spec()).unwrap(), g);
    }

    #[test]
    fn out_of_range_and_overflow() {
        assert!(matches!(
            Geometry::compute(shape(0, 1, 1, 1)),
            Err(ShapeError::OutOfRange { what: "slots", .. })
        ));
        assert!(Geometry::compute(shape(1, 1, 1, 5)).is_err());
        assert!(Geometry::compute(shape(1, 0, 1, 1)).is_err());
        assert!(Geometry::compute(shape(4096, 32768, 32768, 4)).is_ok());
        let bad_dtype = RingSpec {
            dtype: 3,
            ..shape(1, 1, 1, 1)
        };
        assert!(matches!(
            Geometry::compute(bad_dtype),
            Err(ShapeError::OutOfRange { what: "dtype", .. })
        ));
    }

    #[test]
    fn dtype_and_user_meta_shape_the_slot() {
        let f32 = RingSpec {
            dtype: crate::Dtype::F32.code(),
            user_meta_bytes: 4096,
            ..shape(2, 10, 10, 3)
        };
        let g = Geometry::compute(f32).unwrap();
        assert_eq!(g.frame_bytes, 10 * 10 * 3 * 4);
        assert_eq!(g.user_meta_offset, 1216);
        assert_eq!(g.slot_stride, 2 * PAGE);
        assert_eq!(g.frame_shape().dtype, crate::Dtype::F32);
        // 720×1080×3 leaves 1920 bytes of its last page: 256 B of metadata
        // cost no memory.
        let hd = Geometry::compute(shape(2, 720, 1080, 3)).unwrap();
        assert_eq!(hd.slot_stride, 570 * PAGE);
    }
}
