//! YUV4MPEG2 (y4m) streams: the header (`YUV4MPEG2 W.. H.. C..`), checked
//! against the ring's frame size, and the conversion of each frame's planes
//! to the ring's interleaved gray, RGB or RGBA pixels.

/// The first bytes of a y4m stream.
pub(crate) const MAGIC: &[u8] = b"YUV4MPEG2";

/// The longest header line accepted (real ones are well under 100 bytes).
pub(crate) const MAX_LINE: usize = 4096;

/// How a frame's samples are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One luma plane.
    Mono,
    /// Y, then Cb and Cr subsampled by `sx` horizontally and `sy` vertically.
    Yuv { sx: usize, sy: usize },
}

/// A y4m stream's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Y4m {
    /// Frame width.
    pub(crate) width: u32,
    /// Frame height.
    pub(crate) height: u32,
    /// The colour space tag, e.g. `444`, `420jpeg`, `mono`.
    pub(crate) colour: String,
    /// The frame rate `(num, den)` of its `F` tag, if valid.
    pub(crate) frame_rate: Option<(u64, u64)>,
    layout: Layout,
    /// Full-range samples (`XCOLORRANGE=FULL`; mono is full unless said
    /// otherwise, as ffmpeg writes it), else limited (16–235).
    full_range: bool,
}

impl Y4m {
    /// Parses a header line (`YUV4MPEG2 W32 H24 F25:1 C444 …`, without its
    /// newline).
    pub(crate) fn parse(line: &[u8]) -> Result<Y4m, String> {
        let text = String::from_utf8_lossy(line);
        let mut tokens = text.split(' ').filter(|t| !t.is_empty());
        if tokens.next() != Some("YUV4MPEG2") {
            return Err("not a y4m header".into());
        }
        let (mut width, mut height) = (None, None);
        let mut colour = "420jpeg".to_string();
        let mut range = None;
        let mut frame_rate = None;
        for t in tokens {
            let (tag, value) = t.split_at(1);
            match tag {
                "W" => width = value.parse::<u32>().ok(),
                "H" => height = value.parse::<u32>().ok(),
                "C" => colour = value.to_string(),
                "X" => match value {
                    "COLORRANGE=FULL" => range = Some(true),
                    "COLORRANGE=LIMITED" => range = Some(false),
                    _ => {}
                },
                "F" => {
                    frame_rate = value.split_once(':').and_then(|(n, d)| {
                        let (n, d) = (n.parse::<u64>().ok()?, d.parse::<u64>().ok()?);
                        (n > 0 && d > 0).then_some((n, d))
                    });
                }
                // Interlacing, aspect ratio: nothing to check.
                _ => {}
            }
        }
        let (Some(width), Some(height)) = (width, height) else {
            return Err(format!(
                "y4m header without a valid width and height: {text:?}"
            ));
        };
        if width == 0 || height == 0 {
            return Err(format!("y4m header with a zero size: {text:?}"));
        }
        let layout = match colour.as_str() {
            "mono" => Layout::Mono,
            "444" => Layout::Yuv { sx: 1, sy: 1 },
            "422" => Layout::Yuv { sx: 2, sy: 1 },
            "420" | "420jpeg" | "420mpeg2" | "420paldv" => Layout::Yuv { sx: 2, sy: 2 },
            "411" => Layout::Yuv { sx: 4, sy: 1 },
            other => {
                return Err(format!(
                    "y4m colour space C{other} cannot be converted to the ring's frames: \
                     8-bit 444, 422, 420 and mono are (e.g. ffmpeg -pix_fmt yuv444p)"
                ))
            }
        };
        Ok(Y4m {
            width,
            height,
            colour,
            frame_rate,
            layout,
            full_range: range.unwrap_or(layout == Layout::Mono),
        })
    }

    /// Checks the stream's frame size against the ring's `shape`: a message
    /// naming both when they differ.
    pub(crate) fn check(&self, shape: super::FrameShape) -> Result<(), String> {
        let (width, height) = (self.width, self.height);
        if (width, height) != (shape.width, shape.height) {
            return Err(format!(
                "the y4m stream's frames are {width}x{height} (width x height) but the ring's are {}x{}: \
                 leave the ring's size unset (ring.height, ring.width: it then takes the stream's), \
                 create it with --width {width} --height {height}, or scale the stream \
                 (ffmpeg -vf scale={}:{})",
                shape.width, shape.height, shape.width, shape.height
            ));
        }
        Ok(())
    }

    /// Size of a chroma plane.
    fn chroma(&self, sx: usize, sy: usize) -> (usize, usize) {
        (
            (self.width as usize).div_ceil(sx),
            (self.height as usize).div_ceil(sy),
        )
    }

    /// Bytes of one frame's planes.
    pub(crate) fn frame_bytes(&self) -> usize {
        let luma = self.width as usize * self.height as usize;
        match self.layout {
            Layout::Mono => luma,
            Layout::Yuv { sx, sy } => {
                let (cw, ch) = self.chroma(sx, sy);
                luma + 2 * cw * ch
            }
        }
    }

    /// Converts one frame's planes (`frame_bytes()` of them) into `out`,
    /// interleaved with `channels` (1 gray, 3 RGB, 4 RGBA with opaque
    /// alpha). YCbCr uses BT.601 (ffmpeg's default for y4m); chroma is
    /// upsampled by repetition.
    pub(crate) fn convert(&self, planes: &[u8], out: &mut [u8], channels: u32) {
        let (w, h) = (self.width as usize, self.height as usize);
        let c = channels as usize;
        debug_assert_eq!(planes.len(), self.frame_bytes());
        debug_assert_eq!(out.len(), w * h * c);
        let (y_plane, rest) = planes.split_at(w * h);
        // Luma to a full-range level.
        let level = |y: u8| -> u8 {
            if self.full_range {
                y
            } else {
                clamp((298 * (i32::from(y) - 16) + 128) >> 8)
            }
        };
        match self.layout {
            Layout::Mono => {
                for (px, &y) in out.chunks_exact_mut(c).zip(y_plane) {
                    let g = level(y);
                    px[..c.min(3)].fill(g);
                    if c == 4 {
                        px[3] = 255;
                    }
                }
            }
            Layout::Yuv { sx, sy } => {
                let (cw, ch) = self.chroma(sx, sy);
                let (u_plane, v_plane) = rest.split_at(cw * ch);
                for row in 0..h {
                    let crow = (row / sy) * cw;
                    for col in 0..w {
                        let y = y_plane[row * w + col];
                        let px = &mut out[(row * w + col) * c..][..c];
                        if c == 1 {
                            px[0] = level(y);
                            continue;
                        }
                        let k = crow + col / sx;
                        let rgb = to_rgb(y, u_plane[k], v_plane[k], self.full_range);
                        px[..3].copy_from_slice(&rgb);
                        if c == 4 {
                            px[3] = 255;
                        }
                    }
                }
            }
        }
    }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// BT.601 YCbCr to RGB, in 8.8 fixed point.
fn to_rgb(y: u8, u: u8, v: u8, full_range: bool) -> [u8; 3] {
    let (d, e) = (i32::from(u) - 128, i32::from(v) - 128);
    if full_range {
        let c = i32::from(y) << 8;
        [
            clamp((c + 359 * e + 128) >> 8),
            clamp((c - 88 * d - 183 * e + 128) >> 8),
            clamp((c + 454 * d + 128) >> 8),
        ]
    } else {
        let c = 298 * (i32::from(y) - 16);
        [
            clamp((c + 409 * e + 128) >> 8),
            clamp((c - 100 * d - 208 * e + 128) >> 8),
            clamp((c + 516 * d + 128) >> 8),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FrameShape;

    const SHAPE: FrameShape = FrameShape::new(2, 4, 3);

    #[test]
    fn headers_are_checked_against_the_ring() {
        let y = Y4m::parse(b"YUV4MPEG2 W4 H2 F30000:1001 Ip A1:1 C444").unwrap();
        assert_eq!((y.width, y.height, y.colour.as_str()), (4, 2, "444"));
        assert_eq!(y.frame_rate, Some((30000, 1001)));
        y.check(SHAPE).unwrap();
        assert_eq!(y.frame_bytes(), 24);
        // No C tag: 4:2:0.
        let y = Y4m::parse(b"YUV4MPEG2 W4 H2").unwrap();
        assert_eq!(y.frame_bytes(), 8 + 2 * 2);
        let e = Y4m::parse(b"YUV4MPEG2 W16 H16 C444")
            .unwrap()
            .check(SHAPE)
            .unwrap_err();
        assert!(e.contains("16x16") && e.contains("4x2"), "{e}");
        let e = Y4m::parse(b"YUV4MPEG2 W4 H2 C420p10").unwrap_err();
        assert!(e.contains("C420p10"), "{e}");
        for bad in [
            &b"YUV4MPEG2 W4"[..],
            b"YUV4MPEG2 Wx H2",
            b"YUV4MPEG2 W0 H0",
            b"JUNK",
        ] {
            assert!(Y4m::parse(bad).is_err());
        }
    }

    #[test]
    fn planes_become_interleaved_pixels() {
        // Limited-range black, white and the BT.601 primaries' neighbours.
        let y = Y4m::parse(b"YUV4MPEG2 W4 H2 C444").unwrap();
        let planes = [
            [16, 235, 81, 145, 41, 16, 235, 128],
            [128, 128, 90, 54, 240, 128, 128, 128],
            [128, 128, 240, 34, 110, 128, 128, 128],
        ]
        .concat();
        let mut out = vec![0; 24];
        y.convert(&planes, &mut out, 3);
        assert_eq!(&out[..6], &[0, 0, 0, 255, 255, 255]);
        let near = |a: &[u8], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 2);
        assert!(near(&out[6..9], [255, 0, 0]), "{:?}", &out[6..9]);
        assert!(near(&out[9..12], [0, 255, 0]), "{:?}", &out[9..12]);
        assert!(near(&out[12..15], [0, 0, 255]), "{:?}", &out[12..15]);
        let mut gray = vec![0; 8];
        y.convert(&planes, &mut gray, 1);
        assert_eq!((gray[0], gray[1]), (0, 255));
        // Mono is full range unless tagged: copied as is.
        let m = Y4m::parse(b"YUV4MPEG2 W4 H2 Cmono").unwrap();
        let luma = [0, 10, 20, 30, 40, 50, 60, 255];
        let mut out = vec![0; 32];
        m.convert(&luma, &mut out, 4);
        assert_eq!(&out[4..8], &[10, 10, 10, 255]);
        // 4:2:0: a chroma sample covers 2x2 pixels.
        let q = Y4m::parse(b"YUV4MPEG2 W4 H2 C420jpeg").unwrap();
        let planes = [&[128u8; 8][..], &[128, 240], &[128, 110]].concat();
        let mut out = vec![0; 24];
        q.convert(&planes, &mut out, 3);
        assert_eq!(&out[0..3], &out[3..3 + 3]);
        assert_eq!(&out[6..9], &out[18..21]);
        assert_ne!(&out[0..3], &out[6..9]);
    }
}
