//! [`VideoError`]: what went wrong with ffmpeg or a raw frame stream.

use std::process::ExitStatus;

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
