//! framering: a zero-copy frame pipeline over a POSIX shared-memory ring.
//!
//! Layers, bottom up:
//! * [`ring`] — the crate `framering-ring`: the shared-memory ring itself
//!   (producer, consumers, groups, crash recovery, inspection). It knows
//!   nothing of images, files, configuration or the command line.
//! * [`media`] — images, video and files: decoding into frame buffers,
//!   inputs, outputs. No atomics, no offsets.
//! * [`app`] — the programs as library functions: configuration, the
//!   producer and consumer pipelines, statistics, metrics, status, bench.
//! * binaries in `src/bin/`: thin shells over [`app`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use framering_ring as ring;

pub mod app;
pub mod media;

/// README.md's Rust example, compiled as a doctest so that it cannot rot
/// (not run: it needs a producer).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
