//! Recording frames into MCAP files and replaying them (the `mcap` crate
//! does the container: chunks, indexes, summary, zstd/lz4; uncompressed
//! chunks are written and read by this module's own code, which moves a
//! frame's pixels between the slot and the file with a single copy).
//!
//! A recording has, per ring, an image channel `/<ring>/image`
//! (`foxglove.RawImage` in protobuf by default, `sensor_msgs/msg/Image` in
//! CDR with [`ImageSchema::Ros2`], or the compressed variants) and a
//! channel `/<ring>/frame_meta` of `framering.FrameMeta` (protobuf): the
//! frame's sequence number, capture and publish times, presentation
//! timestamp, source name and size, and user metadata. Both messages of a
//! frame carry the frame's sequence number (as MCAP's 32-bit message
//! sequence), its capture time as log time, and sit in the same chunk.
//! Readers that know only the image schemas ignore the second channel.

mod direct;
mod format;
mod reader;
mod schema;
mod writer;

pub use format::{encoding, is_mcap, Compression, FrameStamp, ImageCoding, ImageSchema, McapError};
pub use reader::{Replay, ReplayFrame, ReplayOptions};
pub use writer::{Recorder, RecorderOptions};
