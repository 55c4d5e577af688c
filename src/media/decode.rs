//! Decoding an image file straight into a frame buffer of the ring's shape.
//!
//! When the file already has the slot's size and pixel format it is decoded
//! directly into the slot (`image`'s `read_image`), with no intermediate
//! buffer; a JPEG then goes to zune-jpeg (the decoder `image` uses) straight
//! from the file's bytes, with `image`'s options, skipping `image`'s copy of
//! the file and its second parse of the headers. Otherwise it is decoded,
//! converted to the slot's channels and
//! element type ([`Dtype`]: 8-bit as decoded; `uint16` keeps a 16-bit
//! source's samples and scales an 8-bit one by 257; `float32` is every
//! source scaled to 0.0..=1.0), and resized with SIMD (`fast_image_resize`) according to the
//! [`ShapePolicy`]. Decoder limits derived from the slot size refuse
//! decompression bombs before they allocate.
//!
//! JPEG files go to libjpeg-turbo instead when framering is built with
//! `--features turbojpeg` (`producer.jpeg_decoder`, see [`JpegDecoder`]):
//! straight into the slot in the slot's pixel format, and for a source at
//! least twice the slot's size through libjpeg-turbo's DCT scaling (1/2, 1/4
//! or 1/8: most of the decoding work is skipped) before the SIMD resize.
//! A JPEG that libjpeg-turbo refuses (CMYK, a warning on corrupt data) is
//! handed to the `image` decoder, which then decides whether it is skipped.

use super::{Dtype, FrameShape};
use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};
use std::fmt;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

/// How an image whose size differs from the slot is fitted into it
/// (`producer.shape_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ShapePolicy {
    /// Scale to fit inside, keep the aspect ratio, pad with black (letterbox).
    Fit,
    /// Scale to cover, keep the aspect ratio, crop the overflow (centred).
    Fill,
    /// Scale each axis independently.
    Stretch,
    /// Skip the image and count it.
    Reject,
}

/// Which library decodes JPEG files (`producer.jpeg_decoder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JpegDecoder {
    /// libjpeg-turbo when framering was built with it (`--features
    /// turbojpeg`), else `image`.
    #[default]
    Auto,
    /// The `image` crate's pure-Rust decoder (zune-jpeg).
    Image,
    /// libjpeg-turbo (needs a build with `--features turbojpeg`).
    Turbojpeg,
}

impl JpegDecoder {
    /// Whether this build has libjpeg-turbo.
    pub const TURBOJPEG_BUILT: bool = cfg!(feature = "turbojpeg");

    /// `auto` resolved for this build.
    pub fn resolve(self) -> JpegDecoder {
        match self {
            JpegDecoder::Auto if Self::TURBOJPEG_BUILT => JpegDecoder::Turbojpeg,
            JpegDecoder::Auto => JpegDecoder::Image,
            other => other,
        }
    }
}

/// The summary's line on a faster build for these inputs, if there is one:
/// JPEG files decoded by the `image` crate (zune-jpeg) where libjpeg-turbo
/// decodes them faster (`benches/peers/loaders.py`, docs/benchmarks.md).
pub fn faster_build_hint(
    decoder: JpegDecoder,
    inputs: &[std::path::PathBuf],
) -> Option<&'static str> {
    let jpeg = |p: &std::path::PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
    };
    if decoder.resolve() != JpegDecoder::Image || !inputs.iter().any(jpeg) {
        return None;
    }
    Some(if JpegDecoder::TURBOJPEG_BUILT {
        "JPEG decoded by zune-jpeg (producer.jpeg_decoder = \"image\"); \"auto\" uses libjpeg-turbo, which decoded 1080x720 photo JPEGs 1.1-1.5x faster than zune-jpeg on 2 threads (docs/benchmarks.md)"
    } else {
        "JPEG decoded by zune-jpeg (the default build); a build with --features turbojpeg (libjpeg-turbo; needs cmake and nasm) decoded 1080x720 photo JPEGs 1.1-1.5x faster than zune-jpeg on 2 threads (docs/benchmarks.md)"
    })
}

/// Why an input was skipped (the key under which it is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Could not be opened or read.
    Unreadable,
    /// Zero bytes.
    Empty,
    /// Not an image format we decode.
    UnknownFormat,
    /// Truncated or corrupt data.
    Corrupt,
    /// Declared dimensions or memory beyond the limits.
    TooLarge,
    /// Size differs from the slot and the policy is `reject`.
    ShapeRejected,
    /// A valid file of a kind this build does not decode (an
    /// arithmetic-coded or 12-bit JPEG).
    Unsupported,
}

impl SkipReason {
    /// A stable snake_case name (used in summaries and JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unreadable => "unreadable",
            SkipReason::Empty => "empty",
            SkipReason::UnknownFormat => "unknown_format",
            SkipReason::Corrupt => "corrupt",
            SkipReason::TooLarge => "too_large",
            SkipReason::ShapeRejected => "shape_rejected",
            SkipReason::Unsupported => "unsupported",
        }
    }
}

/// An input that could not be decoded into a frame.
#[derive(Debug)]
pub struct DecodeError {
    /// Counting key.
    pub reason: SkipReason,
    /// Human detail.
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for DecodeError {}

fn err(reason: SkipReason, detail: impl fmt::Display) -> DecodeError {
    DecodeError {
        reason,
        detail: detail.to_string(),
    }
}

fn classify(e: image::ImageError) -> DecodeError {
    use image::ImageError as E;
    let reason = match &e {
        E::Limits(_) => SkipReason::TooLarge,
        E::Unsupported(_) => SkipReason::UnknownFormat,
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => SkipReason::Corrupt,
        E::IoError(_) => SkipReason::Unreadable,
        _ => SkipReason::Corrupt,
    };
    err(reason, e)
}

/// Memory that decoding may use at once, shared by every decoder thread of
/// a producer (`producer.decode_memory_mb`): a decode reserves the size of
/// the buffers it will allocate (known from the image's header) before
/// allocating them, waiting while other decodes hold the budget, and gives
/// it back when done. A decode that could never fit is refused as
/// [`SkipReason::TooLarge`].
#[derive(Debug)]
pub struct DecodeBudget {
    total: u64,
    used: parking_lot::Mutex<u64>,
    freed: parking_lot::Condvar,
}

impl DecodeBudget {
    /// A budget of `bytes`, to share between decoders.
    pub fn new(bytes: u64) -> std::sync::Arc<DecodeBudget> {
        std::sync::Arc::new(DecodeBudget {
            total: bytes,
            used: parking_lot::Mutex::new(0),
            freed: parking_lot::Condvar::new(),
        })
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        *self.used.lock()
    }

    /// Reserves `bytes`, waiting for other decodes to give memory back;
    /// refuses what could never fit.
    fn reserve(self: &std::sync::Arc<Self>, bytes: u64) -> Result<Reservation, DecodeError> {
        if bytes > self.total {
            return Err(err(
                SkipReason::TooLarge,
                format!(
                    "decoding it needs {} MiB, more than the {} MiB producer.decode_memory_mb allows for all decoding at once",
                    bytes.div_ceil(1 << 20),
                    self.total >> 20
                ),
            ));
        }
        let mut used = self.used.lock();
        while *used + bytes > self.total {
            self.freed.wait(&mut used);
        }
        *used += bytes;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes of a [`DecodeBudget`] held by one decode; given back when dropped.
#[derive(Debug)]
struct Reservation {
    budget: std::sync::Arc<DecodeBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *self.budget.used.lock() -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// A scaled libjpeg-turbo decode buffer larger than this is freed after
/// use rather than kept for the next image (memory kept outside a decode
/// would escape the budget).
#[cfg(feature = "turbojpeg")]
const SCRATCH_KEEP: usize = 16 << 20;

/// Where one decode spent its time, in nanoseconds (the producer sums them
/// into its summary). Clock reads only: nothing is allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Opening the file and reading it into memory (for a file too large
    /// to read whole, only the opening: its reads are part of `decode_ns`).
    pub read_ns: u64,
    /// Parsing and decoding, into the slot or into a buffer.
    pub decode_ns: u64,
    /// Converting a decoded buffer to the slot's channels and element type,
    /// copying it into the slot, resizing (0 when decoded straight into
    /// the slot).
    pub convert_ns: u64,
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Size of the source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Source width.
    pub width: u32,
    /// Source height.
    pub height: u32,
}

/// A per-thread decoder: owns the resizer and its scratch buffers, so that
/// decoding allocates only what the image library itself needs.
pub struct Decoder {
    shape: FrameShape,
    policy: ShapePolicy,
    resizer: Resizer,
    limits: Limits,
    /// Shared with the producer's other decoders, if any.
    budget: Option<std::sync::Arc<DecodeBudget>>,
    /// libjpeg-turbo, when built in and chosen.
    #[cfg(feature = "turbojpeg")]
    turbo: Option<turbojpeg::Decompressor>,
    /// The whole file, read in one go (reused: no allocation per frame
    /// once it has grown to the largest input, up to [`BYTES_KEEP`]).
    bytes: Vec<u8>,
    /// Where the last decode spent its time.
    stages: StageTimes,
    /// A scaled decode awaiting its resize (reused likewise).
    #[cfg(feature = "turbojpeg")]
    scratch: Vec<u8>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("shape", &self.shape)
            .field("policy", &self.policy)
            .field("jpeg", &self.jpeg_decoder())
            .finish()
    }
}

fn pixel_type(shape: FrameShape) -> PixelType {
    match (shape.dtype, shape.channels) {
        (Dtype::U8, 1) => PixelType::U8,
        (Dtype::U8, 4) => PixelType::U8x4,
        (Dtype::U8, _) => PixelType::U8x3,
        (Dtype::U16, 1) => PixelType::U16,
        (Dtype::U16, 4) => PixelType::U16x4,
        (Dtype::U16, _) => PixelType::U16x3,
        (Dtype::F32, 1) => PixelType::F32,
        (Dtype::F32, 4) => PixelType::F32x4,
        (Dtype::F32, _) => PixelType::F32x3,
    }
}

/// The decoder's colour type whose samples are the slot's as they are
/// (`None` for `float32`: a float source is not known to be in 0..=1).
fn color_type(shape: FrameShape) -> Option<ColorType> {
    Some(match (shape.dtype, shape.channels) {
        (Dtype::U8, 1) => ColorType::L8,
        (Dtype::U8, 4) => ColorType::Rgba8,
        (Dtype::U8, _) => ColorType::Rgb8,
        (Dtype::U16, 1) => ColorType::L16,
        (Dtype::U16, 4) => ColorType::Rgba16,
        (Dtype::U16, _) => ColorType::Rgb16,
        (Dtype::F32, _) => return None,
    })
}

/// A decoded image converted to the slot's channels and element type
/// (each vector aligned for its element, as the resizer needs).
enum Converted {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl Converted {
    fn new(img: DynamicImage, shape: FrameShape) -> Converted {
        match (shape.dtype, shape.channels) {
            (Dtype::U8, 1) => Converted::U8(img.into_luma8().into_raw()),
            (Dtype::U8, 4) => Converted::U8(img.into_rgba8().into_raw()),
            (Dtype::U8, _) => Converted::U8(img.into_rgb8().into_raw()),
            (Dtype::U16, 1) => Converted::U16(img.into_luma16().into_raw()),
            (Dtype::U16, 4) => Converted::U16(img.into_rgba16().into_raw()),
            (Dtype::U16, _) => Converted::U16(img.into_rgb16().into_raw()),
            (Dtype::F32, 1) => Converted::F32(img.to_luma32f().into_raw()),
            (Dtype::F32, 4) => Converted::F32(img.into_rgba32f().into_raw()),
            (Dtype::F32, _) => Converted::F32(img.into_rgb32f().into_raw()),
        }
    }

    /// The samples' bytes, native-endian.
    fn bytes(&self) -> &[u8] {
        match self {
            Converted::U8(v) => v,
            Converted::U16(v) => bytemuck::cast_slice(v),
            Converted::F32(v) => bytemuck::cast_slice(v),
        }
    }
}

impl Decoder {
    /// A decoder for frames of `shape`.
    pub fn new(shape: FrameShape, policy: ShapePolicy) -> Self {
        let mut limits = Limits::default();
        // Accept sources up to 16× the slot on each side (at least 16384 px);
        // refuse anything whose decoded size would exceed 1 GiB.
        limits.max_image_width = Some((shape.width.saturating_mul(16)).max(16_384));
        limits.max_image_height = Some((shape.height.saturating_mul(16)).max(16_384));
        limits.max_alloc = Some(1 << 30);
        Self {
            shape,
            policy,
            resizer: Resizer::new(),
            limits,
            budget: None,
            #[cfg(feature = "turbojpeg")]
            turbo: None,
            bytes: Vec::new(),
            stages: StageTimes::default(),
            #[cfg(feature = "turbojpeg")]
            scratch: Vec::new(),
        }
        .with_jpeg_decoder(JpegDecoder::Auto)
    }

    /// Chooses the JPEG decoder. `turbojpeg` in a build without it, or a
    /// libjpeg-turbo that fails to initialise, falls back to `image` (the
    /// configuration refuses the former up front).
    #[cfg_attr(not(feature = "turbojpeg"), allow(unused_mut))]
    pub fn with_jpeg_decoder(mut self, kind: JpegDecoder) -> Self {
        #[cfg(feature = "turbojpeg")]
        {
            if kind.resolve() != JpegDecoder::Turbojpeg {
                self.turbo = None;
            } else if self.turbo.is_none() {
                // (`new` already made one for `auto`: kept, not made twice.)
                match turbojpeg::Decompressor::new() {
                    Ok(mut d) => {
                        // Progressive JPEGs with absurd scan counts are a
                        // known CPU exhaustion attack; real files use < 20.
                        let _ = d.set_scan_limit(500);
                        self.turbo = Some(d);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "libjpeg-turbo unavailable, decoding JPEG with image")
                    }
                }
            }
        }
        #[cfg(not(feature = "turbojpeg"))]
        let _ = kind;
        self
    }

    /// Shares `budget` with other decoders: the buffers of each decode are
    /// reserved in it first (see [`DecodeBudget`]).
    pub fn with_budget(mut self, budget: std::sync::Arc<DecodeBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Reserves `bytes` of the budget (nothing without one, or for 0).
    /// (Takes the field, not `self`: libjpeg-turbo's handle stays borrowed.)
    fn reserve(
        budget: &Option<std::sync::Arc<DecodeBudget>>,
        bytes: u64,
    ) -> Result<Option<Reservation>, DecodeError> {
        match budget {
            Some(b) if bytes > 0 => b.reserve(bytes).map(Some),
            _ => Ok(None),
        }
    }

    /// The JPEG decoder in use (`Image` or `Turbojpeg`).
    pub fn jpeg_decoder(&self) -> JpegDecoder {
        #[cfg(feature = "turbojpeg")]
        if self.turbo.is_some() {
            return JpegDecoder::Turbojpeg;
        }
        JpegDecoder::Image
    }

    /// The frame shape.
    pub fn shape(&self) -> FrameShape {
        self.shape
    }

    /// Where the last `decode_file` or `decode_bytes` spent its time
    /// (whether it succeeded or not).
    pub fn stages(&self) -> StageTimes {
        self.stages
    }

    /// Decodes the file at `path` into `out` (exactly one frame's bytes).
    ///
    /// A file up to `MAX_IN_MEMORY` is read whole first, in one read into
    /// a buffer kept for the next file, then decoded from memory; a larger
    /// one streams through the `image` decoder.
    pub fn decode_file(&mut self, path: &Path, out: &mut [u8]) -> Result<Decoded, DecodeError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.stages = StageTimes::default();
        let start = Instant::now();
        // O_NONBLOCK: opening a FIFO (or a device) must not hang the
        // producer; it is refused just below as not a regular file.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(SkipReason::Unreadable, e))?;
        let meta = file
            .metadata()
            .map_err(|e| err(SkipReason::Unreadable, e))?;
        if !meta.is_file() {
            return Err(err(SkipReason::Unreadable, "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(err(SkipReason::Empty, "zero-byte file"));
        }
        if meta.len() > MAX_IN_MEMORY {
            self.stages.read_ns = nanos(start);
            let started = Instant::now();
            let result = self.decode_reader(BufReader::new(file), out);
            self.stages.decode_ns = nanos(started).saturating_sub(self.stages.convert_ns);
            return result;
        }
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        // The size is known: one read fills the buffer (and one more finds
        // the end), with no growth on the way.
        let read = bytes
            .try_reserve_exact(meta.len() as usize + 1)
            .map_err(std::io::Error::other)
            .and_then(|()| (&file).take(MAX_IN_MEMORY + 1).read_to_end(&mut bytes));
        self.stages.read_ns = nanos(start);
        let result = match read {
            Ok(_) if bytes.len() as u64 > MAX_IN_MEMORY => Err(err(
                SkipReason::TooLarge,
                "the file grew beyond 16 MiB while it was read",
            )),
            Ok(_) => self.decode_in_memory(&bytes, out),
            Err(e) => Err(err(SkipReason::Unreadable, e)),
        };
        if bytes.capacity() <= BYTES_KEEP {
            self.bytes = bytes;
        }
        result
    }

    /// Decodes an image held in memory into `out`.
    pub fn decode_bytes(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<Decoded, DecodeError> {
        self.stages = StageTimes::default();
        self.decode_in_memory(bytes, out)
    }

    /// `decode_bytes`, adding to the stage times.
    fn decode_in_memory(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<Decoded, DecodeError> {
        let started = Instant::now();
        let result = self.decode_in_memory_untimed(bytes, out);
        self.stages.decode_ns = nanos(started).saturating_sub(self.stages.convert_ns);
        result
    }

    fn decode_in_memory_untimed(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Result<Decoded, DecodeError> {
        if bytes.is_empty() {
            return Err(err(SkipReason::Empty, "no bytes"));
        }
        // The JPEG checks (nothing for another format), once for whichever
        // decoder below takes the bytes: each would judge them the same way,
        // by the JPEG decoder in use.
        self.check_jpeg_bytes(bytes, out, self.jpeg_decoder())?;
        #[cfg(feature = "turbojpeg")]
        if bytes.starts_with(&[0xFF, 0xD8]) && self.turbo.is_some() && self.shape.dtype == Dtype::U8
        {
            if let Some(done) = self.decode_turbo(bytes, out) {
                return done;
            }
        }
        // (The signature by which `image` recognises a JPEG.)
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            if let Some(done) = self.decode_zune(bytes, out) {
                return done;
            }
        }
        self.decode_checked_reader(std::io::Cursor::new(bytes), out)
    }

    /// The frame buffer's size (wrong is a caller's bug) and
    /// [`jpeg_checks`] on a JPEG in memory.
    fn check_jpeg_bytes(
        &self,
        bytes: &[u8],
        out: &[u8],
        decoder: JpegDecoder,
    ) -> Result<(), DecodeError> {
        assert_eq!(
            out.len(),
            self.shape.bytes(),
            "frame buffer of the wrong size"
        );
        jpeg_checks(&mut std::io::Cursor::new(bytes), decoder)
    }

    /// A JPEG of the slot's size whose pixels `image` would decode in the
    /// slot's format (8-bit RGB from a colour JPEG, 8-bit gray from a gray
    /// one): decoded by zune-jpeg straight from `bytes` into the slot, as
    /// `image` does on that path (same options: lenient, its colour
    /// mapping) but without its copy of the file and its second parse of
    /// the headers. Called after the JPEG checks (the same skip reasons as
    /// the `image` path). `None` hands the file to [`Self::decode_reader`] (another size or
    /// colour type: converted or resized there).
    fn decode_zune(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Option<Result<Decoded, DecodeError>> {
        use zune_jpeg::zune_core::{
            bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
        };
        let target = match (self.shape.dtype, self.shape.channels) {
            (Dtype::U8, 1) => ColorSpace::Luma,
            (Dtype::U8, 3) => ColorSpace::RGB,
            _ => return None,
        };
        // `image`'s options (its header parse has no size limit: the
        // limits are checked on the dimensions just below).
        let options = DecoderOptions::default()
            .set_strict_mode(false)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX)
            .jpeg_set_out_colorspace(target);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        if let Err(e) = decoder.decode_headers() {
            return Some(Err(classify_jpeg(e)));
        }
        // What `image` decodes this JPEG to: its own colour space for RGB(A)
        // and gray(+alpha), RGB for the others (YCbCr, CMYK, YCCK).
        let decoded_as = match decoder.input_colorspace()? {
            c @ (ColorSpace::RGB | ColorSpace::RGBA | ColorSpace::Luma | ColorSpace::LumaA) => c,
            _ => ColorSpace::RGB,
        };
        if decoded_as != target {
            return None;
        }
        let (w, h) = decoder.dimensions()?;
        let (w, h) = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
        match self.check_source(w, h) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        Some(
            decoder
                .decode_into(out)
                .map(|()| Decoded {
                    width: w,
                    height: h,
                })
                .map_err(classify_jpeg),
        )
    }

    /// Refuses a source of `w`×`h` that exceeds the limits or, under
    /// `reject`, differs from the slot. Returns whether it has the slot's size.
    fn check_source(&self, w: u32, h: u32) -> Result<bool, DecodeError> {
        if w == 0 || h == 0 {
            return Err(err(SkipReason::Corrupt, "zero-sized image"));
        }
        let too_wide = self.limits.max_image_width.is_some_and(|m| w > m);
        let too_high = self.limits.max_image_height.is_some_and(|m| h > m);
        if too_wide || too_high {
            return Err(err(
                SkipReason::TooLarge,
                format!("{w}x{h} exceeds the decoder's limits"),
            ));
        }
        let same_size = (w, h) == (self.shape.width, self.shape.height);
        if !same_size && self.policy == ShapePolicy::Reject {
            return Err(err(
                SkipReason::ShapeRejected,
                format!(
                    "{w}x{h} differs from the slot's {}x{}",
                    self.shape.width, self.shape.height
                ),
            ));
        }
        Ok(same_size)
    }

    /// libjpeg-turbo: `None` hands the file to the `image` decoder (a JPEG
    /// libjpeg-turbo does not take, or a warning on corrupt data, which
    /// `image` then judges).
    #[cfg(feature = "turbojpeg")]
    fn decode_turbo(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Option<Result<Decoded, DecodeError>> {
        use turbojpeg::{Image as TjImage, PixelFormat, ScalingFactor};
        let header = self.turbo.as_mut()?.read_header(bytes).ok()?;
        let (w, h) = (
            u32::try_from(header.width).ok()?,
            u32::try_from(header.height).ok()?,
        );
        let src = Decoded {
            width: w,
            height: h,
        };
        let same_size = match self.check_source(w, h) {
            Ok(same) => same,
            Err(e) => return Some(Err(e)),
        };
        let c = self.shape.channels as usize;
        let format = match c {
            1 => PixelFormat::GRAY,
            4 => PixelFormat::RGBA,
            _ => PixelFormat::RGB,
        };
        let (dw, dh) = (self.shape.width, self.shape.height);
        // The coarsest DCT scaling that still leaves at least the slot's
        // resolution for the resize (so quality is that of a plain resize).
        let (need_w, need_h) = match self.policy {
            ShapePolicy::Fit => fit_size(w, h, dw, dh),
            _ => (dw, dh),
        };
        let mut factor = ScalingFactor::ONE;
        if !same_size && !header.is_lossless {
            for d in [8usize, 4, 2] {
                let f = ScalingFactor::new(1, d);
                if f.scale(w as usize) >= need_w as usize && f.scale(h as usize) >= need_h as usize
                {
                    factor = f;
                    break;
                }
            }
        }
        let turbo = self.turbo.as_mut()?;
        turbo.set_scaling_factor(factor).ok()?;
        if same_size {
            let image = TjImage {
                pixels: &mut *out,
                width: w as usize,
                pitch: w as usize * c,
                height: h as usize,
                format,
            };
            turbo.decompress(bytes, image).ok()?;
            return Some(Ok(src));
        }
        let (sw, sh) = (factor.scale(w as usize), factor.scale(h as usize));
        let scratch_bytes = sw.saturating_mul(sh).saturating_mul(c);
        if self
            .limits
            .max_alloc
            .is_some_and(|m| scratch_bytes as u64 > m)
        {
            return Some(Err(err(
                SkipReason::TooLarge,
                format!("decoding {w}x{h} needs {scratch_bytes} bytes, beyond the decoder's limit"),
            )));
        }
        let _reserved = match Self::reserve(&self.budget, scratch_bytes as u64) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(scratch_bytes, 0);
        let image = TjImage {
            pixels: &mut scratch[..],
            width: sw,
            pitch: sw * c,
            height: sh,
            format,
        };
        let result = match turbo.decompress(bytes, image) {
            Ok(()) => {
                let started = Instant::now();
                let resized = self.resize(&scratch, sw as u32, sh as u32, out);
                self.stages.convert_ns += nanos(started);
                Some(resized.map(|()| src))
            }
            Err(_) => None,
        };
        if scratch.capacity() <= SCRATCH_KEEP {
            self.scratch = scratch;
        }
        result
    }

    fn decode_reader<R: std::io::BufRead + Seek>(
        &mut self,
        mut reader: R,
        out: &mut [u8],
    ) -> Result<Decoded, DecodeError> {
        assert_eq!(
            out.len(),
            self.shape.bytes(),
            "frame buffer of the wrong size"
        );
        jpeg_checks(&mut reader, self.jpeg_decoder())?;
        self.decode_checked_reader(reader, out)
    }

    /// [`Self::decode_reader`] after the JPEG checks (done by the caller).
    /// (With libjpeg-turbo in use, a file it refused lands here: the
    /// `image` decoder then judges it.)
    fn decode_checked_reader<R: std::io::BufRead + Seek>(
        &mut self,
        reader: R,
        out: &mut [u8],
    ) -> Result<Decoded, DecodeError> {
        let mut reader = ImageReader::new(reader)
            .with_guessed_format()
            .map_err(|e| err(SkipReason::Unreadable, e))?;
        if reader.format().is_none() {
            return Err(err(
                SkipReason::UnknownFormat,
                "not a recognised image format",
            ));
        }
        reader.limits(self.limits.clone());
        let mut decoder = reader.into_decoder().map_err(classify)?;
        decoder.set_limits(self.limits.clone()).map_err(classify)?;
        let (w, h) = decoder.dimensions();
        let src = Decoded {
            width: w,
            height: h,
        };
        let same_size = self.check_source(w, h)?;
        let same_format = Some(decoder.color_type()) == color_type(self.shape);
        if same_size && same_format {
            // Fast path: decode straight into the slot.
            decoder.read_image(out).map_err(classify)?;
            return Ok(src);
        }
        // The decoded image, and its conversion to the slot's format.
        let converted = if same_format {
            0
        } else {
            u64::from(w)
                * u64::from(h)
                * self.shape.channels as u64
                * self.shape.dtype.size() as u64
        };
        let _reserved = Self::reserve(
            &self.budget,
            decoder.total_bytes().saturating_add(converted),
        )?;
        let img = DynamicImage::from_decoder(decoder).map_err(classify)?;
        let started = Instant::now();
        let pixels = Converted::new(img, self.shape);
        let result = if same_size {
            out.copy_from_slice(pixels.bytes());
            Ok(src)
        } else {
            self.resize(pixels.bytes(), w, h, out).map(|()| src)
        };
        self.stages.convert_ns += nanos(started);
        result
    }

    fn resize(&mut self, pixels: &[u8], w: u32, h: u32, out: &mut [u8]) -> Result<(), DecodeError> {
        let pt = pixel_type(self.shape);
        let (dw, dh) = (self.shape.width, self.shape.height);
        let src = ImageRef::new(w, h, pixels, pt).map_err(|e| err(SkipReason::Corrupt, e))?;
        let alg = ResizeAlg::Convolution(FilterType::Bilinear);
        let rerr = |e: fast_image_resize::ResizeError| err(SkipReason::Corrupt, e);
        match self.policy {
            ShapePolicy::Stretch | ShapePolicy::Reject => {
                let mut dst = Image::from_slice_u8(dw, dh, out, pt)
                    .map_err(|e| err(SkipReason::Corrupt, e))?;
                self.resizer
                    .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
                    .map_err(rerr)?;
            }
            ShapePolicy::Fill => {
                let mut dst = Image::from_slice_u8(dw, dh, out, pt)
                    .map_err(|e| err(SkipReason::Corrupt, e))?;
                let opts = ResizeOptions::new()
                    .resize_alg(alg)
                    .fit_into_destination(Some((0.5, 0.5)));
                self.resizer.resize(&src, &mut dst, &opts).map_err(rerr)?;
            }
            ShapePolicy::Fit => {
                let (nw, nh) = fit_size(w, h, dw, dh);
                let (left, top) = ((dw - nw) / 2, (dh - nh) / 2);
                out.fill(0);
                let mut dst = Image::from_slice_u8(dw, dh, out, pt)
                    .map_err(|e| err(SkipReason::Corrupt, e))?;
                let mut view = CroppedImageMut::new(&mut dst, left, top, nw, nh)
                    .map_err(|e| err(SkipReason::Corrupt, e))?;
                self.resizer
                    .resize(&src, &mut view, &ResizeOptions::new().resize_alg(alg))
                    .map_err(rerr)?;
            }
        }
        Ok(())
    }
}

/// Largest file read whole before decoding (16 MiB: far beyond any JPEG or
/// PNG frame; larger files stream through the `image` decoder and its
/// limits, and libjpeg-turbo, which needs the whole file, leaves them to it).
const MAX_IN_MEMORY: u64 = 16 << 20;

/// The file buffer is kept for the next file up to this capacity; a larger
/// one is freed after its decode (memory kept outside a decode escapes the
/// decode budget).
const BYTES_KEEP: usize = 4 << 20;

/// The frame header (SOF marker) of a JPEG: which coding process, at which
/// sample precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JpegFrame {
    /// The SOFn marker's second byte (0xC0..=0xCF, not C4/C8/CC).
    marker: u8,
    /// Bits per sample (8, 12 or 16).
    precision: u8,
}

impl JpegFrame {
    /// SOF9–SOF15: arithmetic entropy coding.
    fn arithmetic(self) -> bool {
        self.marker >= 0xC9
    }
}

/// Reads the frame header of a JPEG by walking its marker segments up to
/// the first SOFn; `None` for anything else (not a JPEG, no SOF before the
/// scan, a segment cut short: the decoder then judges the file). Leaves the
/// stream at its start.
fn jpeg_frame<R: Read + Seek>(r: &mut R) -> std::io::Result<Option<JpegFrame>> {
    let found = (|| -> std::io::Result<Option<JpegFrame>> {
        let mut b = [0u8; 2];
        if r.read_exact(&mut b).is_err() || b != [0xFF, 0xD8] {
            return Ok(None);
        }
        // Real files have a handful of segments before the frame header.
        for _ in 0..1024 {
            let mut m = [0u8; 1];
            r.read_exact(&mut m)?;
            if m[0] != 0xFF {
                return Ok(None);
            }
            // Fill bytes: any number of 0xFF before the marker code.
            let mut code = 0xFF;
            while code == 0xFF {
                r.read_exact(&mut m)?;
                code = m[0];
            }
            match code {
                // Stand-alone markers (RSTn, TEM) carry no length.
                0xD0..=0xD7 | 0x01 => continue,
                // Start of scan or end of image before any frame header.
                0xDA | 0xD9 | 0x00 => return Ok(None),
                _ => {}
            }
            r.read_exact(&mut b)?;
            let len = u16::from_be_bytes(b);
            if len < 2 {
                return Ok(None);
            }
            let sof = (0xC0..=0xCF).contains(&code) && !matches!(code, 0xC4 | 0xC8 | 0xCC);
            if sof {
                r.read_exact(&mut m)?;
                return Ok(Some(JpegFrame {
                    marker: code,
                    precision: m[0],
                }));
            }
            r.seek(SeekFrom::Current(i64::from(len) - 2))?;
        }
        Ok(None)
    })();
    r.seek(SeekFrom::Start(0))?;
    match found {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        other => other,
    }
}

/// Whether a JPEG with this frame header is one `decoder` cannot decode
/// though it is valid: a skip as `unsupported`, with what would decode it.
fn unsupported_jpeg(frame: JpegFrame, decoder: JpegDecoder) -> Option<DecodeError> {
    if frame.precision != 8 {
        // libjpeg-turbo 3 reads 12-bit JPEGs, but only through an API
        // (tj3Decompress12) that the turbojpeg crate does not expose.
        return Some(err(
            SkipReason::Unsupported,
            format!(
                "{}-bit JPEG: framering decodes 8-bit JPEGs only (convert it, e.g. with ffmpeg or djpeg)",
                frame.precision
            ),
        ));
    }
    if frame.arithmetic() && decoder != JpegDecoder::Turbojpeg {
        let hint = if JpegDecoder::TURBOJPEG_BUILT {
            "set producer.jpeg_decoder = \"turbojpeg\" (or \"auto\")"
        } else {
            "build framering with --features turbojpeg (libjpeg-turbo decodes it)"
        };
        return Some(err(
            SkipReason::Unsupported,
            format!("arithmetic-coded JPEG: the pure-Rust decoder does not support it; {hint}"),
        ));
    }
    None
}

/// The checks a JPEG passes before its decoder sees it (nothing for
/// another format): truncated is `corrupt`; a valid JPEG that zune-jpeg
/// would call corrupt (arithmetic-coded unless `decoder` is libjpeg-turbo,
/// or not 8-bit) is `unsupported`, with why. Leaves the stream at its start.
fn jpeg_checks<R: Read + Seek>(r: &mut R, decoder: JpegDecoder) -> Result<(), DecodeError> {
    if jpeg_truncated(r).map_err(|e| err(SkipReason::Unreadable, e))? {
        return Err(err(
            SkipReason::Corrupt,
            "truncated JPEG (no end-of-image marker)",
        ));
    }
    if let Some(frame) = jpeg_frame(r).map_err(|e| err(SkipReason::Unreadable, e))? {
        let decoder = if frame.arithmetic() && decoder == JpegDecoder::Turbojpeg {
            JpegDecoder::Turbojpeg
        } else {
            JpegDecoder::Image
        };
        if let Some(e) = unsupported_jpeg(frame, decoder) {
            return Err(e);
        }
    }
    Ok(())
}

/// A zune-jpeg error, classified as [`classify`] does the same error
/// coming through `image` (which maps `Unsupported` to its own unsupported
/// and `LargeDimensions` to a limit error).
fn classify_jpeg(e: zune_jpeg::errors::DecodeErrors) -> DecodeError {
    use zune_jpeg::errors::DecodeErrors as E;
    let reason = match e {
        E::Unsupported(_) => SkipReason::UnknownFormat,
        E::LargeDimensions(_) => SkipReason::TooLarge,
        _ => SkipReason::Corrupt,
    };
    err(reason, format_args!("JPEG decoding: {e}"))
}

/// Whether the stream is a JPEG without an end-of-image marker near its end.
///
/// The JPEG decoder is lenient and would turn a truncated file into a
/// partly grey frame; we skip such files instead. The marker `FF D9` cannot
/// occur inside entropy-coded data (a data `FF` is always stuffed as `FF 00`),
/// so looking for it in the last 16 KiB (room for trailing padding) is sound.
/// Leaves the stream at its start.
fn jpeg_truncated<R: Read + Seek>(r: &mut R) -> std::io::Result<bool> {
    let mut soi = [0u8; 2];
    let is_jpeg = r.read_exact(&mut soi).is_ok() && soi == [0xFF, 0xD8];
    let truncated = if is_jpeg {
        // The last 16 KiB, read in pieces into a stack buffer (no
        // allocation per file); an FF at the end of one piece is kept in
        // front of the next, so a marker across the boundary is found.
        const TAIL: u64 = 16 * 1024;
        let len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(len - len.min(TAIL)))?;
        let mut r = r.take(TAIL);
        let mut buf = [0u8; 4096];
        let (mut kept, mut found) = (0, false);
        loop {
            let n = r.read(&mut buf[kept..])?;
            if n == 0 {
                break;
            }
            let end = kept + n;
            if buf[..end].windows(2).any(|w| w == [0xFF, 0xD9]) {
                found = true;
                break;
            }
            kept = usize::from(buf[end - 1] == 0xFF);
            buf[0] = buf[end - 1];
        }
        !found
    } else {
        false
    };
    r.seek(SeekFrom::Start(0))?;
    Ok(truncated)
}

/// The size `(width, height)` of the image file at `path` from its header,
/// without decoding it; `None` for a file that is no readable image (or no
/// regular file: a FIFO is not opened for long).
pub fn image_size(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let (w, h) = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

/// The largest `(w, h)` with the source's aspect ratio inside `dw × dh`.
pub fn fit_size(w: u32, h: u32, dw: u32, dh: u32) -> (u32, u32) {
    // Compare w/h with dw/dh in integers.
    if (w as u64) * (dh as u64) >= (h as u64) * (dw as u64) {
        let nh = ((h as u64 * dw as u64 + w as u64 / 2) / w as u64).clamp(1, dh as u64);
        (dw, nh as u32)
    } else {
        let nw = ((w as u64 * dh as u64 + h as u64 / 2) / h as u64).clamp(1, dw as u64);
        (nw as u32, dh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, RgbImage};

    /// uint16 keeps 16-bit samples and scales 8-bit ones by 257; float32
    /// is 0..=1; a resize (fit) works at either depth; a u8 slot reduces a
    /// 16-bit source to 8 bits.
    #[test]
    fn deep_slots_keep_or_scale_their_samples() {
        let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(4, 2, |x, y| {
            image::Rgb([(x * 16000) as u16, (y * 30000 + 1) as u16, 65535])
        });
        let png16 = encode(&DynamicImage::ImageRgb16(deep.clone()), ImageFormat::Png);
        let u16s = |b: &[u8]| -> Vec<u16> { bytemuck::pod_collect_to_vec(b) };
        let f32s = |b: &[u8]| -> Vec<f32> { bytemuck::pod_collect_to_vec(b) };
        let shape = FrameShape::new(2, 4, 3).with_dtype(Dtype::U16);
        let mut out = vec![0u8; shape.bytes()];
        Decoder::new(shape, ShapePolicy::Fit)
            .decode_bytes(&png16, &mut out)
            .unwrap();
        assert_eq!(u16s(&out), deep.clone().into_raw());

        let rgb8 = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8 * 60, y as u8 * 200, 255]));
        let png8 = encode(&DynamicImage::ImageRgb8(rgb8.clone()), ImageFormat::Png);
        Decoder::new(shape, ShapePolicy::Fit)
            .decode_bytes(&png8, &mut out)
            .unwrap();
        let scaled: Vec<u16> = rgb8.as_raw().iter().map(|&v| v as u16 * 257).collect();
        assert_eq!(u16s(&out), scaled);

        let fshape = shape.with_dtype(Dtype::F32);
        let mut out = vec![0u8; fshape.bytes()];
        Decoder::new(fshape, ShapePolicy::Fit)
            .decode_bytes(&png8, &mut out)
            .unwrap();
        for (f, v) in f32s(&out).iter().zip(rgb8.as_raw()) {
            assert!((f - *v as f32 / 255.0).abs() < 1e-6);
        }

        // Resized into a larger slot (letterboxed): values stay in range.
        for dtype in [Dtype::U16, Dtype::F32] {
            let big = FrameShape::new(8, 16, 1).with_dtype(dtype);
            let mut out = vec![0u8; big.bytes()];
            Decoder::new(big, ShapePolicy::Fit)
                .decode_bytes(&png16, &mut out)
                .unwrap();
            if dtype == Dtype::F32 {
                assert!(f32s(&out).iter().all(|f| (0.0..=1.0).contains(f)));
                assert!(f32s(&out).iter().any(|&f| f > 0.5));
            } else {
                assert!(u16s(&out).iter().any(|&v| v > 255));
            }
        }

        let u8shape = FrameShape::new(2, 4, 3);
        let mut out = vec![0u8; u8shape.bytes()];
        Decoder::new(u8shape, ShapePolicy::Fit)
            .decode_bytes(&png16, &mut out)
            .unwrap();
        let reduced: Vec<u8> = deep.as_raw().iter().map(|&v| (v >> 8) as u8).collect();
        for (a, b) in out.iter().zip(&reduced) {
            assert!(a.abs_diff(*b) <= 1, "{a} vs {b}");
        }
    }

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut v = std::io::Cursor::new(Vec::new());
        img.write_to(&mut v, fmt).unwrap();
        v.into_inner()
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]))
    }

    /// A file is read whole and decoded from memory: pixel for pixel what
    /// `image` decodes from the same bytes into its own buffer (the path
    /// before), straight into the slot when the shape matches (no convert
    /// stage), through the resize otherwise; each decode reports its stages.
    #[test]
    fn decode_file_reads_once_matches_image_and_times_its_stages() {
        let tmp = tempfile::tempdir().unwrap();
        let img = DynamicImage::ImageRgb8(smooth(96, 64));
        for (name, fmt) in [("a.jpg", ImageFormat::Jpeg), ("a.png", ImageFormat::Png)] {
            let bytes = encode(&img, fmt);
            let path = tmp.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let expected = image::load_from_memory(&bytes)
                .unwrap()
                .to_rgb8()
                .into_raw();
            let shape = FrameShape::new(64, 96, 3);
            let mut dec =
                Decoder::new(shape, ShapePolicy::Fit).with_jpeg_decoder(JpegDecoder::Image);
            let mut out = vec![0; shape.bytes()];
            for _ in 0..2 {
                // (twice: the second reuses the file buffer)
                out.fill(0);
                dec.decode_file(&path, &mut out).unwrap();
                assert!(out == expected, "{name}: differs from image's own decode");
                let t = dec.stages();
                assert!(t.read_ns > 0 && t.decode_ns > 0, "{name}: {t:?}");
                assert_eq!(t.convert_ns, 0, "{name}: decoded straight into the slot");
            }
            let half = FrameShape::new(32, 48, 3);
            let mut small = vec![0; half.bytes()];
            let mut dec =
                Decoder::new(half, ShapePolicy::Fit).with_jpeg_decoder(JpegDecoder::Image);
            dec.decode_file(&path, &mut small).unwrap();
            let t = dec.stages();
            assert!(t.convert_ns > 0 && t.decode_ns > 0, "{name}: {t:?}");
            // A failed decode reports its stages too.
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            assert!(dec.decode_file(&path, &mut small).is_err());
            assert!(dec.stages().read_ns > 0, "{name}");
        }
    }

    #[test]
    fn same_size_png_is_exact() {
        let img = DynamicImage::ImageRgb8(gradient(32, 16));
        let png = encode(&img, ImageFormat::Png);
        let shape = FrameShape::new(16, 32, 3);
        let mut out = vec![0; shape.bytes()];
        let d = Decoder::new(shape, ShapePolicy::Fit)
            .decode_bytes(&png, &mut out)
            .unwrap();
        assert_eq!((d.width, d.height), (32, 16));
        assert_eq!(out, img.to_rgb8().into_raw());
    }

    #[test]
    fn gray_and_rgba_are_converted() {
        let rgb = gradient(8, 8);
        let shape = FrameShape::new(8, 8, 3);
        for img in [
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(rgb.clone()).to_luma8()),
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(rgb.clone()).to_rgba8()),
            DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16()),
        ] {
            let png = encode(&img, ImageFormat::Png);
            let mut out = vec![0; shape.bytes()];
            Decoder::new(shape, ShapePolicy::Fit)
                .decode_bytes(&png, &mut out)
                .unwrap();
            assert_eq!(out, img.to_rgb8().into_raw());
        }
        let gray = FrameShape {
            channels: 1,
            ..shape
        };
        let mut out = vec![0; gray.bytes()];
        let png = encode(&DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png);
        Decoder::new(gray, ShapePolicy::Fit)
            .decode_bytes(&png, &mut out)
            .unwrap();
        assert_eq!(out, DynamicImage::ImageRgb8(rgb).to_luma8().into_raw());
    }

    #[test]
    fn policies_fit_fill_stretch_reject() {
        // A white 40x10 image into a 20x20 slot.
        let img =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 10, image::Rgb([255, 255, 255])));
        let png = encode(&img, ImageFormat::Png);
        let shape = FrameShape::new(20, 20, 3);
        let px = |out: &[u8], x: usize, y: usize| out[(y * 20 + x) * 3];
        let mut out = vec![7; shape.bytes()];
        Decoder::new(shape, ShapePolicy::Fit)
            .decode_bytes(&png, &mut out)
            .unwrap();
        assert_eq!(fit_size(40, 10, 20, 20), (20, 5));
        assert_eq!(px(&out, 10, 0), 0, "letterbox bar");
        assert_eq!(px(&out, 10, 10), 255, "image band");
        assert_eq!(px(&out, 10, 19), 0, "letterbox bar");
        for policy in [ShapePolicy::Fill, ShapePolicy::Stretch] {
            let mut out = vec![7; shape.bytes()];
            Decoder::new(shape, policy)
                .decode_bytes(&png, &mut out)
                .unwrap();
            assert!(out.iter().all(|&b| b == 255), "{policy:?}");
        }
        let mut out = vec![0; shape.bytes()];
        let e = Decoder::new(shape, ShapePolicy::Reject)
            .decode_bytes(&png, &mut out)
            .unwrap_err();
        assert_eq!(e.reason, SkipReason::ShapeRejected);
    }

    #[test]
    fn bad_inputs_are_classified_not_panics() {
        let shape = FrameShape::new(16, 32, 3);
        let mut out = vec![0; shape.bytes()];
        let mut d = Decoder::new(shape, ShapePolicy::Fit);
        let png = encode(&DynamicImage::ImageRgb8(gradient(32, 16)), ImageFormat::Png);
        let jpg = encode(
            &DynamicImage::ImageRgb8(gradient(32, 16)),
            ImageFormat::Jpeg,
        );
        assert_eq!(
            d.decode_bytes(&[], &mut out).unwrap_err().reason,
            SkipReason::Empty
        );
        assert_eq!(
            d.decode_bytes(b"hello, not an image", &mut out)
                .unwrap_err()
                .reason,
            SkipReason::UnknownFormat
        );
        for truncated in [&png[..png.len() / 2], &jpg[..jpg.len() / 2], &png[..40]] {
            let e = d.decode_bytes(truncated, &mut out).unwrap_err();
            assert!(
                matches!(e.reason, SkipReason::Corrupt | SkipReason::UnknownFormat),
                "{e}"
            );
        }
        // A PNG header declaring 100000 x 100000 pixels: refused before allocating.
        let mut bomb = png.clone();
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let e = d.decode_bytes(&bomb, &mut out).unwrap_err();
        assert!(
            matches!(e.reason, SkipReason::TooLarge | SkipReason::Corrupt),
            "{e}"
        );
    }

    #[cfg(feature = "turbojpeg")]
    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y) as f64)
            .sum::<f64>()
            / a.len() as f64
    }

    /// A smooth picture: JPEG decoders differ by a level or two on it.
    fn smooth(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) * 127 / (w + h)) as u8 + 64,
            ])
        })
    }

    fn test_image(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn decode_reads_the_jpeg_frame_header() {
        let frame = |name: &str| jpeg_frame(&mut std::io::Cursor::new(test_image(name))).unwrap();
        let f = |marker, precision| Some(JpegFrame { marker, precision });
        assert_eq!(frame("testorig.jpg"), f(0xC0, 8));
        assert_eq!(frame("testimgari.jpg"), f(0xC9, 8));
        assert_eq!(frame("testorig12.jpg"), f(0xC1, 12));
        // Not a JPEG, or cut before its frame header: no answer, no panic.
        let jpg = test_image("testorig.jpg");
        for bytes in [&b"not a jpeg"[..], &jpg[..3], &jpg[..30], &[]] {
            assert_eq!(jpeg_frame(&mut std::io::Cursor::new(bytes)).unwrap(), None);
        }
    }

    /// libjpeg-turbo's arithmetic-coded and 12-bit test images are valid
    /// JPEGs: skipped as `unsupported` (not `corrupt`) with what would
    /// decode them; with libjpeg-turbo the arithmetic one decodes to the
    /// pixels of its Huffman-coded twin decoded by `image`.
    #[test]
    fn decode_arithmetic_and_12_bit_jpegs() {
        let shape = FrameShape::new(149, 227, 3);
        let (ari, twelve) = (test_image("testimgari.jpg"), test_image("testorig12.jpg"));
        let mut out = vec![0; shape.bytes()];
        let mut image = Decoder::new(shape, ShapePolicy::Fit).with_jpeg_decoder(JpegDecoder::Image);
        let e = image.decode_bytes(&ari, &mut out).unwrap_err();
        assert_eq!(e.reason, SkipReason::Unsupported, "{e}");
        assert!(e.detail.contains("arithmetic-coded"), "{e}");
        let hint = if JpegDecoder::TURBOJPEG_BUILT {
            "jpeg_decoder = \"turbojpeg\""
        } else {
            "--features turbojpeg"
        };
        assert!(e.detail.contains(hint), "{e}");
        let mut auto = Decoder::new(shape, ShapePolicy::Fit);
        for d in [&mut image, &mut auto] {
            let e = d.decode_bytes(&twelve, &mut out).unwrap_err();
            assert_eq!(e.reason, SkipReason::Unsupported, "{e}");
            assert!(e.detail.contains("12-bit JPEG"), "{e}");
        }
        // The Huffman-coded twin decodes in every build.
        let mut reference = vec![0; shape.bytes()];
        image
            .decode_bytes(&test_image("testorig.jpg"), &mut reference)
            .unwrap();
        let r = auto.decode_bytes(&ari, &mut out);
        if JpegDecoder::TURBOJPEG_BUILT {
            assert_eq!(
                r.unwrap(),
                Decoded {
                    width: 227,
                    height: 149
                }
            );
            let diff = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| a.abs_diff(*b) as f64)
                .sum::<f64>()
                / out.len() as f64;
            assert!(diff < 1.5, "mean abs diff {diff}");
        } else {
            assert_eq!(r.unwrap_err().reason, SkipReason::Unsupported);
        }
    }

    /// A JPEG encoded by `jpeg-encoder` (colour type, chroma sampling,
    /// progressive, restart interval as given).
    fn jpeg_of(
        pixels: &[u8],
        (w, h): (u16, u16),
        color: jpeg_encoder::ColorType,
        sampling: jpeg_encoder::SamplingFactor,
        progressive: bool,
        restart: u16,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut v, 90);
        e.set_sampling_factor(sampling);
        e.set_progressive(progressive);
        e.set_restart_interval(restart);
        e.encode(pixels, w, h, color).unwrap();
        v
    }

    /// JPEGs of the slot's size in its colour type decode straight from
    /// the bytes through zune-jpeg (`decode_zune`), to exactly the pixels of
    /// the `image` path (`decode_reader`, the path before): colour (4:2:0,
    /// 4:4:4, progressive, restart markers), CMYK into RGB, gray into a
    /// gray slot. Other sizes and colour types are handed to the `image`
    /// path; bad files get the same skip reason on both paths.
    #[test]
    fn direct_jpeg_decode_matches_the_image_path() {
        use jpeg_encoder::{ColorType as J, SamplingFactor as S};
        let (w, h) = (96u16, 64u16);
        let rgb = smooth(u32::from(w), u32::from(h));
        let gray = DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
        let cmyk: Vec<u8> = rgb
            .pixels()
            .flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 40])
            .collect();
        let color = FrameShape::new(u32::from(h), u32::from(w), 3);
        let mono = FrameShape {
            channels: 1,
            ..color
        };
        let half = FrameShape::new(32, 48, 3);
        let mut cases = vec![];
        for (sampling, progressive, restart) in [
            (S::R_4_2_0, false, 0),
            (S::R_4_4_4, false, 0),
            (S::R_4_2_0, true, 0),
            (S::R_4_2_2, false, 3),
        ] {
            let jpg = jpeg_of(rgb.as_raw(), (w, h), J::Rgb, sampling, progressive, restart);
            cases.push((
                format!("rgb {sampling:?} p{progressive} r{restart}"),
                jpg,
                color,
                true,
            ));
        }
        let cmyk = jpeg_of(&cmyk, (w, h), J::Cmyk, S::R_4_4_4, false, 0);
        let gray = jpeg_of(gray.as_raw(), (w, h), J::Luma, S::R_4_4_4, false, 0);
        let rgb = jpeg_of(rgb.as_raw(), (w, h), J::Rgb, S::R_4_2_0, false, 0);
        cases.extend([
            ("cmyk".to_string(), cmyk.clone(), color, true),
            ("gray into gray".to_string(), gray.clone(), mono, true),
            // Handed to `image`: converted or resized there.
            ("gray into rgb".to_string(), gray, color, false),
            ("rgb into gray".to_string(), rgb.clone(), mono, false),
            (
                "rgb into a smaller slot".to_string(),
                rgb.clone(),
                half,
                false,
            ),
            (
                "cmyk into u16".to_string(),
                cmyk,
                color.with_dtype(Dtype::U16),
                false,
            ),
        ]);
        for (name, jpg, shape, direct) in &cases {
            let mut d =
                Decoder::new(*shape, ShapePolicy::Fit).with_jpeg_decoder(JpegDecoder::Image);
            let (mut a, mut b) = (vec![0; shape.bytes()], vec![0; shape.bytes()]);
            let taken = d.decode_zune(jpg, &mut a);
            assert_eq!(taken.is_some(), *direct, "{name}");
            let via_image = d
                .decode_reader(std::io::Cursor::new(&jpg[..]), &mut b)
                .unwrap();
            assert_eq!(d.decode_bytes(jpg, &mut a).unwrap(), via_image, "{name}");
            assert!(a == b, "{name}: pixels differ from the image path");
            assert_eq!(d.stages().convert_ns > 0, !*direct, "{name}");
        }

        // Bad files: the same reason on both paths (and no panic).
        let sof = rgb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let with = |at: usize, bytes: &[u8]| {
            let mut v = rgb.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            v
        };
        let mut garbled = rgb.clone();
        let n = garbled.len();
        for b in &mut garbled[n / 2..n - 8] {
            *b = 0x5A;
        }
        use SkipReason::*;
        let bad = [
            ("truncated", rgb[..rgb.len() / 2].to_vec(), Some(Corrupt)),
            (
                "60000x60000",
                with(sof + 5, &[0xEA, 0x60, 0xEA, 0x60]),
                Some(TooLarge),
            ),
            ("zero width", with(sof + 7, &[0, 0]), Some(Corrupt)),
            ("12-bit", with(sof + 4, &[12]), Some(Unsupported)),
            ("lossless (SOF3)", with(sof + 1, &[0xC3]), Some(Corrupt)),
            (
                "arithmetic (SOF9)",
                with(sof + 1, &[0xC9]),
                Some(Unsupported),
            ),
            // Decoded leniently or skipped as corrupt.
            ("entropy data garbled", garbled, None),
            (
                "cut after its header",
                [&rgb[..sof + 40], &[0xFF, 0xD9][..]].concat(),
                Some(Corrupt),
            ),
        ];
        for (name, jpg, expected) in bad {
            let mut d = Decoder::new(color, ShapePolicy::Fit).with_jpeg_decoder(JpegDecoder::Image);
            let (mut a, mut b) = (vec![0; color.bytes()], vec![0; color.bytes()]);
            let direct = d.decode_bytes(&jpg, &mut a).map_err(|e| e.reason);
            let via_image = d
                .decode_reader(std::io::Cursor::new(&jpg[..]), &mut b)
                .map_err(|e| e.reason);
            assert_eq!(direct, via_image, "{name}");
            match expected {
                Some(reason) => assert_eq!(direct, Err(reason), "{name}"),
                None => assert!(matches!(direct, Ok(_) | Err(Corrupt)), "{name}"),
            }
            if direct.is_ok() {
                assert!(a == b, "{name}: lenient decodes differ");
            }
        }
    }

    /// The truncation check reads the file's tail into a stack buffer:
    /// no allocation, and an end marker split across its pieces is found.
    #[test]
    fn jpeg_truncation_check_allocates_nothing() {
        let jpg = test_image("testorig.jpg");
        let mut cursor = std::io::Cursor::new(&jpg[..]);
        let info = allocation_counter::measure(|| {
            assert!(!jpeg_truncated(&mut cursor).unwrap());
        });
        assert_eq!(info.count_total, 0, "{info:?}");
        // FF D9 at every offset around the 4 KiB pieces of a 16 KiB tail.
        for at in (4096 - 3..4096 + 3).chain(16_384 - 4..16_384 - 1) {
            let mut v = vec![0xFF, 0xD8];
            v.resize(20_000, 0);
            let at = 20_000 - 16_384 + at;
            v[at] = 0xFF;
            v[at + 1] = 0xD9;
            assert!(
                !jpeg_truncated(&mut std::io::Cursor::new(&v)).unwrap(),
                "{at}"
            );
            v[at + 1] = 0;
            assert!(
                jpeg_truncated(&mut std::io::Cursor::new(&v)).unwrap(),
                "{at}"
            );
        }
    }

    /// Decodes reserve what they allocate in a shared budget and give it
    /// back; a decode that could never fit is `too_large`; one that fits
    /// waits until others give memory back.
    #[test]
    fn decode_memory_budget_is_shared_and_bounded() {
        let shape = FrameShape::new(16, 16, 3);
        // 256x256 RGB: 192 KiB decoded.
        let png = encode(
            &DynamicImage::ImageRgb8(gradient(256, 256)),
            ImageFormat::Png,
        );
        let mut out = vec![0; shape.bytes()];
        let small = DecodeBudget::new(100 << 10);
        let e = Decoder::new(shape, ShapePolicy::Fit)
            .with_budget(small.clone())
            .decode_bytes(&png, &mut out)
            .unwrap_err();
        assert_eq!(e.reason, SkipReason::TooLarge, "{e}");
        assert!(e.detail.contains("producer.decode_memory_mb"), "{e}");
        let budget = DecodeBudget::new(256 << 10);
        let mut d = Decoder::new(shape, ShapePolicy::Fit).with_budget(budget.clone());
        d.decode_bytes(&png, &mut out).unwrap();
        assert_eq!(budget.in_use(), 0, "given back");
        // Another decode holds most of the budget: this one waits for it.
        let held = budget.reserve(200 << 10).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let r = d.decode_bytes(&png, &mut out).map(|_| ());
            tx.send(r).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
            .unwrap();
        waiter.join().unwrap();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn auto_resolves_to_what_is_built() {
        let shape = FrameShape::new(4, 4, 3);
        let d = Decoder::new(shape, ShapePolicy::Fit);
        let expected = if JpegDecoder::TURBOJPEG_BUILT {
            JpegDecoder::Turbojpeg
        } else {
            JpegDecoder::Image
        };
        assert_eq!(d.jpeg_decoder(), expected);
        let d = d.with_jpeg_decoder(JpegDecoder::Image);
        assert_eq!(d.jpeg_decoder(), JpegDecoder::Image);
    }

    /// libjpeg-turbo and the `image` decoder agree on the slot's pixels, for
    /// every slot format, at the same size and through DCT scaling + resize
    /// (1/8: 640x480 into 80x60; 1/2: into 200x150), and for each policy.
    #[cfg(feature = "turbojpeg")]
    #[test]
    fn turbojpeg_agrees_with_image() {
        let jpg = encode(
            &DynamicImage::ImageRgb8(smooth(640, 480)),
            ImageFormat::Jpeg,
        );
        for (h, w) in [(480, 640), (60, 80), (150, 200), (100, 100)] {
            for channels in [1, 3, 4] {
                for policy in [ShapePolicy::Fit, ShapePolicy::Fill, ShapePolicy::Stretch] {
                    let shape = FrameShape::new(h, w, channels);
                    let mut turbo = Decoder::new(shape, policy);
                    assert_eq!(turbo.jpeg_decoder(), JpegDecoder::Turbojpeg);
                    let mut image =
                        Decoder::new(shape, policy).with_jpeg_decoder(JpegDecoder::Image);
                    let (mut a, mut b) = (vec![0; shape.bytes()], vec![0; shape.bytes()]);
                    let da = turbo.decode_bytes(&jpg, &mut a).unwrap();
                    let db = if channels == 1 {
                        // libjpeg-turbo's gray is the JPEG's own luma
                        // (BT.601 weights); `image` converts with BT.709's.
                        // Compare with BT.601 of `image`'s RGB.
                        let rgb = FrameShape {
                            channels: 3,
                            ..shape
                        };
                        let mut c = vec![0; rgb.bytes()];
                        let mut image =
                            Decoder::new(rgb, policy).with_jpeg_decoder(JpegDecoder::Image);
                        let db = image.decode_bytes(&jpg, &mut c).unwrap();
                        for (g, p) in b.iter_mut().zip(c.chunks(3)) {
                            let y = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
                            *g = y.round() as u8;
                        }
                        db
                    } else {
                        image.decode_bytes(&jpg, &mut b).unwrap()
                    };
                    assert_eq!((da.width, da.height), (640, 480));
                    assert_eq!(da, db);
                    let diff = mean_abs_diff(&a, &b);
                    assert!(
                        diff < 2.5,
                        "{h}x{w}x{channels} {policy:?}: mean abs diff {diff}"
                    );
                    if channels == 4 && h == 480 {
                        assert!(a.chunks(4).all(|p| p[3] == 255), "opaque alpha");
                    }
                }
            }
        }
    }

    /// Files go through libjpeg-turbo as well (whole file read into the
    /// decoder's reused buffer), PNGs next to them through `image`; a
    /// truncated or corrupt JPEG is skipped, never a panic.
    #[cfg(feature = "turbojpeg")]
    #[test]
    fn turbojpeg_files_and_bad_jpegs() {
        let dir = tempfile::tempdir().unwrap();
        let img = DynamicImage::ImageRgb8(smooth(64, 48));
        let jpg = encode(&img, ImageFormat::Jpeg);
        std::fs::write(dir.path().join("a.jpg"), &jpg).unwrap();
        std::fs::write(dir.path().join("b.png"), encode(&img, ImageFormat::Png)).unwrap();
        let shape = FrameShape::new(48, 64, 3);
        let mut d = Decoder::new(shape, ShapePolicy::Fit);
        let mut out = vec![0; shape.bytes()];
        d.decode_file(&dir.path().join("a.jpg"), &mut out).unwrap();
        assert!(mean_abs_diff(&out, img.as_bytes()) < 3.0);
        d.decode_file(&dir.path().join("b.png"), &mut out).unwrap();
        assert_eq!(out, img.as_bytes());
        // Truncated: refused up front.
        let e = d.decode_bytes(&jpg[..jpg.len() / 2], &mut out).unwrap_err();
        assert_eq!(e.reason, SkipReason::Corrupt, "{e}");
        // Entropy-coded data overwritten, markers intact: decoded leniently
        // or skipped as corrupt; either way no panic and no other reason.
        let mut bad = jpg.clone();
        let n = bad.len();
        for b in &mut bad[n / 2..n - 8] {
            *b = 0xFF;
        }
        if let Err(e) = d.decode_bytes(&bad, &mut out) {
            assert_eq!(e.reason, SkipReason::Corrupt, "{e}");
        }
        // A header declaring 60000x60000: refused before decoding.
        let mut bomb = jpg.clone();
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        bomb[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        let e = d.decode_bytes(&bomb, &mut out).unwrap_err();
        assert!(
            matches!(e.reason, SkipReason::TooLarge | SkipReason::Corrupt),
            "{e}"
        );
    }
}
