//! The shape of the frames a ring holds: height × width × channels of one
//! element type.

use std::fmt;
use std::str::FromStr;

/// The element type of a ring's frames. Frames are stored native-endian;
/// every frame starts on a page boundary, so its bytes can be viewed as a
/// slice of this type without a copy.
///
/// ```
/// use framering_ring::Dtype;
///
/// assert_eq!("float32".parse::<Dtype>(), Ok(Dtype::F32));
/// assert_eq!(Dtype::U16.size(), 2);
/// assert_eq!(Dtype::U8.name(), "uint8");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dtype {
    /// `u8` (numpy `uint8`): what images decode to.
    #[default]
    U8,
    /// `u16` (numpy `uint16`): 16-bit images, depth maps, raw sensors.
    U16,
    /// `f32` (numpy `float32`): normalised tensors.
    F32,
}

/// A dtype name that is not one of [`Dtype::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {0:?}: expected one of uint8, uint16, float32")]
pub struct UnknownDtype(pub String);

impl Dtype {
    /// Every dtype's name, as numpy spells it.
    pub const NAMES: [&'static str; 3] = ["uint8", "uint16", "float32"];

    /// Bytes of one element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::U16 => 2,
            Dtype::F32 => 4,
        }
    }

    /// The numpy name: `uint8`, `uint16` or `float32`.
    pub const fn name(self) -> &'static str {
        Self::NAMES[self.code() as usize]
    }

    /// The word the segment stores.
    pub(crate) const fn code(self) -> u32 {
        match self {
            Dtype::U8 => 0,
            Dtype::U16 => 1,
            Dtype::F32 => 2,
        }
    }

    /// The dtype of a word the segment stores (`None`: garbage).
    pub(crate) const fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Dtype::U8),
            1 => Some(Dtype::U16),
            2 => Some(Dtype::F32),
            _ => None,
        }
    }
}

impl FromStr for Dtype {
    type Err = UnknownDtype;

    /// Parses a numpy name (`uint8`, `uint16`, `float32`; also `u8`, `u16`,
    /// `f32`).
    fn from_str(s: &str) -> Result<Self, UnknownDtype> {
        match s {
            "uint8" | "u8" => Ok(Dtype::U8),
            "uint16" | "u16" => Ok(Dtype::U16),
            "float32" | "f32" => Ok(Dtype::F32),
            _ => Err(UnknownDtype(s.into())),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Height × width × channels of every frame in a ring, of one [`Dtype`]:
/// row-major, channels interleaved (HWC), so a frame is
/// `height * width * channels * dtype.size()` bytes and pixel `(y, x)`
/// starts at element `(y * width + x) * channels`.
///
/// ```
/// use framering_ring::{Dtype, FrameShape};
///
/// let s = FrameShape::new(720, 1080, 3);
/// assert_eq!(s.bytes(), 720 * 1080 * 3);
/// assert_eq!(s.to_string(), "720x1080x3");
///
/// let depth = FrameShape::new(480, 640, 1).with_dtype(Dtype::F32);
/// assert_eq!(depth.bytes(), 480 * 640 * 4);
/// assert_eq!(depth.to_string(), "480x640x1 float32");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameShape {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Elements per pixel: 1 (gray), 3 (RGB), 4 (RGBA); the ring accepts 1
    /// to 4.
    pub channels: u32,
    /// The element type.
    pub dtype: Dtype,
}

impl FrameShape {
    /// A shape of `height` rows, `width` columns and `channels` `u8`
    /// elements per pixel.
    pub const fn new(height: u32, width: u32, channels: u32) -> Self {
        Self {
            height,
            width,
            channels,
            dtype: Dtype::U8,
        }
    }

    /// The same shape with elements of `dtype`.
    pub const fn with_dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Elements of one frame (`height * width * channels`).
    pub const fn elements(&self) -> usize {
        self.height as usize * self.width as usize * self.channels as usize
    }

    /// Bytes of one frame.
    pub const fn bytes(&self) -> usize {
        self.elements() * self.dtype.size()
    }
}

impl fmt::Display for FrameShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.height, self.width, self.channels)?;
        if self.dtype != Dtype::U8 {
            write!(f, " {}", self.dtype)?;
        }
        Ok(())
    }
}
