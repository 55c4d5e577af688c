//! Video in and out through an ffmpeg child process, and raw frame streams.
//!
//! Input (`input.rs`): ffmpeg decodes anything it opens (a file, a v4l2
//! device, an rtsp:// or http:// URL, an image-sequence pattern) to
//! `rawvideo` at the ring's pixel format and shape — scaled and padded or
//! cropped per the shape policy by ffmpeg's own filters — and the producer
//! reads each frame from the pipe straight into a free slot. A raw stream
//! (stdin, a FIFO, a file; `stream.rs`) is read the same way without
//! ffmpeg.
//!
//! Output (`output.rs`): a consumer writes each frame it takes into the
//! stdin of an ffmpeg encoding to a file whose extension picks the
//! container.
//!
//! What both share (`ffmpeg.rs`): starting ffmpeg and ffprobe, and keeping
//! the end of ffmpeg's stderr (its last few KiB) for error messages.
//! [`VideoError`] is the error of all of them.

mod error;
mod ffmpeg;
mod input;
mod output;
mod stream;

pub use error::VideoError;
pub use ffmpeg::{check_program, float_refused, pix_fmt, probe_video, VideoProbe};
pub use input::{looks_like_video, scale_filter, FfmpegInput, VIDEO_INPUT_EXTENSIONS};
pub use output::{is_video_output, FfmpegOutput, VIDEO_OUTPUT_EXTENSIONS};
pub use stream::{RawInput, ReadFrame, StreamStart};

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
}
