//! Typed views of a mapped [`Segment`]'s regions: the header, the group and
//! consumer tables, the queues' cells, the claim words, and the bytes of a
//! slot reached through an ownership token.
//!
//! The invariant everything here rests on (see [`crate::platform::segment`]):
//! **every offset and length used to form a reference comes from the
//! [`Geometry`] held in this process's own memory**, checked against the
//! real size of the mapping when the segment was created or opened. Indices
//! read from the segment are bounds-checked by the slice accessors. Frame
//! bytes are reached only through a [`ReadClaim`] (made by a successful
//! claim CAS) or a [`WriteClaim`] (made by the producer's free pool), so no
//! module outside [`crate::platform`] needs `unsafe`.

use crate::platform::segment::Segment;
use crate::protocol::layout::{ConsumerEntry, Geometry, GroupEntry, Header, SlotMeta};
use crate::protocol::ledger::WriteClaim;
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::ready_queue::{ReadClaim, ReadyQueue};
use crate::protocol::return_queue::ReturnQueue;
use crate::protocol::sync::{AtomicU32, AtomicU64};
use std::mem::{align_of, size_of};

/// Types that may be viewed in the shared mapping.
///
/// # Safety
///
/// Implementors are `repr(C)` (or primitive), valid for every bit pattern
/// (including all zeroes, which is what a new segment holds), and mutated only
/// through atomics (interior mutability), so shared references to them may
/// alias memory other processes write concurrently.
unsafe trait ShmSafe {}
// SAFETY: atomics of plain integers: every bit pattern is a valid value.
unsafe impl ShmSafe for AtomicU32 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicU64 {}
// SAFETY: repr(C) struct of atomics and padding only.
unsafe impl ShmSafe for QueueCtrl {}
// SAFETY: repr(C) struct of atomic integers.
unsafe impl ShmSafe for SlotMeta {}
// SAFETY: repr(C) struct of atomic integers and a plain integer array
// (`reserved`, never read).
unsafe impl ShmSafe for ConsumerEntry {}
// SAFETY: as for ConsumerEntry: atomics and plain integers only.
unsafe impl ShmSafe for GroupEntry {}
// SAFETY: repr(C); the non-atomic fields are plain integers and byte arrays,
// written only by the creator before `layout_version` is published and read
// by others only through `read_volatile` copies (see `Segment::open`).
unsafe impl ShmSafe for Header {}

impl Segment {
    fn region<T: ShmSafe>(&self, off: u64, count: usize) -> &[T] {
        let bytes = (count as u64).checked_mul(size_of::<T>() as u64);
        // Offsets come from our validated Geometry; this re-check is cheap
        // insurance that a bug here cannot become an out-of-bounds reference.
        assert!(
            bytes.is_some_and(|b| off
                .checked_add(b)
                .is_some_and(|end| end <= self.map.len() as u64))
                && off % align_of::<T>() as u64 == 0,
            "region out of bounds"
        );
        // SAFETY: `off .. off + count * size_of::<T>()` lies inside the live
        // mapping (asserted) and is aligned for T (asserted; the base is
        // page-aligned). T: ShmSafe is valid for every bit pattern and only
        // mutated through atomics, so shared references may alias writes by
        // other processes. The mapping lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(off as usize) as *const T, count)
        }
    }

    /// The header.
    pub(crate) fn header(&self) -> &Header {
        &self.region::<Header>(0, 1)[0]
    }

    /// The group table.
    pub(crate) fn groups(&self) -> &[GroupEntry] {
        self.region(self.geometry.off_groups, self.geometry.max_groups as usize)
    }

    /// Cells of group `group`'s ready queue. Panics if `group` is not below
    /// `max_groups`.
    pub(crate) fn ready_cells(&self, group: usize) -> &[AtomicU64] {
        assert!(group < self.geometry.max_groups as usize);
        let cap = self.geometry.ready_cap as u64;
        self.region(
            self.geometry.off_ready_cells + group as u64 * cap * 8,
            cap as usize,
        )
    }

    /// Group `group`'s claim word for every slot (see [`crate::protocol::slot`]).
    /// Panics if `group` is not below `max_groups`.
    pub(crate) fn claims(&self, group: usize) -> &[AtomicU64] {
        assert!(group < self.geometry.max_groups as usize);
        let n = self.geometry.slots as u64;
        self.region(self.geometry.off_claims + group as u64 * n * 8, n as usize)
    }

    /// The producer's word per slot: free, writing, or published (as
    /// `Ready { pos: seq }`); see [`crate::protocol::slot`]. Informational.
    pub(crate) fn slot_states(&self) -> &[AtomicU64] {
        self.region(self.geometry.off_slot_state, self.geometry.slots as usize)
    }

    /// Per-slot frame metadata.
    pub(crate) fn slot_meta(&self) -> &[SlotMeta] {
        self.region(self.geometry.off_slot_meta, self.geometry.slots as usize)
    }

    /// Asks the CPU to start loading slot `s`'s metadata (its fixed fields'
    /// line and its name's first) into its cache, without waiting for it: a consumer about to
    /// claim the slot reads them next, and the claim's locked instruction
    /// would otherwise hold those loads back until it completes. Out of
    /// range: nothing.
    #[inline]
    pub(crate) fn prefetch_slot_meta(&self, s: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(m) = self.slot_meta().get(s) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = m as *const SlotMeta as *const i8;
            // SAFETY: a prefetch is a hint that never faults nor changes
            // memory, and SSE is part of x86_64's baseline. Both addresses
            // lie within the slot's metadata in the mapping anyway (its
            // fixed fields' line and the name's first).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.add(std::mem::offset_of!(SlotMeta, name)));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = s;
    }

    /// The consumer table.
    pub(crate) fn consumers(&self) -> &[ConsumerEntry] {
        self.region(
            self.geometry.off_consumers,
            self.geometry.max_consumers as usize,
        )
    }

    /// Cells of consumer `index`'s return queue. Panics if `index` is not
    /// below `max_consumers`.
    pub(crate) fn return_cells(&self, index: usize) -> &[AtomicU64] {
        assert!(index < self.geometry.max_consumers as usize);
        let cap = self.geometry.return_cap as u64;
        self.region(
            self.geometry.off_return_cells + index as u64 * cap * 8,
            cap as usize,
        )
    }

    /// The part `range` of slot `slot`'s bytes: the frame is
    /// `0..frame_bytes`, its user metadata `user_meta_offset..` +
    /// `user_meta_bytes`.
    fn slot_ptr(&self, slot: u32, part: SlotPart) -> (*mut u8, usize) {
        assert!(slot < self.geometry.slots, "slot index out of range");
        let g = &self.geometry;
        let (start, len) = part.range(g);
        let off = g.frame_offset(slot) + start;
        debug_assert!(start + len <= g.slot_stride);
        debug_assert!(off + len <= self.map.len() as u64);
        // SAFETY: `slot < slots` and the part lies inside the slot's stride
        // (Geometry::compute), so it lies inside the mapping (the geometry
        // was checked against the mapping's size); `add` stays in the same
        // allocation.
        (
            unsafe { self.map.as_mut_ptr().add(off as usize) },
            len as usize,
        )
    }

    /// Panics if `claim` was made on another segment's claim words.
    pub(crate) fn check_read_claim(&self, claim: &ReadClaim) {
        let g = &self.geometry;
        let claims_start = self.base_addr() + g.off_claims as usize;
        let claims_end = claims_start + (g.max_groups as usize * g.slots as usize) * 8;
        assert!(
            (claims_start..claims_end).contains(&claim.word_addr()),
            "a read claim made on another segment"
        );
    }

    fn check_write_claim(&self, claim: &WriteClaim) {
        assert_eq!(
            claim.origin(),
            self.base_addr(),
            "a write claim of another segment"
        );
    }

    /// The bytes of `part` of the frame `claim` holds (the frame: H×W×C,
    /// row-major), for as long as the claim is borrowed.
    ///
    /// Panics if the claim was made on another segment's claim words.
    pub(crate) fn frame_part<'a>(&'a self, claim: &'a ReadClaim, part: SlotPart) -> &'a [u8] {
        self.check_read_claim(claim);
        let (p, len) = self.slot_ptr(claim.slot(), part);
        // SAFETY: in bounds (see `slot_ptr`). The claim proves that our
        // claim CAS set this segment's claim word for the slot to
        // READING(us) (checked above: the word lies in this mapping's claim
        // region), and the claim is borrowed for the slice's lifetime, so it
        // cannot be returned meanwhile; conforming processes do not write a
        // slot until every group that holds it returned it. u8 has no
        // invalid values, so even a misbehaving writer cannot cause UB here
        // beyond the bytes changing under us, which the design accepts.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// `part` of the slot `claim` holds for writing.
    ///
    /// Panics if the claim belongs to another segment.
    pub(crate) fn slot_part_mut<'a>(
        &'a self,
        claim: &'a mut WriteClaim,
        part: SlotPart,
    ) -> &'a mut [u8] {
        self.check_write_claim(claim);
        let (p, len) = self.slot_ptr(claim.slot(), part);
        // SAFETY: in bounds (see `slot_ptr`). A WriteClaim is minted only by
        // the producer's free pool for a slot no group holds, exactly once
        // per loan (it is neither Clone nor Copy), so it is the only handle
        // to this slot in this process and no conforming consumer reads it;
        // the `&mut` borrow of the claim makes this slice unique.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    /// The frame of the slot `claim` holds for writing.
    pub(crate) fn frame_mut<'a>(&'a self, claim: &'a mut WriteClaim) -> &'a mut [u8] {
        self.slot_part_mut(claim, SlotPart::Frame)
    }

    /// The frame of the slot `claim` holds for writing, read back.
    ///
    /// Panics if the claim belongs to another segment.
    pub(crate) fn frame_written<'a>(&'a self, claim: &'a WriteClaim) -> &'a [u8] {
        self.check_write_claim(claim);
        let (p, len) = self.slot_ptr(claim.slot(), SlotPart::Frame);
        // SAFETY: as in `slot_part_mut`; the shared borrow of the claim rules
        // out a live `&mut` slice of this slot.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
    /// Group `g`'s ready queue (`g` below `max_groups`, else a panic).
    pub(crate) fn group_queue(&self, g: usize) -> ReadyQueue<'_> {
        ReadyQueue::new(&self.groups()[g].ready, self.ready_cells(g), self.claims(g))
    }

    /// Consumer `c`'s return queue (`c` below `max_consumers`, else a panic).
    pub(crate) fn return_queue(&self, c: usize) -> ReturnQueue<'_> {
        ReturnQueue::new(&self.consumers()[c].ret, self.return_cells(c))
    }
}

/// The two parts of a slot's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotPart {
    /// The frame's pixels.
    Frame,
    /// The frame's user metadata area (its capacity; the valid length is in
    /// [`SlotMeta::user_len`]).
    UserMeta,
}

impl SlotPart {
    /// Where the part lies in a slot: (offset from the slot's start, bytes).
    /// Inside the slot's stride ([`Geometry::compute`]).
    pub(crate) fn range(self, g: &Geometry) -> (u64, u64) {
        match self {
            SlotPart::Frame => (0, g.frame_bytes),
            SlotPart::UserMeta => (g.user_meta_offset, g.user_meta_bytes as u64),
        }
    }
}
