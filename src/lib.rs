//! framering: a zero-copy frame pipeline over a POSIX shared-memory ring.
//!
//! Layers, bottom up:
//! * ring core — [`futex`], [`event`], [`slot`], [`queue`] (algorithms over
//!   atomics, model-checked with loom), [`layout`], [`segment`] (the mapping),
//!   [`process`] (peer identity), [`producer`] and [`consumer`] (the user
//!   API, shared types in [`pool`]).
//!   It knows nothing of images, files or the command line.
//! * media — [`config`], [`decode`], [`source`], [`sink`], [`video`],
//!   [`stats`]: images, video and files, no atomics or offsets.
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

// Everything above the atomics needs the real mapping and OS; under
// `--cfg loom` only the algorithms (and their models) are compiled.
macro_rules! not_under_loom {
    ($($m:ident),*) => { $( #[cfg(not(loom))] pub mod $m; )* };
}
not_under_loom!(
    bench, cli, clock, config, consumer, decode, layout, pipeline, pool, process, producer,
    segment, signals, sink, source, stats, status, metrics, video
);

#[cfg(all(test, loom))]
mod models;
