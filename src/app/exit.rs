//! How a program ends: the documented exit codes (the table in README.md),
//! the exit code of an error chain, and the error as one line.

use super::config::ConfigError;
use crate::media::sink::SinkError;
use crate::media::source::SourceError;
use crate::media::video::VideoError;
use framering_ring::{
    AttachError, CreateError, LoanError, OpenError, PublishError, RingCorrupt, TakeError,
};

/// Success.
pub const OK: i32 = 0;
/// A runtime failure (I/O, a corrupt ring, …).
pub const FAILURE: i32 = 1;
/// Bad configuration, flags or input path.
pub const CONFIG: i32 = 2;
/// The ring was refused: in use by a live producer, a different shape or
/// layout version, corrupt header, absent after the wait, or full.
pub const RING: i32 = 3;
/// Consumer: the producer died; every frame it published was consumed.
pub const PRODUCER_GONE: i32 = 4;
/// `framering bridge recv --exit-on-loss`: the sender was lost (the
/// local stream was ended; every frame received was published).
pub const SENDER_LOST: i32 = 4;
/// The shared segment became inaccessible (SIGBUS: truncated by another
/// process, or /dev/shm out of memory).
pub const SHM_LOST: i32 = framering_ring::signals::SIGBUS_EXIT;
/// Stopped by SIGINT/SIGTERM with published frames left unconsumed (a
/// second signal, or `producer.stop_timeout_secs` passed).
pub const INTERRUPTED: i32 = 130;

/// The exit code for an error chain (the table in README.md).
pub fn code_of(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.is::<ConfigError>() || cause.is::<SourceError>() {
            return CONFIG;
        }
        // No ffmpeg, or a y4m input not of the ring's shape.
        if let Some(VideoError::NotFound { .. } | VideoError::Stream { .. }) = cause.downcast_ref()
        {
            return CONFIG;
        }
        // A bad output path, or no ffmpeg for a video output (SinkError
        // is transparent over VideoError: the chain skips the inner one).
        if let Some(
            SinkError::UnknownOutput { .. }
            | SinkError::NoDirectory { .. }
            | SinkError::NotWritable { .. }
            | SinkError::Stdout { .. }
            | SinkError::Dtype { .. }
            | SinkError::Video(VideoError::NotFound { .. }),
        ) = cause.downcast_ref()
        {
            return CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<CreateError>() {
            return match e {
                CreateError::InUse { .. }
                | CreateError::PermissionDenied { .. }
                | CreateError::Unreclaimable { .. }
                | CreateError::Blank { .. } => RING,
                CreateError::Io { .. } => FAILURE,
                _ => CONFIG,
            };
        }
        if let Some(e) = cause.downcast_ref::<AttachError>() {
            return match e {
                AttachError::Open(o) => open_code(o),
                AttachError::InvalidGroup(_) => CONFIG,
                _ => RING,
            };
        }
        if let Some(e) = cause.downcast_ref::<OpenError>() {
            return open_code(e);
        }
        if let Some(TakeError::GroupRefused { .. }) = cause.downcast_ref() {
            return RING;
        }
        if let Some(PublishError::NoSpace { .. }) = cause.downcast_ref() {
            return CONFIG;
        }
        if cause.is::<RingCorrupt>() || cause.is::<LoanError>() || cause.is::<TakeError>() {
            return FAILURE;
        }
    }
    FAILURE
}

fn open_code(e: &OpenError) -> i32 {
    match e {
        OpenError::InvalidName(_) => CONFIG,
        OpenError::Io { .. } => FAILURE,
        _ => RING,
    }
}

/// Prints an error with its causes and returns its exit code.
pub fn report_error(e: &anyhow::Error) -> i32 {
    eprintln!("error: {}", error_message(e));
    code_of(e)
}

/// The error chain as one line, `outer: cause: cause`, each part once: a
/// cause whose text its outer message already includes (errors that print
/// their source themselves) is not repeated.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        // An outer message that already printed this cause (at its end, as
        // `{source}` does, or as its whole start).
        if !line.is_empty() && (line.ends_with(&part) || line.starts_with(&part)) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&part);
    }
    line
}

/// Whether the error is standard output's reader having gone (a pipe into
/// `head`): not a failure of ours, so the program exits quietly with 0.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(ConfigError::Read {
            path: "/proc/nope".into(),
            source: io,
        })
        .context("loading the config");
        assert_eq!(
            error_message(&e),
            "loading the config: cannot read config /proc/nope: No such file or directory (os error 2)"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&plain), "outer: inner");
    }
}
