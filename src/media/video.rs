//! Video in and out through an ffmpeg child process, and raw frame streams.
//!
//! Input: ffmpeg decodes anything it opens (a file, a v4l2 device, an
//! rtsp:// or http:// URL, an image-sequence pattern) to `rawvideo` at the
//! ring's pixel format and shape — scaled and padded or cropped per the shape
//! policy by ffmpeg's own filters — and the producer reads each frame from
//! the pipe straight into a free slot. A raw stream (stdin, a FIFO, a file)
//! is read the same way without ffmpeg.
//!
//! Output: a consumer writes each frame it takes into the stdin of an ffmpeg
//! encoding to a file whose extension picks the container.
//!
//! ffmpeg's stderr is kept (its last few KiB) for error messages.

use super::decode::ShapePolicy;
use super::{Dtype, FrameShape};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of ffmpeg's stderr is kept for messages.
const STDERR_KEEP: usize = 4096;

/// A video or raw-stream problem.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The ffmpeg program is not installed (or not at the configured path).
    #[error("{program:?} not found: video needs ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; or give its path with --ffmpeg)")]
    NotFound {
        /// The program looked for.
        program: String,
    },
    /// ffmpeg could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// ffmpeg failed; its own message follows.
    #[error("ffmpeg failed on {what} ({status}): {stderr}")]
    Ffmpeg {
        /// The input or output.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its stderr.
        stderr: String,
    },
    /// A y4m stream whose frames are not of the ring's shape, or in a pixel
    /// format that cannot be converted to the ring's.
    #[error("{what}: {message}")]
    Stream {
        /// The input.
        what: String,
        /// What does not match.
        message: String,
    },
    /// Reading or writing the pipe failed.
    #[error("{what}: {source}")]
    Io {
        /// The stream.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether `spec` names something for ffmpeg rather than image files: a URL,
/// a video device, an image-sequence pattern (`%04d`), or a file with a video
/// container's extension.
pub fn looks_like_video(spec: &str) -> bool {
    const EXT: &[&str] = &[
        "mp4", "m4v", "mkv", "webm", "mov", "avi", "y4m", "ts", "mts", "m2ts", "flv", "mpg",
        "mpeg", "wmv", "ogv", "3gp", "h264", "h265", "hevc", "ivf", "nut",
    ];
    // An image-sequence pattern for ffmpeg: frames/%04d.png.
    let pattern = spec.contains('%') && spec.contains('d');
    if spec.contains("://") || spec.starts_with("/dev/video") || pattern {
        return true;
    }
    let ext = std::path::Path::new(spec)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    ext.is_some_and(|e| EXT.contains(&e.as_str()))
}

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
fn is_file_input(input: &str) -> bool {
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

/// The ffmpeg filter that fits a source into `shape` per `policy`.
/// `reject` keeps the source size; a mismatch is then detected from the
/// stream (see [`FfmpegInput`]).
pub fn scale_filter(shape: FrameShape, policy: ShapePolicy) -> String {
    let (w, h) = (shape.width, shape.height);
    match policy {
        ShapePolicy::Fit => format!(
            "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:black,setsar=1"
        ),
        ShapePolicy::Fill => format!(
            "scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
        ),
        ShapePolicy::Stretch => format!("scale={w}:{h},setsar=1"),
        ShapePolicy::Reject => "null".into(),
    }
}

/// Keeps the tail of a child's stderr, read by a thread.
#[derive(Debug)]
struct StderrTail {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    fn start(mut from: impl Read + Send + 'static) -> StderrTail {
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

    fn text(&mut self) -> String {
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

fn spawn(program: &str, cmd: &mut Command) -> Result<Child, VideoError> {
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
fn wait_ffmpeg(child: &mut Child, stderr: &mut StderrTail, what: &str) -> Result<(), VideoError> {
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
fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// How long a read waits for data before the caller's `idle` callback is
/// asked whether to go on waiting (a stop signal is also seen at once: it
/// interrupts poll(2), which is never restarted).
const POLL_SLICE_MS: u16 = 50;

/// What reading one frame came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrame {
    /// The frame is in the buffer.
    Frame,
    /// The stream ended cleanly (no byte of a new frame).
    End,
    /// `idle` asked to stop while no data came.
    Stopped,
}

/// What filling a buffer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Full,
    /// End of stream after `got` bytes.
    End(usize),
    Stopped,
}

/// Reads a pipe, FIFO or file, never blocking in read(2): each read is
/// preceded by poll(2) in slices of [`POLL_SLICE_MS`], and while no data
/// comes the caller's `idle(waited)` is asked whether to stop. Bytes read
/// ahead (while looking for a y4m header line) are served first.
struct PolledReader<R> {
    inner: R,
    ahead: Vec<u8>,
    at: usize,
}

impl<R: Read + AsFd> PolledReader<R> {
    fn new(inner: R) -> Self {
        PolledReader {
            inner,
            ahead: Vec::new(),
            at: 0,
        }
    }

    /// Waits until the source is readable (or at its end): `false` when
    /// `idle` asked to stop.
    fn wait(&self, idle: &mut dyn FnMut(Duration) -> bool) -> std::io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags};
        let start = Instant::now();
        loop {
            let mut fds = [PollFd::new(self.inner.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, POLL_SLICE_MS) {
                // Readable, at its end or in error: read(2) says which.
                Ok(n) if n > 0 => return Ok(true),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {
                    if idle(start.elapsed()) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One read(2) of at most `buf.len()` bytes once data is there.
    fn read_some(
        &mut self,
        buf: &mut [u8],
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> std::io::Result<Option<usize>> {
        if self.at < self.ahead.len() {
            let n = buf.len().min(self.ahead.len() - self.at);
            buf[..n].copy_from_slice(&self.ahead[self.at..self.at + n]);
            self.at += n;
            return Ok(Some(n));
        }
        loop {
            if !self.wait(idle)? {
                return Ok(None);
            }
            match self.inner.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills `buf` entirely, or says why not.
    fn fill(
        &mut self,
        buf: &mut [u8],
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> std::io::Result<Fill> {
        let mut got = 0;
        while got < buf.len() {
            match self.read_some(&mut buf[got..], idle)? {
                None => return Ok(Fill::Stopped),
                Some(0) => return Ok(Fill::End(got)),
                Some(n) => got += n,
            }
        }
        Ok(Fill::Full)
    }

    /// Reads bytes while they match `prefix`; they stay to be read again.
    /// Whether all of `prefix` came (`None`: stopped).
    fn starts_with(
        &mut self,
        prefix: &[u8],
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> std::io::Result<Option<bool>> {
        let mut seen = Vec::with_capacity(prefix.len());
        let mut byte = [0u8; 1];
        let matched = loop {
            if seen.len() == prefix.len() {
                break true;
            }
            match self.read_some(&mut byte, idle)? {
                None => {
                    self.unread(seen);
                    return Ok(None);
                }
                Some(0) => break false,
                Some(_) => {
                    seen.push(byte[0]);
                    if byte[0] != prefix[seen.len() - 1] {
                        break false;
                    }
                }
            }
        };
        self.unread(seen);
        Ok(Some(matched))
    }

    /// Puts bytes back in front of what is still to be read.
    fn unread(&mut self, mut bytes: Vec<u8>) {
        bytes.extend_from_slice(&self.ahead[self.at..]);
        self.ahead = bytes;
        self.at = 0;
    }

    /// Reads a line (without its `\n`) of at most `max` bytes: `Ok(None)`
    /// when stopped; an empty end of stream gives `Some(None)`.
    fn line(
        &mut self,
        max: usize,
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> std::io::Result<Option<Option<Vec<u8>>>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.read_some(&mut byte, idle)? {
                None => return Ok(None),
                Some(0) if line.is_empty() => return Ok(Some(None)),
                Some(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a y4m header line",
                    ))
                }
                Some(_) if byte[0] == b'\n' => return Ok(Some(Some(line))),
                Some(_) if line.len() >= max => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a y4m header line longer than {max} bytes"),
                    ))
                }
                Some(_) => line.push(byte[0]),
            }
        }
    }
}

/// What a stream of bare frames that ends inside one betrays.
const SHAPE_UNKNOWN: &str = "its frames are not of the ring's shape";

/// Reads exactly one frame into `buf`: an error for a frame cut short,
/// saying `cut` of it.
fn read_frame<R: Read + AsFd>(
    r: &mut PolledReader<R>,
    buf: &mut [u8],
    what: &str,
    idle: &mut dyn FnMut(Duration) -> bool,
    cut: &str,
) -> Result<ReadFrame, VideoError> {
    let io = |source| VideoError::Io {
        what: what.into(),
        source,
    };
    match r.fill(buf, idle).map_err(io)? {
        Fill::Full => Ok(ReadFrame::Frame),
        Fill::Stopped => Ok(ReadFrame::Stopped),
        Fill::End(0) => Ok(ReadFrame::End),
        Fill::End(got) => Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the stream ended inside a frame ({got} of {} bytes): {cut}",
                buf.len()
            ),
        ))),
    }
}

/// An ffmpeg decoding a video to raw frames of the ring's shape.
#[derive(Debug)]
pub struct FfmpegInput {
    input: String,
    /// The source's frame rate (num, den), for presentation timestamps.
    frame_rate: Option<(u64, u64)>,
    /// Frames read so far.
    frames: u64,
    child: Child,
    stdout: PolledReader<ChildStdout>,
    stderr: StderrTail,
}

impl<R> std::fmt::Debug for PolledReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledReader")
            .field("ahead", &(self.ahead.len() - self.at))
            .finish()
    }
}

impl FfmpegInput {
    /// Starts `program` decoding `input`. With `realtime`, ffmpeg reads the
    /// input at its native frame rate (`-re`). `frame_rate` (from
    /// [`probe_video`]) stamps a file's frames with presentation times.
    pub fn spawn(
        program: &str,
        input: &str,
        shape: FrameShape,
        policy: ShapePolicy,
        realtime: bool,
        frame_rate: Option<(u64, u64)>,
    ) -> Result<FfmpegInput, VideoError> {
        let pix_fmt = pix_fmt(shape).ok_or_else(|| float_refused(input))?;
        // Presentation times from the rate only for a file: a live
        // source's frames come when they come.
        let frame_rate = frame_rate.filter(|_| is_file_input(input));
        let mut cmd = Command::new(program);
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
        if realtime {
            cmd.arg("-re");
        }
        cmd.args(["-i", input, "-an", "-sn", "-dn", "-vf"])
            .arg(scale_filter(shape, policy))
            .args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(program, &mut cmd)?;
        let stdout = child.stdout.take().expect("piped stdout");
        grow_pipe(stdout.as_fd());
        let stderr = StderrTail::start(child.stderr.take().expect("piped stderr"));
        Ok(FfmpegInput {
            input: input.into(),
            frame_rate,
            frames: 0,
            child,
            stdout: PolledReader::new(stdout),
            stderr,
        })
    }

    /// Reads the next frame into `buf` (the slot). While ffmpeg produces
    /// nothing, `idle(waited)` is called every few tens of milliseconds; it
    /// returns `true` to stop waiting ([`ReadFrame::Stopped`]).
    pub fn read_frame(
        &mut self,
        buf: &mut [u8],
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<ReadFrame, VideoError> {
        let cut = "ffmpeg's output was cut short";
        let got = read_frame(&mut self.stdout, buf, &self.input, idle, cut)?;
        if got == ReadFrame::Frame {
            self.frames += 1;
        }
        Ok(got)
    }

    /// The presentation timestamp of the frame read last, in nanoseconds:
    /// its index over the source's frame rate (as ffprobe reports it), or
    /// `None` if the rate is not known (a device, a URL).
    pub fn last_pts_ns(&self) -> Option<i64> {
        let (num, den) = self.frame_rate?;
        let index = self.frames.checked_sub(1)?;
        let ns = u128::from(index) * 1_000_000_000 * u128::from(den) / u128::from(num);
        i64::try_from(ns).ok()
    }

    /// The input ffmpeg decodes.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Stops ffmpeg early (e.g. on a signal).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether ffmpeg has already exited with a failure (checked without
    /// waiting, e.g. while the producer waits for its first consumer): the
    /// error, with its message.
    pub fn failed(&mut self) -> Option<VideoError> {
        match self.child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                wait_ffmpeg(&mut self.child, &mut self.stderr, &self.input).err()
            }
            _ => None,
        }
    }

    /// Waits for ffmpeg to exit; an error carrying its message if it failed.
    pub fn finish(mut self, killed: bool) -> Result<(), VideoError> {
        drop(self.stdout);
        match wait_ffmpeg(&mut self.child, &mut self.stderr, &self.input) {
            // We stopped it: its exit status says nothing.
            Err(VideoError::Ffmpeg { .. }) if killed => Ok(()),
            r => r,
        }
    }
}

/// Frames from stdin, a FIFO or a file: raw frames of the ring's shape back
/// to back, or a YUV4MPEG2 (y4m) stream, recognised by its header, whose
/// frame size is checked against the ring's and whose pixels are converted
/// to the ring's format.
///
/// Bare raw frames carry no shape: only a stream that ends inside a frame
/// betrays a mismatch.
pub struct RawInput {
    name: String,
    reader: PolledReader<std::fs::File>,
    /// Set once the stream's start was read ([`RawInput::start`]).
    y4m: Option<Option<super::y4m::Y4m>>,
    /// A y4m frame's planes, before conversion.
    planes: Vec<u8>,
}

impl std::fmt::Debug for RawInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawInput")
            .field("name", &self.name)
            .field("y4m", &self.y4m)
            .finish()
    }
}

/// What [`RawInput::start`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStart {
    /// Bare raw frames (or an empty stream).
    Raw,
    /// A y4m stream.
    Y4m {
        /// Its frames' width.
        width: u32,
        /// Its frames' height.
        height: u32,
        /// Its frame rate `(num, den)` (`F` tag).
        frame_rate: Option<(u64, u64)>,
        /// Its colour space (`C` tag).
        colour: String,
    },
    /// `idle` asked to stop before the stream's start came.
    Stopped,
}

impl RawInput {
    /// `-` is stdin; anything else a file or FIFO. Opening a FIFO does not
    /// wait for its writer (reads do, and can be stopped).
    pub fn open(spec: &str) -> Result<RawInput, VideoError> {
        let io = |source| VideoError::Io {
            what: spec.into(),
            source,
        };
        let file = if spec == "-" {
            // A descriptor of our own, read without std's buffer (data
            // buffered there would be invisible to poll).
            std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().map_err(io)?)
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(spec)
                .map_err(io)?;
            // Blocking reads again (each is preceded by poll).
            nix::fcntl::fcntl(
                file.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )
            .map_err(|e| io(e.into()))?;
            file
        };
        Ok(RawInput {
            name: if spec == "-" {
                "stdin".into()
            } else {
                spec.into()
            },
            reader: PolledReader::new(file),
            y4m: None,
            planes: Vec::new(),
        })
    }

    /// The input's name (`stdin` or the path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the start of the stream: a y4m header is parsed (check it
    /// against the ring with [`RawInput::check`] before any frame is read);
    /// anything else is bare raw frames. `read_frame` calls both if the
    /// caller did not.
    pub fn start(
        &mut self,
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<StreamStart, VideoError> {
        if let Some(y4m) = &self.y4m {
            return Ok(match y4m {
                Some(y) => StreamStart::Y4m {
                    width: y.width,
                    height: y.height,
                    frame_rate: y.frame_rate,
                    colour: y.colour.clone(),
                },
                None => StreamStart::Raw,
            });
        }
        let io = |source| VideoError::Io {
            what: self.name.clone(),
            source,
        };
        let Some(is_y4m) = self
            .reader
            .starts_with(super::y4m::MAGIC, idle)
            .map_err(io)?
        else {
            return Ok(StreamStart::Stopped);
        };
        if !is_y4m {
            self.y4m = Some(None);
            return Ok(StreamStart::Raw);
        }
        let Some(line) = self.reader.line(super::y4m::MAX_LINE, idle).map_err(io)? else {
            return Ok(StreamStart::Stopped);
        };
        let line = line.unwrap_or_default();
        let y4m = super::y4m::Y4m::parse(&line).map_err(|message| VideoError::Stream {
            what: self.name.clone(),
            message,
        })?;
        tracing::info!(input = %self.name, width = y4m.width, height = y4m.height, colour = %y4m.colour, "y4m stream");
        self.y4m = Some(Some(y4m));
        self.start(idle)
    }

    /// Checks a y4m stream (once [`RawInput::start`] read its header)
    /// against the ring's `shape`: its 8-bit samples need a `uint8` ring of
    /// its frame size (an error naming both sizes).
    pub fn check(&self, shape: FrameShape) -> Result<(), VideoError> {
        let Some(Some(y4m)) = &self.y4m else {
            return Ok(());
        };
        let refuse = |message| VideoError::Stream {
            what: self.name.clone(),
            message,
        };
        if shape.dtype != Dtype::U8 {
            return Err(refuse(format!(
                "a y4m stream has 8-bit samples; this ring holds {} frames: use a uint8 ring, or send raw {} frames",
                shape.dtype, shape.dtype
            )));
        }
        y4m.check(shape).map_err(refuse)
    }

    /// Reads the next frame into `buf` (the slot), converted to the ring's
    /// pixels if the stream is y4m. While no data comes, `idle(waited)` is
    /// called every few tens of milliseconds; it returns `true` to stop
    /// waiting ([`ReadFrame::Stopped`]).
    pub fn read_frame(
        &mut self,
        buf: &mut [u8],
        shape: FrameShape,
        idle: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<ReadFrame, VideoError> {
        if self.y4m.is_none() {
            if self.start(idle)? == StreamStart::Stopped {
                return Ok(ReadFrame::Stopped);
            }
            self.check(shape)?;
        }
        let Some(Some(y4m)) = &self.y4m else {
            return read_frame(&mut self.reader, buf, &self.name, idle, SHAPE_UNKNOWN);
        };
        let io = |source| VideoError::Io {
            what: self.name.clone(),
            source,
        };
        let header = match self.reader.line(super::y4m::MAX_LINE, idle).map_err(io)? {
            None => return Ok(ReadFrame::Stopped),
            Some(None) => return Ok(ReadFrame::End),
            Some(Some(line)) => line,
        };
        if !header.starts_with(b"FRAME") {
            return Err(VideoError::Stream {
                what: self.name.clone(),
                message: format!(
                    "expected a y4m frame header (FRAME), found {:?}",
                    String::from_utf8_lossy(&header[..header.len().min(40)])
                ),
            });
        }
        let mut planes = std::mem::take(&mut self.planes);
        planes.resize(y4m.frame_bytes(), 0);
        let cut = "the y4m stream was cut short";
        let result = match read_frame(&mut self.reader, &mut planes, &self.name, idle, cut) {
            Ok(ReadFrame::Frame) => {
                y4m.convert(&planes, buf, shape.channels);
                Ok(ReadFrame::Frame)
            }
            // A frame header without its frame: cut short.
            Ok(ReadFrame::End) => Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stream ended after a y4m frame header",
            ))),
            other => other,
        };
        self.planes = planes;
        result
    }
}

/// Whether a consumer output names a video file (by its extension).
pub fn is_video_output(spec: &str) -> bool {
    std::path::Path::new(spec)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_OUTPUT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The extensions of the video files a consumer output can be.
pub const VIDEO_OUTPUT_EXTENSIONS: &[&str] =
    &["mp4", "m4v", "mkv", "webm", "mov", "avi", "y4m", "nut"];

/// An ffmpeg encoding raw frames written to its stdin into a file.
#[derive(Debug)]
pub struct FfmpegOutput {
    path: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: StderrTail,
    /// `.y4m`: bytes of one frame in the file (`FRAME\n` and three planes
    /// of yuv444p), by which the frames written are counted.
    y4m_frame: Option<u64>,
    /// Its exit status, once known.
    status: Option<ExitStatus>,
}

impl FfmpegOutput {
    /// Starts `program` encoding frames of `shape` at `fps` into `path`; the
    /// extension picks the container (H.264 for mp4/mkv/mov, VP8 for webm,
    /// uncompressed for y4m/nut). A `.y4m` file is written frame by frame
    /// (`-flush_packets 1`), so the frames in it can be counted.
    pub fn spawn(
        program: &str,
        path: &str,
        shape: FrameShape,
        fps: f64,
    ) -> Result<FfmpegOutput, VideoError> {
        let ext = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let pix_fmt = pix_fmt(shape).ok_or_else(|| float_refused(path))?;
        let mut cmd = Command::new(program);
        cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"])
            .args(["-pix_fmt", pix_fmt])
            .args(["-s", &format!("{}x{}", shape.width, shape.height)])
            .args(["-r", &format!("{fps}"), "-i", "-"]);
        let mut y4m_frame = None;
        match ext.as_str() {
            "mp4" | "m4v" | "mkv" | "mov" => {
                // yuv420p (what players expect) needs even sizes.
                cmd.args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
                    .args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"])
                    .args(["-pix_fmt", "yuv420p"]);
            }
            "webm" => {
                cmd.args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
                    .args(["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "4M"])
                    .args(["-pix_fmt", "yuv420p"]);
            }
            "y4m" => {
                cmd.args(["-pix_fmt", "yuv444p", "-flush_packets", "1"]);
                y4m_frame = Some(6 + 3 * shape.width as u64 * shape.height as u64);
            }
            "nut" => {
                cmd.args(["-c:v", "rawvideo"]);
            }
            _ => {}
        }
        // ffmpeg opens (and truncates) its output only once the first frame
        // arrives: an old file must not be taken for what it writes. (It
        // would overwrite it: `-y`.)
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(path).map_err(|source| VideoError::Io {
                what: path.into(),
                source,
            })?;
        }
        cmd.arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(program, &mut cmd)?;
        let stdin = child.stdin.take().expect("piped stdin");
        grow_pipe(stdin.as_fd());
        let stderr = StderrTail::start(child.stderr.take().expect("piped stderr"));
        Ok(FfmpegOutput {
            path: path.into(),
            child,
            stdin: Some(stdin),
            stderr,
            y4m_frame,
            status: None,
        })
    }

    /// Writes one frame.
    pub fn write(&mut self, data: &[u8]) -> Result<(), VideoError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(VideoError::Io {
                what: self.path.clone(),
                source: std::io::Error::from_raw_os_error(libc::EPIPE),
            });
        };
        if let Err(source) = stdin.write_all(data) {
            // ffmpeg died: its message says why (else the write error does).
            self.stdin = None;
            self.wait()?;
            return Err(VideoError::Io {
                what: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Waits for ffmpeg to exit: an error with its message if it failed.
    fn wait(&mut self) -> Result<(), VideoError> {
        let status = match self.status {
            Some(s) => s,
            None => {
                let s = self.child.wait().map_err(|source| VideoError::Io {
                    what: self.path.clone(),
                    source,
                })?;
                self.status = Some(s);
                s
            }
        };
        if status.success() {
            return Ok(());
        }
        let stderr = self.stderr.text();
        Err(VideoError::Ffmpeg {
            what: self.path.clone(),
            status,
            stderr: if stderr.is_empty() {
                "(no message)".into()
            } else {
                stderr
            },
        })
    }

    /// How many of the `accepted` frames are in the file now, as far as can
    /// be known: a `.y4m`'s are counted by its size. A compressed file holds
    /// no frame for sure before ffmpeg finishes, and frames cannot be kept
    /// that long: this says 0 until ffmpeg has started writing the file
    /// (so that an ffmpeg that fails at the start loses nothing), then
    /// `accepted`. An error if ffmpeg has exited meanwhile.
    pub fn durable(&mut self, accepted: u64) -> Result<u64, VideoError> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        if self.status.is_some() {
            // Exited before its input was closed: a failure, whatever the
            // status says.
            self.wait()?;
            return Err(VideoError::Io {
                what: self.path.clone(),
                source: std::io::Error::other("ffmpeg exited before the end of its input"),
            });
        }
        if let Some((n, _)) = self.y4m_frames() {
            return Ok(n.min(accepted));
        }
        Ok(match std::fs::metadata(&self.path) {
            // Not a file (a device, a FIFO): nothing to look at.
            Ok(m) if !m.is_file() || m.len() > 0 => accepted,
            _ => 0,
        })
    }

    /// A `.y4m` output's whole frames in the file, and where they end
    /// (`None` for other containers, or a `.y4m` that is no regular file).
    fn y4m_frames(&self) -> Option<(u64, u64)> {
        let frame = self.y4m_frame?;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return None,
            Err(_) => return Some((0, 0)),
        }
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Some((0, 0));
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = [0u8; 512];
        let n = f.read(&mut head).unwrap_or(0);
        let Some(header) = head[..n].iter().position(|&b| b == b'\n') else {
            return Some((0, 0));
        };
        let header = header as u64 + 1;
        let frames = size.saturating_sub(header) / frame;
        Some((frames, header + frames * frame))
    }

    /// After a failure: stops ffmpeg and returns how many frames are in the
    /// file; a `.y4m` is cut after its last whole frame (0 for other
    /// containers: a file ffmpeg did not finish is not known to hold any).
    pub fn abandon(&mut self) -> u64 {
        drop(self.stdin.take());
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
        match self.y4m_frames() {
            Some((frames, end)) => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
                    if f.metadata().is_ok_and(|m| m.len() > end) && end > 0 {
                        let _ = f.set_len(end);
                    }
                }
                frames
            }
            None => 0,
        }
    }

    /// Closes ffmpeg's input and waits for the file to be written.
    pub fn finish(&mut self) -> Result<(), VideoError> {
        drop(self.stdin.take());
        self.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_video_inputs_and_outputs() {
        for v in [
            "a.mp4",
            "x/B.MKV",
            "rtsp://cam/1",
            "http://h/s.m3u8",
            "/dev/video0",
            "c.y4m",
            "frames/%04d.png",
        ] {
            assert!(looks_like_video(v), "{v}");
        }
        for i in ["assets", "a.jpg", "imgs/*.png", "-"] {
            assert!(!looks_like_video(i), "{i}");
        }
        assert!(is_video_output("o.mp4") && is_video_output("o.y4m"));
        assert!(!is_video_output("out") && !is_video_output("-"));
    }

    #[test]
    fn raw_frames_are_read_whole_or_refused() {
        let file = |bytes: &[u8]| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(bytes).unwrap();
            use std::io::Seek;
            f.rewind().unwrap();
            PolledReader::new(f)
        };
        let mut never = |_| -> bool { panic!("a file is always readable") };
        let mut r = file(&[1, 2, 3, 4, 5, 6, 7]);
        let mut buf = [0u8; 3];
        assert_eq!(
            read_frame(&mut r, &mut buf, "t", &mut never, SHAPE_UNKNOWN).unwrap(),
            ReadFrame::Frame
        );
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(
            read_frame(&mut r, &mut buf, "t", &mut never, SHAPE_UNKNOWN).unwrap(),
            ReadFrame::Frame
        );
        assert!(
            read_frame(&mut r, &mut buf, "t", &mut never, SHAPE_UNKNOWN).is_err(),
            "a cut frame"
        );
        let mut r = file(&[]);
        assert_eq!(
            read_frame(&mut r, &mut buf, "t", &mut never, SHAPE_UNKNOWN).unwrap(),
            ReadFrame::End
        );
        // Bytes looked at for a y4m header are read again.
        let mut r = file(b"YUV4MPEG1");
        assert_eq!(
            r.starts_with(b"YUV4MPEG2", &mut never).unwrap(),
            Some(false)
        );
        let mut all = [0u8; 9];
        assert_eq!(r.fill(&mut all, &mut never).unwrap(), Fill::Full);
        assert_eq!(&all, b"YUV4MPEG1");
    }

    /// A pipe nobody writes to: the read waits in slices, asking `idle`,
    /// and stops when it says so.
    #[test]
    fn a_read_from_an_idle_pipe_can_be_stopped() {
        let (rx, _tx) = nix::unistd::pipe().unwrap();
        let mut r = PolledReader::new(std::fs::File::from(rx));
        let mut calls = 0;
        let mut idle = |waited: Duration| {
            calls += 1;
            waited >= Duration::from_millis(120)
        };
        let mut buf = [0u8; 4];
        assert_eq!(
            read_frame(&mut r, &mut buf, "t", &mut idle, SHAPE_UNKNOWN).unwrap(),
            ReadFrame::Stopped
        );
        assert!((2..=4).contains(&calls), "{calls}");
    }

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

    #[test]
    fn a_missing_ffmpeg_is_a_clear_error() {
        let shape = FrameShape::new(2, 2, 3);
        match FfmpegInput::spawn(
            "/no/such/ffmpeg",
            "x.mp4",
            shape,
            ShapePolicy::Fit,
            false,
            None,
        ) {
            Err(e @ VideoError::NotFound { .. }) => {
                assert!(e.to_string().contains("apt-get install ffmpeg"))
            }
            other => panic!("{other:?}"),
        }
    }
}
