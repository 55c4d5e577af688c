//! Images, video and files: decoding inputs into frame buffers, finding
//! inputs, writing outputs. Knows nothing of the ring (no atomics, no
//! offsets) nor of the configuration: callers pass plain values.

pub mod decode;
pub mod sink;
pub mod source;
pub mod video;
mod y4m;

/// The shape of a frame buffer: `height × width × channels` bytes, row-major,
/// channels interleaved. Shared by decoding, video and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
    /// 1, 3 or 4.
    pub channels: u32,
}

impl FrameShape {
    /// Bytes of one frame.
    pub fn bytes(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }
}
