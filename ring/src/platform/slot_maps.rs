//! A detachable consumer's own mapping of each slot, and the page swap that
//! detaches a frame from its slot.
//!
//! A consumer attached with
//! [`ConsumerBuilder::detachable`](crate::ConsumerBuilder::detachable) reads
//! slot `k` through a mapping of that slot's pages alone
//! (`mmap(NULL, stride, PROT_READ, MAP_SHARED, fd, offset of slot k)`), whose
//! address it looks up per frame in [`SlotMaps`]. Detaching the frame that
//! slot `k` holds ([`SlotMaps::detach`], while the consumer still holds it):
//!
//! 1. maps slot `k`'s pages anew, for the consumer's later frames there;
//! 2. copies the slot (frame and user metadata) into a fresh anonymous
//!    mapping and makes it read-only;
//! 3. moves the copy over the slot's old mapping with
//!    `mremap(MREMAP_MAYMOVE | MREMAP_FIXED)`: one system call replaces the
//!    pages under that address range, so a reader of it (a view of the frame
//!    on another thread) sees the shared pages or the copy — the same bytes —
//!    and never a hole or zeros;
//! 4. the caller then hands the slot back; the producer may rewrite it, the
//!    old address keeps the copy ([`SlotCopy`]) until that is dropped, which
//!    unmaps it.
//!
//! Every mapping here is one of its own (never a range inside the segment's
//! mapping), so unmapping one never leaves a hole in another.
//!
//! With [`crate::platform::segment`], [`crate::platform::views`], [`crate::platform::futex`] and [`crate::platform::signals`], this
//! module holds the ring's `unsafe` code.

use crate::platform::{segment::Segment, views::SlotPart};
use crate::protocol::ready_queue::ReadClaim;
use nix::errno::Errno;
use nix::sys::mman::{
    mmap, mmap_anonymous, mprotect, mremap, munmap, MRemapFlags, MapFlags, ProtFlags,
};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Slot `k`'s current mapping (`stride` bytes, read-only, shared with the
/// producer) for every `k`. Owns them: unmapped when dropped, which happens
/// only once the consumer and all its leases are gone.
#[derive(Debug)]
pub(crate) struct SlotMaps {
    maps: Vec<AtomicPtr<u8>>,
    stride: NonZeroUsize,
}

/// A detached frame's private copy of its slot: `len` read-only bytes at the
/// address the slot was read at, unmapped on drop.
#[derive(Debug)]
pub(crate) struct SlotCopy {
    addr: NonNull<u8>,
    len: usize,
}

// SAFETY: the copy is a private, read-only mapping owned by this value
// alone; nothing writes it, so it may be read from and dropped on any thread.
unsafe impl Send for SlotCopy {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for SlotCopy {}

/// Unmaps a mapping of ours that nothing refers to any more.
///
/// # Safety
/// `addr .. addr + len` must be one whole mapping made by this module, with
/// no reference into it left.
unsafe fn unmap(addr: NonNull<c_void>, len: usize) {
    // SAFETY: per the contract. A failure (impossible for a whole mapping
    // of ours) leaves the mapping in place: a leak, never a dangling view.
    if let Err(e) = unsafe { munmap(addr, len) } {
        tracing::error!(error = %e, "could not unmap a slot mapping");
    }
}

/// Maps slot `slot`'s pages (read-only, shared) at an address the kernel
/// picks.
fn map_slot(seg: &Segment, slot: u32, len: NonZeroUsize) -> Result<NonNull<u8>, Errno> {
    let off =
        libc::off_t::try_from(seg.geometry().frame_offset(slot)).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: a new mapping at an address the kernel picks (no existing
    // mapping is touched) of the segment's file over the slot's pages: the
    // offset is page-aligned and the range lies inside the file (the
    // geometry was checked against its size when the segment was opened).
    let p = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            seg.file(),
            off,
        )
    }?;
    Ok(p.cast())
}

impl SlotMaps {
    /// Maps every slot of `seg` on its own.
    pub(crate) fn new(seg: &Segment) -> Result<Self, Errno> {
        let g = seg.geometry();
        // A validated geometry has a stride of at least a page.
        let stride = NonZeroUsize::new(g.slot_stride as usize).ok_or(Errno::EINVAL)?;
        let mut maps = SlotMaps {
            maps: Vec::with_capacity(g.slots as usize),
            stride,
        };
        for k in 0..g.slots {
            // On an error, dropping `maps` unmaps the slots mapped so far.
            let p = map_slot(seg, k, stride)?;
            maps.maps.push(AtomicPtr::new(p.as_ptr()));
        }
        Ok(maps)
    }

    /// The bytes of `part` of the frame `claim` holds, read through the
    /// slot's own mapping, for as long as the claim is borrowed.
    ///
    /// Panics if the claim was made on another segment's claim words.
    pub(crate) fn frame_part<'a>(
        &'a self,
        seg: &Segment,
        claim: &'a ReadClaim,
        part: SlotPart,
    ) -> &'a [u8] {
        seg.check_read_claim(claim);
        let (start, len) = part.range(seg.geometry());
        // Acquire: pairs with the Release store of a detach of an earlier
        // frame of this slot (which happened before the slot went back).
        let base = self.maps[claim.slot() as usize].load(Ordering::Acquire);
        // SAFETY: `base` is this table's mapping of the claimed slot, `stride`
        // bytes, and the part lies inside the stride (Geometry::compute). The
        // mapping stays while the claim is borrowed: only a detach of the
        // frame holding this claim replaces it (and leaves a copy of the same
        // bytes there), and a detach consumes that frame, so no borrow of the
        // claim outlives it. The bytes do not change while we hold the claim,
        // as in Segment::frame_part.
        unsafe { std::slice::from_raw_parts(base.add(start as usize), len as usize) }
    }

    /// Swaps the mapping of the slot `claim` holds for a private copy at the
    /// same address, and maps the slot's pages anew for later frames (see
    /// the [module documentation](self)). The caller hands the slot back
    /// next; on an error nothing changed.
    ///
    /// Panics if the claim was made on another segment's claim words.
    pub(crate) fn detach(
        &self,
        seg: &Segment,
        claim: &ReadClaim,
    ) -> Result<SlotCopy, (&'static str, Errno)> {
        seg.check_read_claim(claim);
        let len = self.stride;
        let entry = &self.maps[claim.slot() as usize];
        // Every entry came from a successful mmap: never null.
        let old = NonNull::new(entry.load(Ordering::Acquire)).ok_or(("mmap", Errno::EFAULT))?;
        let fresh = map_slot(seg, claim.slot(), len).map_err(|e| ("mmap of the slot", e))?;
        // Populated: its pages are about to be written whole, and faulting
        // them in one call is cheaper than one fault per page.
        // SAFETY: a new private anonymous mapping at an address the kernel
        // picks.
        let copy = match unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
            )
        } {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: `fresh` is the whole mapping made above, unused.
                unsafe { unmap(fresh.cast(), len.get()) };
                return Err(("mmap of the copy", e));
            }
        };
        // SAFETY: `old` is this table's mapping of the slot, `len` readable
        // bytes whose contents do not change while the claim is held; `copy`
        // is a new writable mapping of `len` bytes: they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(old.as_ptr(), copy.as_ptr().cast::<u8>(), len.get())
        };
        // SAFETY: `copy` is the whole mapping made above; only protection
        // changes.
        let moved = unsafe { mprotect(copy, len.get(), ProtFlags::PROT_READ) }
            .map_err(|e| ("mprotect", e))
            .and_then(|()| {
                // SAFETY: moves our copy over `old .. old + len`, which is
                // exactly this table's own mapping of the slot (no other
                // memory of the process is replaced), in one step: a reader
                // of that range sees the slot's bytes or the copy's, which
                // are equal. References into it stay valid (same bytes, same
                // address, still mapped) and now point into the copy.
                unsafe {
                    mremap(
                        copy,
                        len.get(),
                        len.get(),
                        MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED,
                        Some(old.cast::<c_void>()),
                    )
                }
                .map_err(|e| ("mremap", e))
            });
        if let Err(e) = moved {
            // SAFETY: both are whole mappings made above; a failed mremap
            // leaves `copy` where it was (and `old` untouched).
            unsafe {
                unmap(copy, len.get());
                unmap(fresh.cast(), len.get());
            }
            return Err(e);
        }
        // Release: a later take of this slot (after the hand-back) reads the
        // new mapping.
        entry.store(fresh.as_ptr(), Ordering::Release);
        Ok(SlotCopy {
            addr: old,
            len: len.get(),
        })
    }
}

impl Drop for SlotMaps {
    fn drop(&mut self) {
        for m in &self.maps {
            if let Some(p) = NonNull::new(m.load(Ordering::Acquire)) {
                // SAFETY: each entry is a whole mapping of ours; the table
                // drops with the consumer's shared state, once the consumer
                // and every lease (the only readers through it) are gone.
                unsafe { unmap(p.cast(), self.stride.get()) };
            }
        }
    }
}

impl SlotCopy {
    /// The bytes `start .. start + len` of the copied slot (a
    /// [`SlotPart::range`]).
    pub(crate) fn part(&self, (start, len): (u64, u64)) -> &[u8] {
        assert!(
            start.saturating_add(len) <= self.len as u64,
            "part out of the slot"
        );
        // SAFETY: inside the copy (asserted), a read-only mapping owned by
        // `self` and alive while it is borrowed.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().add(start as usize), len as usize) }
    }
}

impl Drop for SlotCopy {
    fn drop(&mut self) {
        // SAFETY: the whole mapping this copy owns; references into it
        // borrow `self`, so none is left.
        unsafe { unmap(self.addr.cast(), self.len) };
    }
}
