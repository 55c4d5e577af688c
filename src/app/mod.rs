//! The programs as library functions: the binaries parse flags into a
//! [`config::Config`] and call [`pipeline`], [`status`] or [`bench`](mod@bench).

pub mod bench;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod mcap;
pub mod metrics;
pub mod pipeline;
pub mod stats;
pub mod status;
