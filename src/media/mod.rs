//! Images, video and files: decoding inputs into frame buffers, finding
//! inputs, writing outputs. Knows nothing of the ring (no atomics, no
//! offsets) nor of the configuration: callers pass plain values. The frame
//! shape and element type are the ring's plain value types.

pub mod decode;
pub mod mcap;
pub mod sink;
pub mod source;
pub mod video;
mod y4m;

/// The shape of a frame buffer (`height × width × channels` elements of a
/// [`Dtype`], row-major, channels interleaved): the ring's own type, shared
/// by decoding, video and outputs.
pub use framering_ring::{Dtype, FrameShape};
