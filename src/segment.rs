//! The POSIX shared-memory segment of one ring: creation, validated opening,
//! and typed views of its regions.
//!
//! This module and [`crate::futex`] hold the ring core's `unsafe` code. The
//! invariant everything here rests on: **every offset and length used to form
//! a reference comes from a [`Geometry`] held in this process's own memory**,
//! computed by [`Geometry::compute`] and checked against the real size of the
//! mapping when the segment was created or opened. Nothing read from the
//! segment after that is ever used as an offset; indices read from it (slot
//! numbers in queue cells) are bounds-checked by the slice accessors.
//!
//! The regions hold only atomics and plain integers, for which every bit
//! pattern is valid, so a peer writing garbage can make the ring report
//! corruption but cannot make this process's reads undefined behaviour. Frame
//! bytes are the exception the design accepts (as every shared-memory
//! transport does): while a slot is owned by this process, other processes
//! must not write it; [`Segment::frame`] and [`Segment::frame_mut`] state that
//! contract.

use crate::layout::{
    ConsumerEntry, Geometry, GroupEntry, Header, Shape, SlotMeta, LAYOUT_VERSION, MAGIC, PAGE,
};
use crate::queue::QueueCtrl;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::File;
use std::mem::{align_of, size_of};
use std::os::fd::AsRawFd;

/// Longest ring name accepted.
pub const MAX_NAME_LEN: usize = 200;
/// Where POSIX shared memory objects appear on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// Why a segment could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The ring name is not a safe object name.
    #[error("invalid ring name {0:?}: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidName(String),
    /// A segment of that name exists already.
    #[error("ring {name:?} already exists ({SHM_DIR}/{name})")]
    Exists {
        /// Ring name.
        name: String,
    },
    /// No segment of that name.
    #[error("ring {name:?} does not exist (no {SHM_DIR}/{name})")]
    NotFound {
        /// Ring name.
        name: String,
    },
    /// The segment's mode does not let this user open it.
    #[error("permission denied opening ring {name:?} ({SHM_DIR}/{name}, mode {mode}): run as its owner, or have the producer create it with a wider ring.mode such as \"0660\"")]
    PermissionDenied {
        /// Ring name.
        name: String,
        /// The segment's mode, as octal text, if it could be read.
        mode: String,
    },
    /// /dev/shm cannot hold the segment.
    #[error("not enough shared memory for ring {name:?}: it needs {needed} bytes but {SHM_DIR} has {available} bytes free; enlarge {SHM_DIR} (in Docker: --shm-size) or lower ring.slots / the frame shape")]
    NoSpace {
        /// Ring name.
        name: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free in /dev/shm.
        available: u64,
    },
    /// The creator has not finished initialising the segment.
    #[error("ring {name:?} is still being initialised")]
    NotReady {
        /// Ring name.
        name: String,
    },
    /// Not a framering segment at all.
    #[error("{SHM_DIR}/{name} is not a framering ring (bad magic)")]
    BadMagic {
        /// Ring name.
        name: String,
    },
    /// Made by an incompatible version.
    #[error("ring {name:?} has layout version {found}; this build understands version {expected}")]
    Version {
        /// Ring name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// The header contradicts itself or the file.
    #[error("ring {name:?} is corrupt: {reason}")]
    Corrupt {
        /// Ring name.
        name: String,
        /// What disagreed.
        reason: String,
    },
    /// A system call failed.
    #[error("ring {name:?}: {op} failed: {source}")]
    Io {
        /// Ring name.
        name: String,
        /// The operation.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Checks a ring name: it becomes a file name under /dev/shm, never a path.
pub fn validate_name(name: &str) -> Result<(), SegmentError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SegmentError::InvalidName(name.to_string()))
    }
}

fn io(name: &str, op: &'static str, e: impl Into<std::io::Error>) -> SegmentError {
    SegmentError::Io {
        name: name.to_string(),
        op,
        source: e.into(),
    }
}

fn mode_of(name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(format!("{SHM_DIR}/{name}"))
        .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
        .unwrap_or_else(|_| "unknown".into())
}

/// Bytes free for shared memory.
pub fn shm_free_bytes() -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(SHM_DIR).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

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

/// `posix_fallocate` of `len` bytes at `offset`; file systems without it
/// (EINVAL, EOPNOTSUPP) allocate on first touch instead.
fn reserve(file: &File, offset: u64, len: u64) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    match nix::fcntl::posix_fallocate(file.as_raw_fd(), offset as i64, len as i64) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(e),
    }
}

fn reserve_error(name: &str, size: u64, e: Errno) -> SegmentError {
    match e {
        Errno::ENOSPC => SegmentError::NoSpace {
            name: name.into(),
            needed: size,
            available: shm_free_bytes().unwrap_or(0),
        },
        e => io(name, "posix_fallocate", e),
    }
}

/// The frames' memory of a new segment, being reserved in the background
/// (from [`Segment::create_reserving_frames_later`]).
#[derive(Debug)]
#[must_use = "wait for the reservation before publishing"]
pub struct Reservation {
    name: String,
    size: u64,
    handle: std::thread::JoinHandle<Result<(), Errno>>,
}

impl Reservation {
    /// Waits until the frames' memory is reserved: a full /dev/shm is
    /// [`SegmentError::NoSpace`] here.
    pub fn wait(self) -> Result<(), SegmentError> {
        match self.handle.join() {
            Ok(r) => r.map_err(|e| reserve_error(&self.name, self.size, e)),
            Err(_) => Err(io(&self.name, "posix_fallocate", Errno::EIO)),
        }
    }
}

/// A mapped ring segment. Cheap to share between threads (`Arc<Segment>`).
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    geometry: Geometry,
    name: String,
    file: File,
}

impl Segment {
    /// Creates a new segment of `shape` named `name`, refusing if one exists.
    ///
    /// The object is created owner-only (0600) and exclusively, sized, its
    /// memory reserved up front (so that a full /dev/shm is a clear error now,
    /// not a SIGBUS later), its header written with the version last, and only
    /// then given `mode`.
    pub fn create(name: &str, shape: Shape, mode: u32) -> Result<Segment, SegmentError> {
        let (seg, later) = Self::create_inner(name, shape, mode, false)?;
        debug_assert!(later.is_none());
        Ok(seg)
    }

    /// Like [`create`](Self::create), but reserves only the control area
    /// (everything before the frames) before returning; the frames' memory
    /// is reserved by a background thread while the caller starts filling
    /// slots (reserving 8 × 2.3 MB costs ~5 ms, a quarter of the time to the
    /// first frame). The caller must [`wait`](Reservation::wait) for the
    /// [`Reservation`] before it publishes anything.
    ///
    /// Free space is checked first, as in `create`; a slot written before
    /// its pages are reserved simply has them allocated on first touch, so
    /// only another process filling /dev/shm within those milliseconds can
    /// still turn a write into SIGBUS (which the binaries report, exit 5).
    pub fn create_reserving_frames_later(
        name: &str,
        shape: Shape,
        mode: u32,
    ) -> Result<(Segment, Option<Reservation>), SegmentError> {
        Self::create_inner(name, shape, mode, true)
    }

    fn create_inner(
        name: &str,
        shape: Shape,
        mode: u32,
        frames_later: bool,
    ) -> Result<(Segment, Option<Reservation>), SegmentError> {
        validate_name(name)?;
        let geometry = Geometry::compute(shape).map_err(|e| SegmentError::Corrupt {
            name: name.into(),
            reason: e.to_string(),
        })?;
        let needed = geometry.total_size;
        if let Some(available) = shm_free_bytes() {
            if available < needed {
                return Err(SegmentError::NoSpace {
                    name: name.into(),
                    needed,
                    available,
                });
            }
        }
        let fd = nix::sys::mman::shm_open(
            format!("/{name}").as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| match e {
            Errno::EEXIST => SegmentError::Exists { name: name.into() },
            Errno::EACCES => SegmentError::PermissionDenied {
                name: name.into(),
                mode: mode_of(name),
            },
            e => io(name, "shm_open", e),
        })?;
        let file = File::from(fd);
        let result = Self::init(name, file, geometry, mode, frames_later);
        if result.is_err() {
            let _ = Self::unlink(name);
        }
        result
    }

    fn init(
        name: &str,
        file: File,
        geometry: Geometry,
        mode: u32,
        frames_later: bool,
    ) -> Result<(Segment, Option<Reservation>), SegmentError> {
        let size = geometry.total_size;
        file.set_len(size).map_err(|e| io(name, "ftruncate", e))?;
        let now = if frames_later {
            geometry.off_data.min(size)
        } else {
            size
        };
        reserve(&file, 0, now).map_err(|e| reserve_error(name, size, e))?;
        let later = if now < size {
            let dup = file.try_clone().map_err(|e| io(name, "dup", e))?;
            let handle = std::thread::Builder::new()
                .name("framering-reserve".into())
                .spawn(move || reserve(&dup, now, size - now))
                .map_err(|e| io(name, "spawn", e))?;
            Some(Reservation {
                name: name.into(),
                size,
                handle,
            })
        } else {
            None
        };
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|e| io(name, "mmap", e))?;
        let seg = Segment {
            map,
            geometry,
            name: name.into(),
            file,
        };
        let hdr = seg.map.as_mut_ptr() as *mut Header;
        let mut version = [0u8; 16];
        let v = env!("CARGO_PKG_VERSION").as_bytes();
        version[..v.len().min(16)].copy_from_slice(&v[..v.len().min(16)]);
        // SAFETY: the mapping is at least one page (Geometry puts the data
        // after PAGE) and page-aligned, so `hdr` is valid and aligned for a
        // Header. We created the object exclusively with mode 0600 and have
        // not published the version, so no conforming process reads these
        // plain fields yet; raw-pointer writes create no references.
        unsafe {
            std::ptr::addr_of_mut!((*hdr).magic).write_volatile(MAGIC);
            std::ptr::addr_of_mut!((*hdr).header_bytes).write_volatile(size_of::<Header>() as u32);
            std::ptr::addr_of_mut!((*hdr).crate_version).write_volatile(version);
            std::ptr::addr_of_mut!((*hdr).geometry).write_volatile(geometry);
        }
        // Release: publishes the fields above to an opener's Acquire load.
        seg.header()
            .layout_version
            .store(LAYOUT_VERSION, Ordering::Release);
        nix::sys::stat::fchmod(seg.file.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| io(name, "fchmod", e))?;
        Ok((seg, later))
    }

    /// Opens an existing segment and validates it before anything else is
    /// read: size, magic, version, and a geometry that must equal the one
    /// recomputed from its own shape and match the file's real size.
    pub fn open(name: &str) -> Result<Segment, SegmentError> {
        Self::open_with(name, true)
    }

    /// Like [`open`](Self::open), but maps the segment read-only: for
    /// inspection tools, which then cannot change it even by mistake (a
    /// store through any accessor would fault). Needs only read permission.
    pub fn open_read_only(name: &str) -> Result<Segment, SegmentError> {
        Self::open_with(name, false)
    }

    fn open_with(name: &str, writable: bool) -> Result<Segment, SegmentError> {
        validate_name(name)?;
        let flags = if writable {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        let fd = nix::sys::mman::shm_open(format!("/{name}").as_str(), flags, Mode::empty())
                .map_err(|e| match e {
                    Errno::ENOENT => SegmentError::NotFound { name: name.into() },
                    Errno::EACCES | Errno::EPERM => SegmentError::PermissionDenied {
                        name: name.into(),
                        mode: mode_of(name),
                    },
                    e => io(name, "shm_open", e),
                })?;
        let file = File::from(fd);
        let size = file.metadata().map_err(|e| io(name, "fstat", e))?.len();
        if size == 0 {
            return Err(SegmentError::NotReady { name: name.into() });
        }
        if size < PAGE {
            return Err(SegmentError::Corrupt {
                name: name.into(),
                reason: format!("file is {size} bytes, smaller than a header"),
            });
        }
        if size > isize::MAX as u64 {
            return Err(SegmentError::Corrupt {
                name: name.into(),
                reason: format!("file is {size} bytes"),
            });
        }
        let mut opts = MmapOptions::new();
        opts.len(size as usize);
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| io(name, "mmap", e))?;
        let hdr = map.as_ptr() as *const Header;
        // Acquire: pairs with the creator's Release store of the version.
        // SAFETY: the mapping is at least PAGE bytes and page-aligned; an
        // AtomicU32 is valid for any bit pattern.
        let version =
            unsafe { (*std::ptr::addr_of!((*hdr).layout_version)).load(Ordering::Acquire) };
        // SAFETY: in bounds (first bytes of the mapping). A volatile copy: a
        // peer racing with us can only change what we read, and we validate
        // the copy, never the shared bytes.
        let magic = unsafe { std::ptr::addr_of!((*hdr).magic).read_volatile() };
        if magic != MAGIC {
            if version == 0 && magic == [0; 8] {
                return Err(SegmentError::NotReady { name: name.into() });
            }
            return Err(SegmentError::BadMagic { name: name.into() });
        }
        if version == 0 {
            return Err(SegmentError::NotReady { name: name.into() });
        }
        if version != LAYOUT_VERSION {
            return Err(SegmentError::Version {
                name: name.into(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        // SAFETY: as for `magic`; Geometry is plain integers, valid for any bits.
        let (geometry, header_bytes) = unsafe {
            (
                std::ptr::addr_of!((*hdr).geometry).read_volatile(),
                std::ptr::addr_of!((*hdr).header_bytes).read_volatile(),
            )
        };
        let corrupt = |reason: String| SegmentError::Corrupt {
            name: name.into(),
            reason,
        };
        if header_bytes != size_of::<Header>() as u32 {
            return Err(corrupt(format!("header size {header_bytes}")));
        }
        let expected = Geometry::compute(geometry.shape())
            .map_err(|e| corrupt(format!("impossible shape in header: {e}")))?;
        if expected != geometry {
            return Err(corrupt(
                "header offsets disagree with its own shape".to_string(),
            ));
        }
        if geometry.total_size != size {
            return Err(corrupt(format!(
                "header says {} bytes but the file has {size}",
                geometry.total_size
            )));
        }
        Ok(Segment {
            map,
            geometry,
            name: name.into(),
            file,
        })
    }

    /// Removes the name from /dev/shm (mappings stay valid until unmapped).
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        validate_name(name)?;
        nix::sys::mman::shm_unlink(format!("/{name}").as_str()).map_err(|e| match e {
            Errno::ENOENT => SegmentError::NotFound { name: name.into() },
            e => io(name, "shm_unlink", e),
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated layout (a local copy, never re-read from the segment).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

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
    pub fn header(&self) -> &Header {
        &self.region::<Header>(0, 1)[0]
    }

    /// The group table.
    pub fn groups(&self) -> &[GroupEntry] {
        self.region(self.geometry.off_groups, self.geometry.max_groups as usize)
    }

    /// Cells of group `group`'s ready queue. Panics if `group` is not below
    /// `max_groups`.
    pub fn ready_cells(&self, group: usize) -> &[AtomicU64] {
        assert!(group < self.geometry.max_groups as usize);
        let cap = self.geometry.ready_cap as u64;
        self.region(
            self.geometry.off_ready_cells + group as u64 * cap * 8,
            cap as usize,
        )
    }

    /// Group `group`'s claim word for every slot (see [`crate::slot`]).
    /// Panics if `group` is not below `max_groups`.
    pub fn claims(&self, group: usize) -> &[AtomicU64] {
        assert!(group < self.geometry.max_groups as usize);
        let n = self.geometry.slots as u64;
        self.region(self.geometry.off_claims + group as u64 * n * 8, n as usize)
    }

    /// The producer's word per slot: free, writing, or published (as
    /// `Ready { pos: seq }`); see [`crate::slot`]. Informational.
    pub fn slot_states(&self) -> &[AtomicU64] {
        self.region(self.geometry.off_slot_state, self.geometry.slots as usize)
    }

    /// Per-slot frame metadata.
    pub fn slot_meta(&self) -> &[SlotMeta] {
        self.region(self.geometry.off_slot_meta, self.geometry.slots as usize)
    }

    /// The consumer table.
    pub fn consumers(&self) -> &[ConsumerEntry] {
        self.region(
            self.geometry.off_consumers,
            self.geometry.max_consumers as usize,
        )
    }

    /// Cells of consumer `index`'s return queue. Panics if `index` is not
    /// below `max_consumers`.
    pub fn return_cells(&self, index: usize) -> &[AtomicU32] {
        assert!(index < self.geometry.max_consumers as usize);
        let cap = self.geometry.return_cap as u64;
        self.region(
            self.geometry.off_return_cells + index as u64 * cap * 4,
            cap as usize,
        )
    }

    fn frame_ptr(&self, slot: u32) -> *mut u8 {
        assert!(slot < self.geometry.slots, "slot index out of range");
        let off = self.geometry.frame_offset(slot);
        debug_assert!(off + self.geometry.frame_bytes <= self.map.len() as u64);
        // SAFETY: `slot < slots`, so the frame lies inside the mapping (the
        // geometry was checked against the mapping's size); `add` stays in
        // the same allocation.
        unsafe { self.map.as_mut_ptr().add(off as usize) }
    }

    /// The bytes of frame `slot` (H×W×C, row-major). Panics if `slot` is out
    /// of range.
    ///
    /// # Safety
    ///
    /// The caller must own the slot for reading (its ownership word names this
    /// process as reader) for as long as the slice lives, so that no
    /// conforming process writes the frame meanwhile.
    pub unsafe fn frame(&self, slot: u32) -> &[u8] {
        let p = self.frame_ptr(slot);
        // SAFETY: in bounds (see `frame_ptr`); no conforming writer while the
        // caller owns the slot (the caller's contract); u8 has no invalid values.
        unsafe { std::slice::from_raw_parts(p, self.geometry.frame_bytes as usize) }
    }

    /// The bytes of frame `slot`, writable. Panics if `slot` is out of range.
    ///
    /// # Safety
    ///
    /// The caller must own the slot exclusively (the producer, between taking
    /// it from its free pool and publishing it) for as long as the slice
    /// lives, and must not create two slices of the same slot at once.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame_mut(&self, slot: u32) -> &mut [u8] {
        let p = self.frame_ptr(slot);
        // SAFETY: in bounds (see `frame_ptr`); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(p, self.geometry.frame_bytes as usize) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    pub(crate) fn test_name(tag: &str) -> String {
        format!("framering-test-{tag}-{}", std::process::id())
    }

    fn shape() -> Shape {
        Shape {
            slots: 4,
            height: 8,
            width: 16,
            channels: 3,
            max_consumers: 4,
            max_groups: 2,
        }
    }

    #[test]
    fn names_are_validated() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            &"x".repeat(201),
            ".hidden",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("cam-0_main.v2").unwrap();
    }

    #[test]
    fn create_open_and_refuse_duplicates() {
        let name = test_name("seg");
        let _ = Segment::unlink(&name);
        let seg = Segment::create(&name, shape(), 0o600).unwrap();
        assert!(matches!(
            Segment::create(&name, shape(), 0o600),
            Err(SegmentError::Exists { .. })
        ));
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.geometry(), seg.geometry());
        let mode = std::fs::metadata(format!("{SHM_DIR}/{name}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        Segment::unlink(&name).unwrap();
        assert!(matches!(
            Segment::open(&name),
            Err(SegmentError::NotFound { .. })
        ));
    }

    /// Both ways of creating reserve the whole segment in /dev/shm: at once,
    /// or the control area at once and the frames by the time the
    /// reservation is waited for. The segment is usable before that.
    #[test]
    fn memory_is_reserved_now_or_by_the_reservation() {
        use std::os::unix::fs::MetadataExt;
        let big = Shape {
            slots: 8,
            height: 720,
            width: 1080,
            ..shape()
        };
        let reserved = |name: &str| {
            std::fs::metadata(format!("{SHM_DIR}/{name}")).unwrap().blocks() * 512
        };
        let name = test_name("reserve-now");
        let _ = Segment::unlink(&name);
        let seg = Segment::create(&name, big, 0o600).unwrap();
        assert!(reserved(&name) >= seg.geometry().total_size);
        Segment::unlink(&name).unwrap();

        let name = test_name("reserve-later");
        let _ = Segment::unlink(&name);
        let (seg, later) = Segment::create_reserving_frames_later(&name, big, 0o600).unwrap();
        let g = seg.geometry();
        assert!(g.off_data < g.total_size);
        assert!(reserved(&name) >= g.off_data, "control area reserved at once");
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.geometry(), g);
        later.expect("frames reserved in the background").wait().unwrap();
        assert!(reserved(&name) >= g.total_size);
        Segment::unlink(&name).unwrap();
    }

    #[test]
    fn garbage_headers_are_refused() {
        let name = test_name("garbage");
        let _ = Segment::unlink(&name);
        let seg = Segment::create(&name, shape(), 0o600).unwrap();
        let path = format!("{SHM_DIR}/{name}");
        let good = std::fs::read(&path).unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![];
        let mut b = good.clone();
        b[0] ^= 1;
        cases.push(("magic", b));
        let mut b = good.clone();
        b[8] = 99;
        cases.push(("version", b));
        let mut b = good.clone();
        b[8..12].copy_from_slice(&0u32.to_ne_bytes());
        cases.push(("not ready", b));
        let mut b = good.clone();
        b[32 + 8] = 200; // slots
        cases.push(("slots", b));
        let mut b = good.clone();
        b[32 + 120] ^= 0x40; // off_data
        cases.push(("offset", b));
        let mut b = good.clone();
        b.truncate(good.len() - 4096);
        cases.push(("truncated", b));
        cases.push(("tiny", vec![1, 2, 3]));
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let e = Segment::open(&name).expect_err(what);
            assert!(
                matches!(
                    e,
                    SegmentError::BadMagic { .. }
                        | SegmentError::Version { .. }
                        | SegmentError::NotReady { .. }
                        | SegmentError::Corrupt { .. }
                ),
                "{what}: {e}"
            );
        }
        drop(seg);
        Segment::unlink(&name).unwrap();
    }
}
