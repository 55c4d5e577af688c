//! The platform: the calls into the operating system the ring rests on, and
//! all of the crate's `unsafe` code.
//!
//! * [`segment`]: the shared-memory file's lifecycle (create, reclaim, open
//!   and validate, unlink) and its mapping; [`views`]: the typed views of
//!   the mapped regions (the unsafe part).
//! * [`slot_maps`]: a detachable consumer's own mapping of each slot and
//!   the page swap of a detach.
//! * [`futex`]: the wait/wake system calls.
//! * [`file_lock`] and [`liveness`]: kernel-released locks that tell whether
//!   a peer process is alive; [`process`]: a process's identity (pid and
//!   start time); [`signals`]: the pid kept across fork, and the opt-in
//!   SIGBUS handler.
//! * [`shm_watch`]: inotify on /dev/shm, for a consumer waiting for its
//!   ring to appear.
//! * [`clock`]: CLOCK_MONOTONIC and CLOCK_REALTIME, the clocks the ring's
//!   timestamps are in.

pub(crate) mod futex;

#[cfg(not(loom))]
pub(crate) mod clock;
#[cfg(not(loom))]
pub(crate) mod file_lock;
#[cfg(not(loom))]
pub(crate) mod liveness;
#[cfg(not(loom))]
pub(crate) mod process;
#[cfg(not(loom))]
pub(crate) mod segment;
#[cfg(not(loom))]
pub(crate) mod shm_watch;
#[cfg(not(loom))]
pub(crate) mod signals;
#[cfg(not(loom))]
pub(crate) mod slot_maps;
#[cfg(not(loom))]
pub(crate) mod views;
