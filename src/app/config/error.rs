//! [`ConfigError`]: what is wrong with a configuration, naming the key.

use std::path::PathBuf;

/// A configuration problem; the binaries exit with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the key and line.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// The key, e.g. `ring.slots`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The error for a `key` whose value is out of range.
pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}
