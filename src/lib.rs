//! framering: a zero-copy frame pipeline over a POSIX shared-memory ring.
//!
//! Layers, bottom up:
//! * ring core — [`futex`], [`event`], [`slot`], [`queue`] (algorithms over
//!   atomics, model-checked with loom), [`layout`], [`segment`] (the mapping),
//!   [`process`] (peer identity) and [`pool`] (the producer/consumer API).
//!   It knows nothing of images, files or the command line.
//! * media — [`config`], [`decode`], [`source`], [`sink`], [`stats`]: images
//!   and files, no atomics or offsets.
//! * binaries in `src/bin/`: thin shells over both.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod event;
pub mod futex;
pub mod queue;
pub mod slot;
mod sync;

pub use sync::Padded;

#[cfg(not(loom))]
pub mod cli;
#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod decode;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
pub mod pipeline;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod process;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod signals;
#[cfg(not(loom))]
pub mod sink;
#[cfg(not(loom))]
pub mod source;
#[cfg(not(loom))]
pub mod stats;

#[cfg(all(test, loom))]
mod models;
