//! Where a consumer puts the frames it took.

pub use super::mcap::FrameStamp;
use super::{Dtype, FrameShape};
use image::{ExtendedColorType, ImageEncoder};
use std::fs::File;
use std::io::{BufWriter, Write};

use std::path::{Path, PathBuf};

/// Image file format written by a consumer with `--output DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Lossless PNG.
    Png,
    /// JPEG (`consumer.jpeg_quality`).
    Jpeg,
    /// Binary PNM: PPM for 3 channels, PGM for 1, PAM for 4.
    Ppm,
}

/// Writing an output failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An output named like a file (with an extension) of a format this
    /// consumer does not write, that is no existing directory.
    #[error("output {path:?}: .{ext} is not a video container this consumer writes ({known}) nor an MCAP recording (.mcap), and {path} is not a directory; for image files in a directory of that name, end the name with \"/\" or create the directory first")]
    UnknownOutput {
        /// The output.
        path: String,
        /// Its extension.
        ext: String,
        /// The video extensions known.
        known: String,
    },
    /// A video output in a directory that does not exist.
    #[error("output {path:?}: directory {} does not exist", dir.display())]
    NoDirectory {
        /// The output.
        path: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// An output that cannot be written, found before any frame is taken.
    #[error("output {path:?}: cannot create a file in {}: {source}", dir.display())]
    NotWritable {
        /// The output.
        path: String,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--output -` with a standard output that cannot be written.
    #[error("output \"-\": standard output cannot be written: {source}")]
    Stdout {
        /// Why.
        source: std::io::Error,
    },
    /// An output that cannot hold frames of the ring's element type (found
    /// once attached, before any frame is taken).
    #[error("output {path:?}: {dtype} frames cannot be written as {what}: {hint}")]
    Dtype {
        /// The output.
        path: String,
        /// The ring's element type.
        dtype: Dtype,
        /// What the output writes.
        what: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// An MCAP recording failed (or cannot be made).
    #[error(transparent)]
    Mcap(#[from] super::mcap::McapError),
    /// File or pipe error.
    #[error("writing {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The video encoder failed.
    #[error(transparent)]
    Video(#[from] super::video::VideoError),
    /// Encoder error.
    #[error("encoding {path}: {source}")]
    Encode {
        /// Where.
        path: String,
        /// Why.
        source: image::ImageError,
    },
}

/// A frame destination.
///
/// Frames are counted as they are accepted ([`Sink::write`] returned), and
/// an accepted frame is not necessarily in the output yet: a pipe's reader
/// may not have read it, an ffmpeg may not have encoded it.
/// [`Sink::durable`] says how many are; a consumer keeps (does not hand
/// back as consumed) the frames accepted and not yet durable, so that a
/// failing output loses none of them ([`Sink::abandon`]).
#[derive(Debug)]
pub struct Sink {
    out: Out,
    /// Frames accepted so far.
    accepted: u64,
}

#[derive(Debug)]
enum Out {
    /// One image file per frame in a directory, named by sequence number,
    /// written to a temporary name and renamed, so a file is never half
    /// written and a frame delivered twice overwrites its file whole.
    Dir {
        dir: PathBuf,
        format: OutputFormat,
        quality: u8,
    },
    /// Raw frame bytes to standard output.
    Stdout(StdoutSink),
    /// Reads every byte into a checksum; writes nothing.
    Null { checksum: u64 },
    /// Raw frames into an ffmpeg encoding a video file.
    Video(super::video::FfmpegOutput),
    /// An MCAP recording.
    Mcap(Box<super::mcap::Recorder>),
}

/// Raw frames written to file descriptor 1 directly (no buffer in this
/// process), counting bytes, so that what a pipe's reader has read is known.
#[derive(Debug)]
struct StdoutSink {
    /// Stdout is a pipe or FIFO: what is written may still sit in it unread.
    pipe: bool,
    /// Stdout is a regular file, written from this offset.
    file_start: Option<u64>,
    /// Bytes written (whole frames and the part of a frame cut short).
    bytes: u64,
    /// Bytes of one frame.
    frame_bytes: u64,
}

/// Folds every byte of `data` into `acc`.
///
/// The 8-byte words of each 64-byte block are XORed into eight independent
/// lanes (word *i* of a block into lane *i*), which the compiler turns into
/// SIMD XORs: a frame is read at memory speed. (A single rotate-and-XOR
/// chain over the words, as before, cost 2 cycles per 8 bytes — about
/// 0.2 ms of a core per 2.3 MB frame, taken from the decoders when they
/// share 2 cores with the consumer.) The lanes are then folded into `acc`
/// in order, and so is a tail shorter than a block, byte by byte: the result
/// depends on the order of the frames and on where in its block a word is.
pub fn fold_checksum(acc: u64, data: &[u8]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane ^= u64::from_le_bytes(w.try_into().expect("chunk of 8"));
        }
    }
    let mut a = acc;
    for lane in lanes {
        a = a.rotate_left(5) ^ lane;
    }
    for &b in blocks.remainder() {
        a = a.rotate_left(5) ^ b as u64;
    }
    a
}

fn color(shape: FrameShape) -> ExtendedColorType {
    match (shape.dtype, shape.channels) {
        (Dtype::U16, 1) => ExtendedColorType::L16,
        (Dtype::U16, 4) => ExtendedColorType::Rgba16,
        (Dtype::U16, _) => ExtendedColorType::Rgb16,
        (_, 1) => ExtendedColorType::L8,
        (_, 4) => ExtendedColorType::Rgba8,
        _ => ExtendedColorType::Rgb8,
    }
}

/// The file extension for a format and channel count.
pub fn extension(format: OutputFormat, channels: u32) -> &'static str {
    match (format, channels) {
        (OutputFormat::Png, _) => "png",
        (OutputFormat::Jpeg, _) => "jpg",
        (OutputFormat::Ppm, 1) => "pgm",
        (OutputFormat::Ppm, 4) => "pam",
        (OutputFormat::Ppm, _) => "ppm",
    }
}

/// Whether a file can be created in `dir`: creates and removes a probe file.
fn probe_writable(dir: &Path, spec: &str) -> Result<(), SinkError> {
    let probe = dir.join(format!(".framering-probe.{}", std::process::id()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(SinkError::NotWritable {
            path: spec.into(),
            dir: dir.into(),
            source,
        }),
    }
}

/// Whether standard output is open for writing and, if it is a pipe, still
/// has a reader.
fn check_stdout() -> Result<(), SinkError> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::fs::OFlags;
    use std::os::fd::AsFd;
    let out = std::io::stdout();
    let fd = out.as_fd();
    let err = |source: std::io::Error| SinkError::Stdout { source };
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| err(e.into()))?;
    if !flags.intersects(OFlags::WRONLY | OFlags::RDWR) {
        return Err(err(std::io::Error::other("it is open for reading only")));
    }
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).map_err(|e| err(e.into()))?;
    if fds[0]
        .revents()
        .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL)
    {
        return Err(err(std::io::Error::from_raw_os_error(libc::EPIPE)));
    }
    Ok(())
}

impl StdoutSink {
    fn open() -> StdoutSink {
        use std::os::fd::AsFd;
        let out = std::io::stdout();
        let fd = out.as_fd();
        let stat = rustix::fs::fstat(fd).ok();
        let kind = stat.map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode));
        let file_start = match kind {
            Some(rustix::fs::FileType::RegularFile) => {
                let append = rustix::fs::fcntl_getfl(fd)
                    .is_ok_and(|f| f.contains(rustix::fs::OFlags::APPEND));
                if append {
                    stat.map(|s| s.st_size as u64)
                } else {
                    rustix::fs::seek(fd, rustix::fs::SeekFrom::Current(0)).ok()
                }
            }
            _ => None,
        };
        StdoutSink {
            pipe: kind == Some(rustix::fs::FileType::Fifo),
            file_start,
            bytes: 0,
            frame_bytes: 0,
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        use std::os::fd::AsFd;
        self.frame_bytes = data.len() as u64;
        let out = std::io::stdout();
        let mut done = 0;
        while done < data.len() {
            match rustix::io::write(out.as_fd(), &data[done..]) {
                Ok(n) => {
                    done += n;
                    self.bytes += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(SinkError::Io {
                        path: "stdout".into(),
                        source: e.into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Frames a pipe's reader has read whole (of `accepted`).
    fn read_by_reader(&self, accepted: u64) -> u64 {
        use std::os::fd::AsFd;
        if self.frame_bytes == 0 {
            return 0;
        }
        let unread = rustix::io::ioctl_fionread(std::io::stdout().as_fd()).unwrap_or(0);
        (self.bytes.saturating_sub(unread) / self.frame_bytes).min(accepted)
    }

    fn durable(&self, accepted: u64) -> Result<u64, SinkError> {
        if !self.pipe {
            return Ok(accepted);
        }
        // A pipe whose reader left: what it did not read is lost.
        check_stdout().map_err(|e| match e {
            SinkError::Stdout { source } => SinkError::Io {
                path: "stdout".into(),
                source,
            },
            e => e,
        })?;
        Ok(self.read_by_reader(accepted))
    }

    fn abandon(&self, accepted: u64) -> u64 {
        if self.pipe {
            return self.read_by_reader(accepted);
        }
        if let Some(start) = self.file_start {
            // No part of a frame left at the end of the file.
            use std::os::fd::AsFd;
            let whole = start + accepted * self.frame_bytes;
            if self.bytes > accepted * self.frame_bytes {
                let _ = rustix::fs::ftruncate(std::io::stdout().as_fd(), whole);
            }
        }
        accepted
    }
}

impl Sink {
    /// Checks an output before any frame is taken: a directory output is
    /// created and a file is created in it (and removed); a video output
    /// needs `ffmpeg` to run, and its directory to exist and take a new
    /// file; `-` needs standard output open for writing, with a reader if
    /// it is a pipe. An output with an extension that is no video container
    /// (and no existing directory, and not ending with `/`) is refused
    /// rather than made a directory.
    pub fn check(spec: &str, ffmpeg: &str) -> Result<(), SinkError> {
        if spec == "null" {
            return Ok(());
        }
        if spec == "-" {
            return check_stdout();
        }
        let path = Path::new(spec);
        if super::video::is_video_output(spec) || super::mcap::is_mcap(spec) {
            if !super::mcap::is_mcap(spec) {
                super::video::check_program(ffmpeg)?;
            }
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(SinkError::NoDirectory {
                    path: spec.into(),
                    dir: dir.into(),
                });
            }
            if path.is_dir() {
                return Err(SinkError::NotWritable {
                    path: spec.into(),
                    dir: dir.into(),
                    source: std::io::Error::from_raw_os_error(libc::EISDIR),
                });
            }
            return probe_writable(dir, spec);
        }
        // A name with an extension (out.gif, clip.mp5) is refused rather
        // than made a directory, unless it is one or ends with "/".
        let ext = path.extension().and_then(|e| e.to_str());
        if let Some(ext) = ext {
            if !spec.ends_with('/') && !path.is_dir() {
                return Err(SinkError::UnknownOutput {
                    path: spec.into(),
                    ext: ext.into(),
                    known: super::video::VIDEO_OUTPUT_EXTENSIONS.join(", "),
                });
            }
        }
        std::fs::create_dir_all(spec).map_err(|source| SinkError::NotWritable {
            path: spec.into(),
            dir: path.into(),
            source,
        })?;
        probe_writable(path, spec)
    }

    /// Checks that the output `spec` (a directory of `format` files, a
    /// video file, `-` or `null`) can hold frames of `shape`'s element type:
    /// raw outputs take any; 16-bit PNG/PNM files and video take `uint16`;
    /// `float32` goes raw only; JPEG is 8-bit only.
    pub fn check_dtype(
        spec: &str,
        format: OutputFormat,
        shape: FrameShape,
    ) -> Result<(), SinkError> {
        const FLOAT_HINT: &str =
            "write them raw (--output -) or checksum them (--output null), or give the producer a uint8 or uint16 ring (--dtype)";
        let refuse = |what, hint| {
            Err(SinkError::Dtype {
                path: spec.into(),
                dtype: shape.dtype,
                what,
                hint,
            })
        };
        // An MCAP recording checks its own (it takes any raw frames).
        if spec == "-" || spec == "null" || shape.dtype == Dtype::U8 || super::mcap::is_mcap(spec) {
            return Ok(());
        }
        let video = super::video::is_video_output(spec);
        match (shape.dtype, format) {
            (Dtype::F32, _) if video => refuse("video", FLOAT_HINT),
            (Dtype::F32, _) => refuse("image files", FLOAT_HINT),
            (_, _) if video => Ok(()),
            (_, OutputFormat::Jpeg) => refuse(
                "JPEG (8-bit only)",
                "use --format png or ppm (16-bit files), or raw output (--output -)",
            ),
            _ => Ok(()),
        }
    }

    fn new(out: Out) -> Sink {
        Sink { out, accepted: 0 }
    }

    /// Opens `spec`: `-`, `null`, or a directory (created if missing).
    pub fn open(spec: &str, format: OutputFormat, quality: u8) -> Result<Sink, SinkError> {
        Ok(Sink::new(match spec {
            "-" => Out::Stdout(StdoutSink::open()),
            "null" => Out::Null { checksum: 0 },
            dir => {
                std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
                    path: dir.into(),
                    source,
                })?;
                Out::Dir {
                    dir: dir.into(),
                    format,
                    quality,
                }
            }
        }))
    }

    /// Path of frame `seq` in a directory sink.
    pub fn frame_path(dir: &Path, format: OutputFormat, channels: u32, seq: u64) -> PathBuf {
        dir.join(format!("{seq:010}.{}", extension(format, channels)))
    }

    /// Writes one frame. On success the frame is accepted (counted in
    /// [`accepted`](Self::accepted)); on an error it is not, and nothing of
    /// it is left under its final name nor under a temporary one.
    pub fn write(
        &mut self,
        stamp: &FrameStamp<'_>,
        data: &[u8],
        shape: FrameShape,
    ) -> Result<(), SinkError> {
        let seq = stamp.seq;
        match &mut self.out {
            Out::Mcap(r) => r.write(stamp, data)?,
            Out::Null { checksum } => {
                *checksum = fold_checksum(*checksum, data);
            }
            Out::Video(v) => v.write(data)?,
            Out::Stdout(out) => out.write(data)?,
            Out::Dir {
                dir,
                format,
                quality,
            } => write_image(dir, *format, *quality, seq, data, shape)?,
        }
        self.accepted += 1;
        Ok(())
    }

    /// Frames accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// How many of the frames accepted (the first ones) are in the output
    /// now, as far as can be known: all of them for image files (renamed
    /// into place) and a file or terminal on stdout; for a pipe on stdout,
    /// those its reader has read; for a `.y4m` video, those ffmpeg has
    /// written to the file; for a compressed video, none until ffmpeg has
    /// started writing the file, then all (see
    /// [`FfmpegOutput::durable`](super::video::FfmpegOutput::durable)). An
    /// error if the output has failed meanwhile (the pipe's reader left,
    /// ffmpeg exited).
    pub fn durable(&mut self) -> Result<u64, SinkError> {
        let n = self.accepted;
        match &mut self.out {
            Out::Null { .. } | Out::Dir { .. } => Ok(n),
            Out::Mcap(r) => Ok(r.durable()?),
            Out::Stdout(out) => out.durable(n),
            Out::Video(v) => Ok(v.durable(n)?),
        }
    }

    /// After a failure: stops the output, cuts a partial frame off its end
    /// (stdout to a file, a `.y4m` video), and returns how many of the
    /// frames accepted are in it; the others are not.
    pub fn abandon(&mut self) -> u64 {
        let n = self.accepted;
        match &mut self.out {
            Out::Null { .. } | Out::Dir { .. } => n,
            Out::Mcap(r) => r.abandon(),
            Out::Stdout(out) => out.abandon(n),
            Out::Video(v) => v.abandon(),
        }
    }

    /// Opens a video file output: frames of `shape` are encoded by
    /// `ffmpeg` at `fps`.
    pub fn open_video(
        ffmpeg: &str,
        path: &str,
        shape: FrameShape,
        fps: f64,
    ) -> Result<Sink, SinkError> {
        Ok(Sink::new(Out::Video(super::video::FfmpegOutput::spawn(
            ffmpeg, path, shape, fps,
        )?)))
    }

    /// Opens an MCAP recording into `path` of frames of `shape`.
    pub fn open_mcap(
        path: &str,
        shape: FrameShape,
        opts: super::mcap::RecorderOptions,
    ) -> Result<Sink, SinkError> {
        Ok(Sink::new(Out::Mcap(Box::new(
            super::mcap::Recorder::create(Path::new(path), shape, opts)?,
        ))))
    }

    /// Flushes and closes: waits for a video encoder to finish the file.
    /// On success every accepted frame is in the output.
    pub fn finish(&mut self) -> Result<(), SinkError> {
        match &mut self.out {
            Out::Video(v) => Ok(v.finish()?),
            Out::Mcap(r) => Ok(r.finish()?),
            _ => Ok(()),
        }
    }

    /// The checksum of a null sink.
    pub fn checksum(&self) -> Option<u64> {
        match self.out {
            Out::Null { checksum } => Some(checksum),
            _ => None,
        }
    }
}

/// Writes one image file into `dir`: encoded into a temporary file, renamed
/// into place. Both names are resolved in the directory opened once for the
/// frame, so a directory moved meanwhile gets the whole file or nothing; on
/// any error the temporary file is removed.
fn write_image(
    dir: &Path,
    format: OutputFormat,
    quality: u8,
    seq: u64,
    data: &[u8],
    shape: FrameShape,
) -> Result<(), SinkError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let name = format!("{seq:010}.{}", extension(format, shape.channels));
    let tmp = format!(".{name}.tmp{}", std::process::id());
    let shown = || dir.join(&name).display().to_string();
    let io = |source: std::io::Error| SinkError::Io {
        path: shown(),
        source,
    };
    let dfd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let fd = rustix::fs::openat(
        &dfd,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(|e| io(e.into()))?;
    let written = (|| {
        let mut w = BufWriter::new(File::from(fd));
        let ct = color(shape);
        let res = match format {
            OutputFormat::Png => image::codecs::png::PngEncoder::new_with_quality(
                &mut w,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            )
            .write_image(data, shape.width, shape.height, ct),
            OutputFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut w, quality,
            )
            .write_image(data, shape.width, shape.height, ct),
            OutputFormat::Ppm => image::codecs::pnm::PnmEncoder::new(&mut w).write_image(
                data,
                shape.width,
                shape.height,
                ct,
            ),
        };
        res.map_err(|source| SinkError::Encode {
            path: shown(),
            source,
        })?;
        w.flush().map_err(io)?;
        rustix::fs::renameat(&dfd, tmp.as_str(), &dfd, name.as_str()).map_err(|e| io(e.into()))
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(&dfd, tmp.as_str(), AtFlags::empty());
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64) -> FrameStamp<'static> {
        FrameStamp {
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn outputs_are_checked_before_any_frame() {
        let d = tempfile::tempdir().unwrap();
        let at = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        for ok in ["-", "null"] {
            Sink::check(ok, "ffmpeg").unwrap();
        }
        // Dotted directory names ending with "/" are directories, created
        // as asked.
        for dir in ["run.v2/", "2024.06.01/", "plain"] {
            Sink::check(&at(dir), "ffmpeg").unwrap();
            assert!(d.path().join(dir).is_dir(), "{dir}");
        }
        // A name with an extension not written is refused, not created.
        for file in ["out.gif", "foo.mp5", "run.v3"] {
            let e = Sink::check(&at(file), "ffmpeg").unwrap_err();
            assert!(matches!(e, SinkError::UnknownOutput { .. }), "{e}");
            assert!(!d.path().join(file).exists());
        }
        // ...unless it is an existing directory.
        std::fs::create_dir(d.path().join("frames.png")).unwrap();
        Sink::check(&at("frames.png"), "ffmpeg").unwrap();
        let e = Sink::check(&at("nosuch/x.mp4"), "ffmpeg").unwrap_err();
        assert!(matches!(e, SinkError::NoDirectory { .. }), "{e}");
    }

    #[test]
    fn dir_sink_round_trips_every_format() {
        let d = tempfile::tempdir().unwrap();
        let shape = FrameShape::new(6, 5, 3);
        let data: Vec<u8> = (0..shape.bytes() as u32).map(|i| (i * 7) as u8).collect();
        for format in [OutputFormat::Png, OutputFormat::Ppm] {
            let mut s = Sink::open(d.path().to_str().unwrap(), format, 90).unwrap();
            s.write(&stamp(42), &data, shape).unwrap();
            let p = Sink::frame_path(d.path(), format, 3, 42);
            let back = image::open(&p).unwrap().to_rgb8();
            assert_eq!(back.into_raw(), data, "{format:?}");
        }
        let mut s = Sink::open(d.path().to_str().unwrap(), OutputFormat::Jpeg, 90).unwrap();
        s.write(&stamp(1), &data, shape).unwrap();
        let back = image::open(Sink::frame_path(d.path(), OutputFormat::Jpeg, 3, 1)).unwrap();
        assert_eq!((back.width(), back.height()), (5, 6));
        // No temporary files are left behind.
        assert!(std::fs::read_dir(d.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
    }

    #[test]
    fn sixteen_bit_frames_round_trip_and_floats_are_refused_for_images() {
        let d = tempfile::tempdir().unwrap();
        let shape = FrameShape::new(3, 4, 3).with_dtype(Dtype::U16);
        let samples: Vec<u16> = (0..shape.elements() as u32)
            .map(|i| (i * 2999) as u16)
            .collect();
        let data: &[u8] = bytemuck::cast_slice(&samples);
        for format in [OutputFormat::Png, OutputFormat::Ppm] {
            Sink::check_dtype(d.path().to_str().unwrap(), format, shape).unwrap();
            let mut s = Sink::open(d.path().to_str().unwrap(), format, 90).unwrap();
            s.write(&stamp(7), data, shape).unwrap();
            let back = image::open(Sink::frame_path(d.path(), format, 3, 7)).unwrap();
            assert_eq!(back.color(), image::ColorType::Rgb16, "{format:?}");
            assert_eq!(back.into_rgb16().into_raw(), samples, "{format:?}");
        }
        let dir = d.path().to_str().unwrap();
        let e = Sink::check_dtype(dir, OutputFormat::Jpeg, shape).unwrap_err();
        assert!(e.to_string().contains("--format png"), "{e}");
        let f = shape.with_dtype(Dtype::F32);
        for out in [dir, "clip.mp4"] {
            let e = Sink::check_dtype(out, OutputFormat::Png, f).unwrap_err();
            assert!(e.to_string().contains("--output -"), "{e}");
        }
        for out in ["-", "null"] {
            Sink::check_dtype(out, OutputFormat::Png, f).unwrap();
        }
    }

    #[test]
    fn checksum_reads_every_byte() {
        let a = vec![1u8; 1001];
        let mut b = a.clone();
        b[1000] = 2;
        assert_ne!(fold_checksum(0, &a), fold_checksum(0, &b));
        b[1000] = 1;
        b[3] = 9;
        assert_ne!(fold_checksum(0, &a), fold_checksum(0, &b));
    }
}
