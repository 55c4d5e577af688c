//! The programs as library functions: the binaries parse flags into a
//! [`config::Config`] and call [`producer`], [`consumer`], [`status`],
//! [`list`], [`clean`], [`demo`] or [`bench`](mod@bench); [`exit`] maps
//! what they return to the exit code.

pub mod bench;
pub mod bridge;
pub mod clean;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod exit;
pub(crate) mod handoff;
pub mod list;
pub mod mcap;
pub mod metrics;
pub mod producer;
pub mod signals;
pub mod stats;
pub mod status;
