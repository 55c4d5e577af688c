//! The types recording and replay share: options, errors, encodings.

use crate::media::{Dtype, FrameShape};
use std::path::PathBuf;

/// Chunk compression of a recording (`consumer.mcap_compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None: fastest.
    #[default]
    None,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// The message schema of a recording's images (`consumer.mcap_schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImageSchema {
    /// `foxglove.RawImage` / `foxglove.CompressedImage`, protobuf.
    #[default]
    Foxglove,
    /// `sensor_msgs/msg/Image` / `sensor_msgs/msg/CompressedImage`, CDR
    /// (what `ros2 bag` writes).
    Ros2,
}

/// How a recording's images are stored (`consumer.mcap_image`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImageCoding {
    /// The pixels as they are (RawImage / Image).
    #[default]
    Raw,
    /// JPEG (CompressedImage; 8-bit rings).
    Jpeg,
    /// PNG (CompressedImage; 8- and 16-bit rings).
    Png,
}

/// Recording or replaying failed.
#[derive(Debug, thiserror::Error)]
pub enum McapError {
    /// An output that exists, refused to keep a recording from being
    /// overwritten.
    #[error("output {}: the file exists; recordings are never overwritten unless asked: pass --overwrite (consumer.overwrite), or choose another name", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A frame element type or channel count no image encoding names.
    #[error("{channels}-channel {dtype} frames have no image encoding")]
    NoEncoding {
        /// Channels.
        channels: u32,
        /// Element type.
        dtype: Dtype,
    },
    /// A compressed image format that cannot hold the ring's frames.
    #[error("{format} cannot hold {dtype} frames: {hint}")]
    Coding {
        /// The format.
        format: &'static str,
        /// The ring's element type.
        dtype: Dtype,
        /// What to do instead.
        hint: &'static str,
    },
    /// File error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The container is not valid MCAP (or is cut short where that is not
    /// tolerated).
    #[error("{}: {source}", path.display())]
    Mcap {
        /// The file.
        path: PathBuf,
        /// Why.
        source: mcap::McapError,
    },
    /// No image channel (or none on the topic asked for).
    #[error("{}: no image channel{}; image channels: {found}", path.display(), topic.as_ref().map(|t| format!(" on topic {t:?}")).unwrap_or_default())]
    NoImageChannel {
        /// The file.
        path: PathBuf,
        /// The topic asked for.
        topic: Option<String>,
        /// The image channels it has (topic and schema).
        found: String,
    },
    /// Several image channels and no `--mcap-topic`.
    #[error("{}: several image channels ({found}): choose one with --mcap-topic", path.display())]
    SeveralImageChannels {
        /// The file.
        path: PathBuf,
        /// The image channels.
        found: String,
    },
    /// A pixel encoding or compressed format the ring cannot hold.
    #[error("{}: {what} {encoding:?} cannot be replayed into a ring ({known})", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
        /// "encoding" or "format".
        what: &'static str,
        /// The encoding.
        encoding: String,
        /// What is supported.
        known: &'static str,
    },
    /// A message that is not what its schema and encoding say.
    #[error("{}: message {sequence} on {topic}: {what}", path.display())]
    BadMessage {
        /// The file.
        path: PathBuf,
        /// Its topic.
        topic: String,
        /// Its sequence number.
        sequence: u32,
        /// What is wrong.
        what: String,
    },
    /// A compressed image that does not decode.
    #[error("{}: message {sequence}: {source}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// Its sequence number.
        sequence: u32,
        /// Why.
        source: image::ImageError,
    },
    /// A start after the end.
    #[error("--start {start} s is after --end {end} s")]
    Range {
        /// Seconds.
        start: f64,
        /// Seconds.
        end: f64,
    },
}

impl McapError {
    /// Whether the error is the user's to fix before anything runs (exit 2).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            McapError::Io { .. }
                | McapError::Mcap { .. }
                | McapError::Image { .. }
                | McapError::BadMessage { .. }
        )
    }
}

/// The image encoding of frames of `channels` × `dtype` (ROS/Foxglove
/// names).
pub fn encoding(channels: u32, dtype: Dtype) -> Result<&'static str, McapError> {
    Ok(match (channels, dtype) {
        (1, Dtype::U8) => "mono8",
        (3, Dtype::U8) => "rgb8",
        (4, Dtype::U8) => "rgba8",
        (1, Dtype::U16) => "mono16",
        (3, Dtype::U16) => "rgb16",
        (4, Dtype::U16) => "rgba16",
        (1, Dtype::F32) => "32FC1",
        (3, Dtype::F32) => "32FC3",
        (4, Dtype::F32) => "32FC4",
        _ => return Err(McapError::NoEncoding { channels, dtype }),
    })
}

/// The `frame_meta` channel's metadata key of the source's frame rate
/// (`"30000/1001"`).
pub(crate) const FRAME_RATE_KEY: &str = "frame_rate";

/// A frame rate as [`FRAME_RATE_KEY`] holds it: `"num/den"`, both > 0.
pub(crate) fn parse_frame_rate(s: &str) -> Option<(u32, u32)> {
    let (num, den) = s.split_once('/')?;
    let (num, den) = (num.trim().parse().ok()?, den.trim().parse().ok()?);
    (num > 0 && den > 0).then_some((num, den))
}

/// The pixel encodings a ring can hold, as replayed.
pub(crate) const KNOWN_ENCODINGS: &str = "mono8, 8UC1, rgb8, bgr8, 8UC3, rgba8, bgra8, 8UC4, mono16, 16UC1, rgb16, bgr16, 16UC3, rgba16, bgra16, 16UC4, 32FC1, 32FC3, 32FC4";

/// Channels, element type and whether the first and third channels are
/// swapped (BGR) of a pixel encoding.
pub(crate) fn decode_encoding(encoding: &str) -> Option<(u32, Dtype, bool)> {
    Some(match encoding {
        "mono8" | "8UC1" => (1, Dtype::U8, false),
        "rgb8" | "8UC3" => (3, Dtype::U8, false),
        "bgr8" => (3, Dtype::U8, true),
        "rgba8" | "8UC4" => (4, Dtype::U8, false),
        "bgra8" => (4, Dtype::U8, true),
        "mono16" | "16UC1" => (1, Dtype::U16, false),
        "rgb16" | "16UC3" => (3, Dtype::U16, false),
        "bgr16" => (3, Dtype::U16, true),
        "rgba16" | "16UC4" => (4, Dtype::U16, false),
        "bgra16" => (4, Dtype::U16, true),
        "32FC1" => (1, Dtype::F32, false),
        "32FC3" => (3, Dtype::F32, false),
        "32FC4" => (4, Dtype::F32, false),
        _ => return None,
    })
}

/// The shape of a frame of `width`×`height` in `encoding`.
pub(crate) fn shape_of(width: u32, height: u32, channels: u32, dtype: Dtype) -> FrameShape {
    FrameShape::new(height, width, channels).with_dtype(dtype)
}

/// What a recorded frame carries beside its pixels (plain values: the
/// app copies them from the ring's frame info).
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameStamp<'a> {
    /// The ring's sequence number.
    pub seq: u64,
    /// Capture time, CLOCK_REALTIME ns.
    pub capture_ns: u64,
    /// Publish time, CLOCK_REALTIME ns.
    pub publish_ns: u64,
    /// Presentation timestamp, ns.
    pub pts_ns: Option<i64>,
    /// The source name.
    pub source: &'a [u8],
    /// The source size before fitting.
    pub src_width: u32,
    /// The source size before fitting.
    pub src_height: u32,
    /// The frame's user metadata.
    pub user_meta: &'a [u8],
}

/// Whether an output or input names an MCAP file (by its extension).
pub fn is_mcap(spec: &str) -> bool {
    std::path::Path::new(spec)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mcap"))
}
