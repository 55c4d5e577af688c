//! Decoding an image file straight into a frame buffer of the ring's shape.
//!
//! When the file already has the slot's size and pixel format it is decoded
//! directly into the slot (`image`'s `read_image`), with no intermediate
//! buffer. Otherwise it is decoded, converted to the slot's channels at 8
//! bits, and resized with SIMD (`fast_image_resize`) according to the
//! [`ShapePolicy`]. Decoder limits derived from the slot size refuse
//! decompression bombs before they allocate.

use crate::config::ShapePolicy;
use fast_image_resize::images::{CroppedImageMut, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};
use std::fmt;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The frame shape decoded into.
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
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("shape", &self.shape)
            .field("policy", &self.policy)
            .finish()
    }
}

fn pixel_type(channels: u32) -> PixelType {
    match channels {
        1 => PixelType::U8,
        4 => PixelType::U8x4,
        _ => PixelType::U8x3,
    }
}

fn color_type(channels: u32) -> ColorType {
    match channels {
        1 => ColorType::L8,
        4 => ColorType::Rgba8,
        _ => ColorType::Rgb8,
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
        }
    }

    /// The frame shape.
    pub fn shape(&self) -> FrameShape {
        self.shape
    }

    /// Decodes the file at `path` into `out` (exactly one frame's bytes).
    pub fn decode_file(&mut self, path: &Path, out: &mut [u8]) -> Result<Decoded, DecodeError> {
        use std::os::unix::fs::OpenOptionsExt;
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
        self.decode_reader(BufReader::new(file), out)
    }

    /// Decodes an image held in memory into `out`.
    pub fn decode_bytes(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<Decoded, DecodeError> {
        if bytes.is_empty() {
            return Err(err(SkipReason::Empty, "no bytes"));
        }
        self.decode_reader(std::io::Cursor::new(bytes), out)
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
        if jpeg_truncated(&mut reader).map_err(|e| err(SkipReason::Unreadable, e))? {
            return Err(err(
                SkipReason::Corrupt,
                "truncated JPEG (no end-of-image marker)",
            ));
        }
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
        if w == 0 || h == 0 {
            return Err(err(SkipReason::Corrupt, "zero-sized image"));
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
        if same_size && decoder.color_type() == color_type(self.shape.channels) {
            // Fast path: decode straight into the slot.
            decoder.read_image(out).map_err(classify)?;
            return Ok(src);
        }
        let img = DynamicImage::from_decoder(decoder).map_err(classify)?;
        let pixels: Vec<u8> = match self.shape.channels {
            1 => img.into_luma8().into_raw(),
            4 => img.into_rgba8().into_raw(),
            _ => img.into_rgb8().into_raw(),
        };
        if same_size {
            out.copy_from_slice(&pixels);
            return Ok(src);
        }
        self.resize(&pixels, w, h, out)?;
        Ok(src)
    }

    fn resize(&mut self, pixels: &[u8], w: u32, h: u32, out: &mut [u8]) -> Result<(), DecodeError> {
        let pt = pixel_type(self.shape.channels);
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
        let len = r.seek(SeekFrom::End(0))?;
        let tail = len.min(16 * 1024);
        r.seek(SeekFrom::Start(len - tail))?;
        let mut buf = Vec::with_capacity(tail as usize);
        r.take(tail).read_to_end(&mut buf)?;
        !buf.windows(2).any(|w| w == [0xFF, 0xD9])
    } else {
        false
    };
    r.seek(SeekFrom::Start(0))?;
    Ok(truncated)
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

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut v = std::io::Cursor::new(Vec::new());
        img.write_to(&mut v, fmt).unwrap();
        v.into_inner()
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]))
    }

    #[test]
    fn same_size_png_is_exact() {
        let img = DynamicImage::ImageRgb8(gradient(32, 16));
        let png = encode(&img, ImageFormat::Png);
        let shape = FrameShape {
            height: 16,
            width: 32,
            channels: 3,
        };
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
        let shape = FrameShape {
            height: 8,
            width: 8,
            channels: 3,
        };
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
        let shape = FrameShape {
            height: 20,
            width: 20,
            channels: 3,
        };
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
        let shape = FrameShape {
            height: 16,
            width: 32,
            channels: 3,
        };
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
}
