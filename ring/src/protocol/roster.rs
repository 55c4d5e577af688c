//! The consumer table's join handshake: how a consumer asks to join a group,
//! how the producer admits it, and how it leaves.
//!
//! Membership changes go through the producer, the only process that ever
//! changes a group; a consumer writes only its own table entry:
//!
//! ```text
//! consumer                                   producer
//! owner: 0 → me            (CAS, claims the entry)
//! group_name := "rec"      (Relaxed)
//! join := REQUESTED        (Release) ─┐
//! roster += 1              (Release)  └─▶ roster changed? (Acquire)
//! free_event.notify()                     join == REQUESTED? (Acquire) → reads group_name
//!                                         group := g      (Relaxed)
//!                        ┌──────────────  join := ACTIVE  (Release)
//! join == ACTIVE? (Acquire) → reads group
//! … takes frames from group g …
//! join := LEAVING          (Release) ─┐
//! roster += 1, notify                 └─▶ frees the entry: owner := 0 (Release)
//! ```
//!
//! Every read of a field written by the other side follows an Acquire load
//! of the `join` (or `roster`) value written after it with Release, so the
//! consumer never reads a stale group index and the producer never a stale
//! name. A consumer that dies anywhere in this sequence leaves an entry whose
//! owner is dead, which the producer's liveness check frees.

use crate::error::Corrupt;
use crate::protocol::event::Event;
use crate::protocol::layout::{
    ConsumerEntry, GROUP_NAME_MAX, JOIN_ACTIVE, JOIN_LEAVING, JOIN_LEAVING_FAILED, JOIN_NONE,
    JOIN_REFUSED, JOIN_REQUESTED,
};
use crate::protocol::sync::{mutant, AtomicU32, AtomicU64, Ordering};

/// Reads a NUL-padded name written by [`store_name`] (untrusted bytes).
pub(crate) fn load_name(words: &[AtomicU64]) -> ([u8; GROUP_NAME_MAX], usize) {
    let mut out = [0u8; GROUP_NAME_MAX];
    for (i, w) in words.iter().enumerate().take(GROUP_NAME_MAX / 8) {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    let len = out.iter().position(|&b| b == 0).unwrap_or(GROUP_NAME_MAX);
    (out, len)
}

/// Writes `name` NUL-padded into `words` (truncated to fit); returns the
/// length written.
pub(crate) fn store_name(words: &[AtomicU64], name: &[u8]) -> usize {
    let len = store_name_prefix(words, name);
    // Every word, so a shorter name leaves no bytes of a longer one.
    for w in &words[len.div_ceil(8)..] {
        w.store(0, Ordering::Relaxed);
    }
    len
}

/// Writes `name` into the first words of `words` (truncated to fit), the
/// last of them NUL-padded, and returns the length written. Words beyond are
/// left as they were: for fields whose readers take only the length given
/// (a frame's source name, read up to its `name_len`), so that a short name
/// does not rewrite, and move to the reader's core, lines nobody reads.
pub(crate) fn store_name_prefix(words: &[AtomicU64], name: &[u8]) -> usize {
    let len = name.len().min(words.len() * 8);
    for (w, chunk) in words.iter().zip(name[..len].chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    len
}

/// Consumer side: claims a free entry of the table for `owner` (a
/// [`crate::platform::process::ProcessId::owner_word`]). Returns its index.
#[cfg_attr(not(loom), allow(dead_code))]
pub(crate) fn claim_entry(entries: &[ConsumerEntry], owner: u64) -> Option<usize> {
    claim_entry_locked(entries, owner, |_| true, |_| {})
}

/// [`claim_entry`], taking entry `i`'s liveness lock first (`lock(i)`;
/// false: another process still holds it, try the next entry) so that an
/// owner word is never visible without its lock ([`crate::platform::liveness`]);
/// `unlock(i)` gives it up when the claim fails.
pub(crate) fn claim_entry_locked(
    entries: &[ConsumerEntry],
    owner: u64,
    lock: impl Fn(usize) -> bool,
    unlock: impl Fn(usize),
) -> Option<usize> {
    entries.iter().enumerate().position(|(i, e)| {
        if e.owner.load(Ordering::Relaxed) != 0 || !lock(i) {
            return false;
        }
        // AcqRel: acquires the producer's Release when it freed the entry
        // (its claim words and queues are settled).
        let won = e
            .owner
            .compare_exchange(0, owner, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if !won {
            unlock(i);
        }
        won
    })
}

/// Consumer side: asks to join `group` (written into the entry) and tells
/// the producer, waking it if it waits for a subscriber or a slot.
pub(crate) fn request_join(
    entry: &ConsumerEntry,
    group: &[u8],
    roster: &AtomicU32,
    free_event: &Event,
) {
    store_name(&entry.group_name, group);
    // Release: the name is written before the producer reads it.
    entry.join.store(JOIN_REQUESTED, Ordering::Release);
    // Release: our request happens before the producer sees the roster change.
    roster.fetch_add(1, Ordering::Release);
    free_event.notify();
}

/// Where a consumer's request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Not answered yet.
    Waiting,
    /// Admitted into this group.
    Admitted(u8),
    /// Refused (the group table is full).
    Refused,
}

/// Consumer side: whether the producer answered.
pub(crate) fn admission(entry: &ConsumerEntry, max_groups: u32) -> Result<Admission, Corrupt> {
    // Acquire: pairs with the producer's Release store of JOIN_ACTIVE, so
    // the group index below is the one it wrote.
    match entry.join.load(Ordering::Acquire) {
        JOIN_ACTIVE => {
            let g = entry.group.load(Ordering::Relaxed);
            if g >= max_groups {
                return Err(Corrupt("group index"));
            }
            Ok(Admission::Admitted(g as u8))
        }
        JOIN_REFUSED => Ok(Admission::Refused),
        JOIN_REQUESTED | JOIN_NONE => Ok(Admission::Waiting),
        _ => Err(Corrupt("join state")),
    }
}

/// Consumer side: says it left (after handing back every frame); `failed`:
/// after handing some back unconsumed, so that its group keeps them for a
/// consumer that comes next, as if it had died.
pub(crate) fn leave(entry: &ConsumerEntry, roster: &AtomicU32, free_event: &Event, failed: bool) {
    let state = if failed {
        JOIN_LEAVING_FAILED
    } else {
        JOIN_LEAVING
    };
    // Release: our returns happen before the producer sees us leave.
    entry.join.store(state, Ordering::Release);
    roster.fetch_add(1, Ordering::Release);
    free_event.notify();
}

/// Producer side: whether the roster changed since `seen` (updated). One
/// Acquire load when nothing changed.
pub(crate) fn changed(roster: &AtomicU32, seen: &mut u32) -> bool {
    // Acquire: a consumer bumps the roster (Release) after writing its
    // request into its entry.
    let now = roster.load(Ordering::Acquire);
    if now == *seen {
        return false;
    }
    *seen = now;
    true
}

/// What an entry asks of the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Nothing (free, or settled).
    Nothing,
    /// To be admitted into the group named in the entry.
    Join,
    /// To be freed: its consumer left (`failed`: after handing frames back
    /// unconsumed).
    Leave {
        /// Whether it handed frames back unconsumed.
        failed: bool,
    },
}

/// Producer side: what entry `entry` asks for.
pub(crate) fn request(entry: &ConsumerEntry) -> Request {
    if entry.owner.load(Ordering::Acquire) == 0 {
        return Request::Nothing;
    }
    // Acquire: pairs with the consumer's Release store, so the name it
    // wrote before is visible.
    match entry.join.load(Ordering::Acquire) {
        JOIN_REQUESTED => Request::Join,
        JOIN_LEAVING => Request::Leave { failed: false },
        JOIN_LEAVING_FAILED => Request::Leave { failed: true },
        _ => Request::Nothing,
    }
}

/// Producer side (or a consumer admitting itself once the producer is
/// gone): admits the entry into group `group`.
pub(crate) fn admit(entry: &ConsumerEntry, group: u8) {
    entry.group.store(group as u32, Ordering::Relaxed);
    // Release: the group index (and the group's queue reset) happen before
    // the consumer, acquiring `join`, starts taking from it. (Loom mutant
    // `admit-relaxed`: the consumer may then read a stale group index.)
    let order = if mutant("admit-relaxed") {
        Ordering::Relaxed
    } else {
        Ordering::Release
    };
    entry.join.store(JOIN_ACTIVE, order);
}

/// Producer side: refuses the entry's request.
pub(crate) fn refuse(entry: &ConsumerEntry) {
    // Release: pairs with the consumer's Acquire load of `join`.
    entry.join.store(JOIN_REFUSED, Ordering::Release);
}

/// Producer side: frees the entry of a consumer that left or died.
pub(crate) fn free_entry(entry: &ConsumerEntry) {
    entry.join.store(JOIN_NONE, Ordering::Relaxed);
    entry.liveness_lock.store(0, Ordering::Relaxed);
    entry.group.store(0, Ordering::Relaxed);
    // Release: our claim-word and queue updates happen before the entry is
    // reused (the next owner's claim CAS acquires this).
    entry.owner.store(0, Ordering::Release);
}
