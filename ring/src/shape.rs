//! The shape of the frames a ring holds.

use std::fmt;

/// Height × width × channels of every frame in a ring: `u8` pixels,
/// row-major, channels interleaved (HWC), so a frame is
/// `height * width * channels` bytes and pixel `(y, x)` starts at byte
/// `(y * width + x) * channels`.
///
/// ```
/// use framering_ring::FrameShape;
///
/// let s = FrameShape::new(720, 1080, 3);
/// assert_eq!(s.bytes(), 720 * 1080 * 3);
/// assert_eq!(s.to_string(), "720x1080x3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameShape {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Bytes per pixel: 1 (gray), 3 (RGB), 4 (RGBA); the ring accepts 1 to 4.
    pub channels: u32,
}

impl FrameShape {
    /// A shape of `height` rows, `width` columns and `channels` bytes per pixel.
    pub const fn new(height: u32, width: u32, channels: u32) -> Self {
        Self {
            height,
            width,
            channels,
        }
    }

    /// Bytes of one frame.
    pub const fn bytes(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }
}

impl fmt::Display for FrameShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)
    }
}
