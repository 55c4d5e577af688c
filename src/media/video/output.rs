//! Video output: an ffmpeg child encoding the raw frames written to its
//! stdin into a file whose extension picks the container.

use super::error::VideoError;
use super::ffmpeg::{float_refused, grow_pipe, pix_fmt, spawn, StderrTail};
use crate::media::FrameShape;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

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
