//! The slot ownership word: who owns a slot of the pool, and for which queue
//! position.
//!
//! Every slot has one 64-bit word in the segment. All hand-overs of a slot are
//! single atomic operations on this word, so a process that dies at any
//! instruction leaves the slot in a state that names its owner, and a recovery
//! pass can give it back (the idea of iceoryx2's robust index sets: ownership
//! claimed by CAS, carrying an owner id and a generation).
//!
//! ```text
//!  63      56 55      48 47                                   0
//! +----------+----------+--------------------------------------+
//! |  state   |  owner   |     queue position (48 bits)          |
//! +----------+----------+--------------------------------------+
//! ```
//!
//! * `FREE` — owned by the producer, in its free pool.
//! * `WRITING` — owned by the producer, being filled.
//! * `READY` — published at queue position `pos`; may be claimed by exactly
//!   one consumer with a CAS from `READY(pos)`.
//! * `READING` — claimed by consumer `owner` (its index in the consumer table)
//!   at position `pos`.
//!
//! The position is the generation: a slot republished at a new position can
//! never be claimed through a stale queue cell naming the old one (ABA), until
//! the 48-bit position wraps — 2.8·10¹⁴ frames.

/// Bits of the queue position kept in slot words and queue cells.
pub(crate) const POS_BITS: u32 = 48;
/// Mask of [`POS_BITS`].
pub(crate) const POS_MASK: u64 = (1 << POS_BITS) - 1;

/// The decoded state of a slot word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// In the producer's free pool.
    Free,
    /// Being filled by the producer.
    Writing,
    /// Published at this (masked) queue position.
    Ready {
        /// Queue position, masked to [`POS_BITS`].
        pos: u64,
    },
    /// Claimed by consumer `owner` at this (masked) queue position.
    Reading {
        /// Index of the consumer in the consumer table.
        owner: u8,
        /// Queue position, masked to [`POS_BITS`].
        pos: u64,
    },
}

const FREE: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;
const READING: u64 = 3;

impl SlotState {
    /// The word stored in shared memory.
    #[inline]
    pub(crate) const fn encode(self) -> u64 {
        match self {
            SlotState::Free => FREE << 56,
            SlotState::Writing => WRITING << 56,
            SlotState::Ready { pos } => (READY << 56) | (pos & POS_MASK),
            SlotState::Reading { owner, pos } => {
                (READING << 56) | ((owner as u64) << POS_BITS) | (pos & POS_MASK)
            }
        }
    }

    /// Decodes a word read from shared memory; `None` for a word no process
    /// of this layout writes (garbage).
    #[inline]
    pub(crate) const fn decode(word: u64) -> Option<Self> {
        let owner = ((word >> POS_BITS) & 0xff) as u8;
        let pos = word & POS_MASK;
        match word >> 56 {
            FREE if owner == 0 && pos == 0 => Some(SlotState::Free),
            WRITING if owner == 0 && pos == 0 => Some(SlotState::Writing),
            READY if owner == 0 => Some(SlotState::Ready { pos }),
            READING => Some(SlotState::Reading { owner, pos }),
            _ => None,
        }
    }

    /// A short name for status displays.
    #[allow(dead_code)]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            SlotState::Free => "free",
            SlotState::Writing => "writing",
            SlotState::Ready { .. } => "ready",
            SlotState::Reading { .. } => "reading",
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            SlotState::Free,
            SlotState::Writing,
            SlotState::Ready { pos: 0 },
            SlotState::Ready { pos: POS_MASK },
            SlotState::Reading { owner: 0, pos: 7 },
            SlotState::Reading {
                owner: 255,
                pos: POS_MASK,
            },
        ] {
            assert_eq!(SlotState::decode(s.encode()), Some(s));
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(SlotState::decode(u64::MAX), None);
        assert_eq!(SlotState::decode((FREE << 56) | 5), None);
        assert_eq!(SlotState::decode((READY << 56) | (1 << 50)), None);
    }
}
