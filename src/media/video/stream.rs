//! Raw frame streams: frames read from a pipe, a FIFO or a file without
//! blocking in read(2) (a stop is seen while no data comes), the reader
//! ffmpeg's output is read with too; and [`RawInput`], stdin, a FIFO or a
//! file of bare raw frames or a YUV4MPEG2 stream.

use super::error::VideoError;
use crate::media::{Dtype, FrameShape};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

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
pub(super) struct PolledReader<R> {
    inner: R,
    ahead: Vec<u8>,
    at: usize,
}

impl<R: Read + AsFd> PolledReader<R> {
    pub(super) fn new(inner: R) -> Self {
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
pub(super) fn read_frame<R: Read + AsFd>(
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

impl<R> std::fmt::Debug for PolledReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledReader")
            .field("ahead", &(self.ahead.len() - self.at))
            .finish()
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
    y4m: Option<Option<crate::media::y4m::Y4m>>,
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
            .starts_with(crate::media::y4m::MAGIC, idle)
            .map_err(io)?
        else {
            return Ok(StreamStart::Stopped);
        };
        if !is_y4m {
            self.y4m = Some(None);
            return Ok(StreamStart::Raw);
        }
        let Some(line) = self
            .reader
            .line(crate::media::y4m::MAX_LINE, idle)
            .map_err(io)?
        else {
            return Ok(StreamStart::Stopped);
        };
        let line = line.unwrap_or_default();
        let y4m = crate::media::y4m::Y4m::parse(&line).map_err(|message| VideoError::Stream {
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
        let header = match self
            .reader
            .line(crate::media::y4m::MAX_LINE, idle)
            .map_err(io)?
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
}
