//! The ffmpeg and ffprobe plumbing that video input and output share:
//! checking for and starting the programs, keeping the end of their stderr
//! for messages, waiting for them, asking ffprobe about an input, and
//! ffmpeg's name for the ring's pixel format.

use super::error::VideoError;
use crate::media::{Dtype, FrameShape};
use parking_lot::Mutex;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of ffmpeg's stderr is kept for messages.
const STDERR_KEEP: usize = 4096;

/// ffmpeg's name for the ring's pixel format: 8 bits per sample for
/// `uint8`, 16 native-endian bits for `uint16`; `None` for `float32`
/// (video into or out of a float ring is refused: see [`float_refused`]).
pub fn pix_fmt(shape: FrameShape) -> Option<&'static str> {
    let le = cfg!(target_endian = "little");
    Some(match (shape.dtype, shape.channels) {
        (Dtype::U8, 1) => "gray",
        (Dtype::U8, 4) => "rgba",
        (Dtype::U8, _) => "rgb24",
        (Dtype::U16, 1) if le => "gray16le",
        (Dtype::U16, 1) => "gray16be",
        (Dtype::U16, 4) if le => "rgba64le",
        (Dtype::U16, 4) => "rgba64be",
        (Dtype::U16, _) if le => "rgb48le",
        (Dtype::U16, _) => "rgb48be",
        (Dtype::F32, _) => return None,
    })
}

/// The error for video into or out of a `float32` ring.
pub fn float_refused(what: &str) -> VideoError {
    VideoError::Stream {
        what: what.into(),
        message: "video is decoded and encoded as uint8 or uint16 only, not float32: use a uint8 or uint16 ring (ring.dtype) and convert in your consumer, or raw frames (--output -)".into(),
    }
}

/// What ffprobe tells of a video input's first video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoProbe {
    /// Its frames' `(width, height)` as ffmpeg decodes them (a rotation
    /// in its metadata applied, as ffmpeg does).
    pub size: Option<(u32, u32)>,
    /// Its frame rate `(num, den)`.
    pub frame_rate: Option<(u64, u64)>,
}

/// Whether `input` is a regular file or an image-sequence pattern: ffprobe
/// may read it before ffmpeg does, and its frames' presentation times
/// follow from its frame rate.
pub(super) fn is_file_input(input: &str) -> bool {
    let pattern = input.contains('%') && !input.contains("://");
    pattern || std::fs::metadata(input).is_ok_and(|m| m.is_file())
}

/// Asks ffprobe (found beside `ffmpeg`) about `input`'s first video
/// stream. A regular file or an image-sequence pattern is probed; with
/// `live` also a URL or a device (ffmpeg opens them again; a FIFO or stdin
/// never: ffprobe would eat the data the producer is about to read).
/// Nothing is known of an input not probed, nor of one ffprobe does not
/// answer for within 10 s.
pub fn probe_video(ffmpeg: &str, input: &str, live: bool) -> VideoProbe {
    let reopenable =
        input.contains("://") && !input.starts_with("pipe:") || input.starts_with("/dev/video");
    if !(is_file_input(input) || live && reopenable) {
        return VideoProbe::default();
    }
    run_ffprobe(ffmpeg, input).map_or_else(VideoProbe::default, |t| parse_probe(&t))
}

/// ffprobe's `key=value` lines for `input`, `None` if it could not say.
fn run_ffprobe(ffmpeg: &str, input: &str) -> Option<String> {
    let ffprobe = match ffmpeg.strip_suffix("ffmpeg") {
        Some(dir) => format!("{dir}ffprobe"),
        None => return None,
    };
    let mut child = Command::new(&ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=width,height,avg_frame_rate,r_frame_rate:stream_side_data=rotation",
            "-of",
            "default=nw=1",
        ])
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut text = String::new();
    child.stdout.take()?.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Reads ffprobe's `key=value` lines: the size (swapped by a quarter-turn
/// rotation) and the first valid rate (avg_frame_rate, then r_frame_rate;
/// `0/0` is none).
fn parse_probe(text: &str) -> VideoProbe {
    let mut width = None;
    let mut height = None;
    let mut rotation = 0i64;
    let (mut avg, mut r) = (None, None);
    let rate = |v: &str| {
        let (n, d) = v.trim().split_once('/')?;
        let (n, d) = (n.parse::<u64>().ok()?, d.parse::<u64>().ok()?);
        (n > 0 && d > 0).then_some((n, d))
    };
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        match key {
            "width" => width = value.parse::<u32>().ok().filter(|&w| w > 0),
            "height" => height = value.parse::<u32>().ok().filter(|&h| h > 0),
            "rotation" => rotation = value.parse::<f64>().map_or(0, |r| r.round() as i64),
            "avg_frame_rate" => avg = avg.or(rate(value)),
            "r_frame_rate" => r = r.or(rate(value)),
            _ => {}
        }
    }
    let size = width.zip(height).map(|(w, h)| {
        if rotation.rem_euclid(180) == 90 {
            (h, w)
        } else {
            (w, h)
        }
    });
    VideoProbe {
        size,
        frame_rate: avg.or(r),
    }
}

/// Keeps the tail of a child's stderr, read by a thread.
#[derive(Debug)]
pub(super) struct StderrTail {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    pub(super) fn start(mut from: impl Read + Send + 'static) -> StderrTail {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut v = b.lock();
                v.extend_from_slice(&chunk[..n]);
                if v.len() > 2 * STDERR_KEEP {
                    let cut = v.len() - STDERR_KEEP;
                    v.drain(..cut);
                }
            }
        });
        StderrTail {
            buf,
            thread: Some(thread),
        }
    }

    pub(super) fn text(&mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let v = self.buf.lock();
        let start = v.len().saturating_sub(STDERR_KEEP);
        String::from_utf8_lossy(&v[start..]).trim().to_string()
    }
}

/// Checks that `program` runs (`program -version`), so that a missing
/// ffmpeg is reported before any frame is taken.
pub fn check_program(program: &str) -> Result<(), VideoError> {
    let mut cmd = Command::new(program);
    cmd.arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawn(program, &mut cmd)?;
    child.wait().map_err(|source| VideoError::Spawn {
        program: program.into(),
        source,
    })?;
    Ok(())
}

/// Starts `program`: an error that says ffmpeg is missing when it is.
pub(super) fn spawn(program: &str, cmd: &mut Command) -> Result<Child, VideoError> {
    tracing::debug!(?cmd, "starting ffmpeg");
    cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            VideoError::NotFound {
                program: program.into(),
            }
        } else {
            VideoError::Spawn {
                program: program.into(),
                source,
            }
        }
    })
}

/// Waits for an ffmpeg child to exit: an error carrying the end of its
/// stderr if it failed.
pub(super) fn wait_ffmpeg(
    child: &mut Child,
    stderr: &mut StderrTail,
    what: &str,
) -> Result<(), VideoError> {
    let status = child.wait().map_err(|source| VideoError::Io {
        what: what.into(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let stderr = stderr.text();
    Err(VideoError::Ffmpeg {
        what: what.into(),
        status,
        stderr: if stderr.is_empty() {
            "(no message)".into()
        } else {
            stderr
        },
    })
}

/// Makes a pipe's kernel buffer larger (best effort): fewer wake-ups per
/// frame when frames are megabytes.
pub(super) fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_and_pixel_formats() {
        let p = parse_probe("width=640\nheight=480\nr_frame_rate=30/1\navg_frame_rate=0/0\n");
        assert_eq!(p.size, Some((640, 480)));
        assert_eq!(p.frame_rate, Some((30, 1)));
        let p = parse_probe(
            "avg_frame_rate=30000/1001\nr_frame_rate=60/1\nwidth=1920\nheight=1080\nrotation=-90\n",
        );
        assert_eq!(p.size, Some((1080, 1920)));
        assert_eq!(p.frame_rate, Some((30000, 1001)));
        assert_eq!(
            parse_probe("r_frame_rate=N/A\nwidth=0\n"),
            VideoProbe::default()
        );
        let s = FrameShape::new(2, 2, 3);
        assert_eq!(pix_fmt(s), Some("rgb24"));
        assert_eq!(pix_fmt(s.with_dtype(Dtype::U16)), Some("rgb48le"));
        assert_eq!(pix_fmt(s.with_dtype(Dtype::F32)), None);
    }
}
