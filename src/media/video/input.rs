//! Video input: an ffmpeg child decoding anything it opens (a file, a v4l2
//! device, an rtsp:// or http:// URL, an image-sequence pattern) to
//! `rawvideo` at the ring's pixel format and shape — scaled and padded or
//! cropped per the shape policy by ffmpeg's own filters — read from its
//! stdout straight into a free slot.

use super::error::VideoError;
use super::ffmpeg::{
    float_refused, grow_pipe, is_file_input, pix_fmt, spawn, wait_ffmpeg, StderrTail,
};
use super::stream::{read_frame, PolledReader, ReadFrame};
use crate::media::decode::ShapePolicy;
use crate::media::FrameShape;
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The extensions of files read as video (by ffmpeg).
pub const VIDEO_INPUT_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mkv", "webm", "mov", "avi", "y4m", "ts", "mts", "m2ts", "flv", "mpg", "mpeg",
    "wmv", "ogv", "3gp", "h264", "h265", "hevc", "ivf", "nut",
];

/// Whether `spec` names something for ffmpeg rather than image files: a URL,
/// a video device, an image-sequence pattern (`%04d`), or a file with a video
/// container's extension.
pub fn looks_like_video(spec: &str) -> bool {
    // An image-sequence pattern for ffmpeg: frames/%04d.png.
    let pattern = spec.contains('%') && spec.contains('d');
    if spec.contains("://") || spec.starts_with("/dev/video") || pattern {
        return true;
    }
    let ext = std::path::Path::new(spec)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    ext.is_some_and(|e| VIDEO_INPUT_EXTENSIONS.contains(&e.as_str()))
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

impl FfmpegInput {
    /// Starts `program` decoding `input`. With `realtime`, ffmpeg reads the
    /// input at its native frame rate (`-re`). `frame_rate` (from
    /// [`probe_video`](super::probe_video)) stamps a file's frames with presentation times.
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

#[cfg(test)]
mod tests {
    use super::*;

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
