//! The lock-free building blocks of the ring's protocol, over the atomics of
//! the shared segment: the segment's [`layout`], the per-slot claim words
//! ([`slot`]), the groups' ready queues ([`ready_queue`]) and the
//! consumers' return queues ([`return_queue`]) with their shared control
//! block ([`queue_ctrl`]), the futex-backed [`event`], the join handshake
//! ([`roster`]) and the producer's [`ledger`] of which group holds which
//! slot. They reach atomics only through [`sync`], so that loom can stand in
//! for them: the loom models (`models`, `--cfg loom`) check them.
//!
//! Nothing here is `unsafe`: the typed views of the segment these blocks
//! work on come from [`crate::platform`].

pub(crate) mod event;
pub(crate) mod layout;
pub(crate) mod ledger;
pub(crate) mod queue_ctrl;
pub(crate) mod ready_queue;
pub(crate) mod return_queue;
pub(crate) mod roster;
pub(crate) mod slot;
pub(crate) mod sync;

#[cfg(all(test, loom))]
mod models;
