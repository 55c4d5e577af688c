//! The POSIX shared-memory segment of one ring: its file's lifecycle
//! (creation, reclaiming a dead producer's, validated opening, unlinking)
//! and its mapping. The typed views of the mapped regions are in
//! [`crate::platform::views`].
//!
//! This module, [`crate::platform::views`], [`crate::platform::slot_maps`]
//! (a detachable consumer's own mappings of its slots) and
//! [`crate::platform::futex`] hold all of the ring's `unsafe` code. The
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
//! must not write it.

use crate::error::{CreateError, InvalidName, OpenError, PublishError, SHM_DIR};
use crate::platform::file_lock::{self, Lock};
use crate::protocol::layout::{
    Geometry, Header, RingSpec, LAYOUT_VERSION, MAGIC, PAGE, PRODUCER_LOCK_BYTE, RECLAIM_LOCK_BYTE,
    RING_NAME_MAX,
};
use crate::protocol::sync::Ordering;
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::fs::File;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Checks a ring name: it becomes a file name under /dev/shm, never a path.
pub(crate) fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= RING_NAME_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_string()))
    }
}

fn open_io(name: &str, op: &'static str, e: impl Into<std::io::Error>) -> OpenError {
    OpenError::Io {
        name: name.to_string(),
        op,
        source: e.into(),
    }
}

fn create_io(name: &str, op: &'static str, e: impl Into<std::io::Error>) -> CreateError {
    CreateError::Io {
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
pub(crate) fn shm_free_bytes() -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(SHM_DIR).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

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

fn reserve_error(name: &str, size: u64, e: Errno) -> PublishError {
    match e {
        Errno::ENOSPC => PublishError::NoSpace {
            name: name.into(),
            needed: size,
            available: shm_free_bytes().unwrap_or(0),
        },
        e => PublishError::Io {
            name: name.into(),
            source: e.into(),
        },
    }
}

/// The frames' memory of a new segment, reserved in the background once
/// [`start`](Self::start)ed (from [`Segment::create_reserving_frames_later`]).
#[derive(Debug)]
#[must_use = "start the reservation, and collect its outcome"]
pub(crate) struct Reservation {
    name: String,
    size: u64,
    state: Reserving,
}

#[derive(Debug)]
enum Reserving {
    /// `len` bytes at `offset` of `file` (a duplicate descriptor) to reserve.
    NotStarted {
        file: File,
        offset: u64,
        len: u64,
    },
    Running(std::thread::JoinHandle<Result<(), Errno>>),
}

impl Reservation {
    /// Starts reserving in a thread of its own (at once, in this thread, if
    /// no thread can be made); again: nothing.
    pub(crate) fn start(&mut self) {
        let Reserving::NotStarted { file, offset, len } = &self.state else {
            return;
        };
        let (offset, len) = (*offset, *len);
        let Ok(file) = file.try_clone() else {
            return; // `wait` reserves it then.
        };
        if let Ok(handle) = std::thread::Builder::new()
            .name("framering-reserve".into())
            .spawn(move || reserve(&file, offset, len))
        {
            self.state = Reserving::Running(handle);
        }
    }

    /// Whether the reservation ended ([`wait`](Self::wait) then returns at
    /// once).
    pub(crate) fn is_finished(&self) -> bool {
        match &self.state {
            Reserving::NotStarted { .. } => false,
            Reserving::Running(handle) => handle.is_finished(),
        }
    }

    /// A running reservation that ends with the outcome `outcome` receives
    /// (or success if its sender is dropped): for tests of what waits for
    /// it.
    #[cfg(test)]
    pub(crate) fn pending(
        name: &str,
        size: u64,
        outcome: std::sync::mpsc::Receiver<Result<(), Errno>>,
    ) -> Reservation {
        Reservation {
            name: name.into(),
            size,
            state: Reserving::Running(std::thread::spawn(move || outcome.recv().unwrap_or(Ok(())))),
        }
    }

    /// Waits until the frames' memory is reserved (reserving it here if it
    /// was not started): a full /dev/shm is [`PublishError::NoSpace`] here.
    pub(crate) fn wait(self) -> Result<(), PublishError> {
        let r = match self.state {
            Reserving::NotStarted { file, offset, len } => reserve(&file, offset, len),
            Reserving::Running(handle) => handle.join().unwrap_or(Err(Errno::EIO)),
        };
        r.map_err(|e| reserve_error(&self.name, self.size, e))
    }
}

/// Why [`Segment::create`] did not create a segment.
#[derive(Debug)]
pub(crate) enum CreateFailure {
    /// An object of that name exists (maybe a dead producer's: reclaimable).
    Exists,
    /// Anything else.
    Error(CreateError),
}

impl From<CreateError> for CreateFailure {
    fn from(e: CreateError) -> Self {
        CreateFailure::Error(e)
    }
}

/// A mapped ring segment.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Read through the typed views ([`crate::platform::views`]).
    pub(super) map: MmapRaw,
    pub(super) geometry: Geometry,
    name: String,
    file: File,
}

/// How long a new ring may stay empty or blank while its producer writes
/// its header (microseconds in practice); past that, such a file is not
/// a ring.
pub(crate) const INIT_GRACE: Duration = Duration::from_secs(10);

impl Segment {
    /// The segment's file (for the liveness locks, [`crate::platform::liveness`]).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Creates a new segment of `spec` named `name`, refusing if one exists.
    ///
    /// The object is created owner-only (0600) and exclusively, sized, its
    /// memory reserved up front (so that a full /dev/shm is a clear error now,
    /// not a SIGBUS later), its header written, then `init` runs (the
    /// producer writes its identity, groups and policy), and only then is the
    /// layout version published and the object given `mode`: an opener never
    /// sees a header without its producer.
    #[cfg(test)]
    pub(crate) fn create(
        name: &str,
        spec: RingSpec,
        mode: u32,
        init: impl FnOnce(&Segment),
    ) -> Result<Segment, CreateFailure> {
        let (seg, later) = Self::create_inner(name, spec, mode, false, init)?;
        debug_assert!(later.is_none());
        Ok(seg)
    }

    /// Like [`create`](Self::create), but reserves only the control area
    /// (everything before the frames) before returning; the frames' memory
    /// is reserved by a background thread that the caller
    /// [`start`](Reservation::start)s once its first frame is out
    /// (reserving 8 × 2.3 MB takes 5–15 ms of a loaded 2-core machine, more
    /// than decoding the first frame, which it would slow down), and whose
    /// outcome it collects ([`wait`](Reservation::wait)) once it
    /// [`is_finished`](Reservation::is_finished), without waiting for it.
    ///
    /// Free space is checked first, as in `create`; a slot written before
    /// its pages are reserved simply has them allocated on first touch, so
    /// only another process filling /dev/shm within those milliseconds can
    /// still turn a write into SIGBUS (which the binaries report, exit 5).
    pub(crate) fn create_reserving_frames_later(
        name: &str,
        spec: RingSpec,
        mode: u32,
        init: impl FnOnce(&Segment),
    ) -> Result<(Segment, Option<Reservation>), CreateFailure> {
        Self::create_inner(name, spec, mode, true, init)
    }

    fn create_inner(
        name: &str,
        spec: RingSpec,
        mode: u32,
        frames_later: bool,
        init: impl FnOnce(&Segment),
    ) -> Result<(Segment, Option<Reservation>), CreateFailure> {
        validate_name(name).map_err(CreateError::from)?;
        let geometry = Geometry::compute(spec).map_err(|source| CreateError::Shape {
            name: name.into(),
            source,
        })?;
        let needed = geometry.total_size;
        if let Some(available) = shm_free_bytes() {
            if available < needed {
                return Err(CreateError::NoSpace {
                    name: name.into(),
                    needed,
                    available,
                }
                .into());
            }
        }
        let fd = nix::sys::mman::shm_open(
            format!("/{name}").as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| match e {
            Errno::EEXIST => CreateFailure::Exists,
            Errno::EACCES => CreateError::PermissionDenied {
                name: name.into(),
                mode: mode_of(name),
            }
            .into(),
            e => create_io(name, "shm_open", e).into(),
        })?;
        let file = File::from(fd);
        let id = FileId::of(&file).map_err(|e| create_io(name, "fstat", e))?;
        // The producer's lock first, before the file has a size: from now on
        // no reclaimer (which must hold it to remove a name, see
        // [`Occupant`]) can take the name from under us. A reclaimer that
        // opened the file in the microseconds since `shm_open` may hold the
        // lock for a moment; it lets go at once of a file this young.
        let deadline = Instant::now() + Duration::from_secs(2);
        while file_lock::try_lock(&file, PRODUCER_LOCK_BYTE) == Lock::Other {
            if Instant::now() >= deadline {
                return Err(create_io(name, "lock", Errno::EAGAIN).into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let result = Self::init(name, file, geometry, mode, frames_later, init);
        if result.is_err() {
            // Still ours (we hold the lock): remove what we half made.
            let _ = remove_if_same(name, id);
        }
        Ok(result?)
    }

    fn init(
        name: &str,
        file: File,
        geometry: Geometry,
        mode: u32,
        frames_later: bool,
        init: impl FnOnce(&Segment),
    ) -> Result<(Segment, Option<Reservation>), CreateError> {
        let size = geometry.total_size;
        file.set_len(size)
            .map_err(|e| create_io(name, "ftruncate", e))?;
        let now = if frames_later {
            geometry.off_data.min(size)
        } else {
            size
        };
        reserve(&file, 0, now).map_err(|e| match e {
            Errno::ENOSPC => CreateError::NoSpace {
                name: name.into(),
                needed: size,
                available: shm_free_bytes().unwrap_or(0),
            },
            e => create_io(name, "posix_fallocate", e),
        })?;
        let later = if now < size {
            let dup = file.try_clone().map_err(|e| create_io(name, "dup", e))?;
            Some(Reservation {
                name: name.into(),
                size,
                state: Reserving::NotStarted {
                    file: dup,
                    offset: now,
                    len: size - now,
                },
            })
        } else {
            None
        };
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|e| create_io(name, "mmap", e))?;
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
        // The creator's own fields (producer identity, groups, policy).
        init(&seg);
        // Release: publishes everything above to an opener's Acquire load.
        seg.header()
            .layout_version
            .store(LAYOUT_VERSION, Ordering::Release);
        nix::sys::stat::fchmod(seg.file.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| create_io(name, "fchmod", e))?;
        Ok((seg, later))
    }

    /// Opens an existing segment and validates it before anything else is
    /// read: size, magic, version, and a geometry that must equal the one
    /// recomputed from its own shape and match the file's real size.
    pub(crate) fn open(name: &str) -> Result<Segment, OpenError> {
        Self::open_with(name, true)
    }

    /// Like [`open`](Self::open), but maps the segment read-only: for
    /// inspection, which then cannot change it even by mistake (a store
    /// through any accessor would fault). Needs only read permission.
    pub(crate) fn open_read_only(name: &str) -> Result<Segment, OpenError> {
        Self::open_with(name, false)
    }

    /// Whether /dev/shm/`name` is what a creator that died before writing
    /// the header leaves: empty, or at least a page long with a blank first
    /// page, and older than [`INIT_GRACE`] (a fresh file may be a ring being
    /// created right now by another producer).
    pub(crate) fn is_blank(name: &str) -> bool {
        use std::io::Read;
        let Ok(file) = File::open(format!("{SHM_DIR}/{name}")) else {
            return false;
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|a| a > INIT_GRACE);
        if !old || (meta.len() != 0 && meta.len() < PAGE) {
            return false;
        }
        let mut first = Vec::with_capacity(PAGE as usize);
        match file.take(PAGE).read_to_end(&mut first) {
            Ok(_) => first.iter().all(|&b| b == 0),
            Err(_) => false,
        }
    }

    fn open_with(name: &str, writable: bool) -> Result<Segment, OpenError> {
        Self::from_file(name, open_file(name, writable)?, writable)
    }

    /// Validates and maps `file`, the object named `name`.
    fn from_file(name: &str, file: File, writable: bool) -> Result<Segment, OpenError> {
        let meta = file.metadata().map_err(|e| open_io(name, "fstat", e))?;
        let size = meta.len();
        // A ring is empty, or all zeros, only for the moments between its
        // creation and its header being written; an empty or blank file
        // older than that is another program's (or a producer that died
        // before writing anything: nothing of ours is in it either way).
        let not_ready = || {
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
            if age.is_some_and(|a| a > INIT_GRACE) {
                OpenError::NotARing { name: name.into() }
            } else {
                OpenError::NotReady { name: name.into() }
            }
        };
        if size == 0 {
            return Err(not_ready());
        }
        // A ring is sized in one step to at least a header page plus its
        // frames: anything smaller is not one.
        if size < PAGE {
            return Err(OpenError::NotARing { name: name.into() });
        }
        if size > isize::MAX as u64 {
            return Err(OpenError::Corrupt {
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
        .map_err(|e| open_io(name, "mmap", e))?;
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
                return Err(not_ready());
            }
            return Err(OpenError::NotARing { name: name.into() });
        }
        if version == 0 {
            return Err(OpenError::NotReady { name: name.into() });
        }
        if version != LAYOUT_VERSION {
            return Err(OpenError::Version {
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
        let corrupt = |reason: String| OpenError::Corrupt {
            name: name.into(),
            reason,
        };
        if header_bytes != size_of::<Header>() as u32 {
            return Err(corrupt(format!("header size {header_bytes}")));
        }
        let expected = Geometry::compute(geometry.spec())
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

    /// Removes the name from /dev/shm if it still names this segment (a
    /// later producer's ring of the same name is left alone). Mappings stay
    /// valid until unmapped.
    pub(crate) fn unlink_own(&self) -> Result<(), OpenError> {
        let id = FileId::of(&self.file).map_err(|e| open_io(&self.name, "fstat", e))?;
        match remove_if_same(&self.name, id)? {
            true => Ok(()),
            false => Err(OpenError::NotFound {
                name: self.name.clone(),
            }),
        }
    }

    /// Opens the object named `name` read-write and tries to take its
    /// reclaimer's lock, then its producer's: see [`Occupant`].
    pub(crate) fn occupy(name: &str) -> Result<Occupied, OpenError> {
        let file = match open_file(name, true) {
            Ok(f) => f,
            Err(OpenError::NotFound { .. }) => return Ok(Occupied::Gone),
            Err(e) => return Err(e),
        };
        let id = FileId::of(&file).map_err(|e| open_io(name, "fstat", e))?;
        if file_lock::try_lock(&file, RECLAIM_LOCK_BYTE) == Lock::Other {
            return Ok(Occupied::Reclaiming);
        }
        Ok(match file_lock::try_lock(&file, PRODUCER_LOCK_BYTE) {
            // (Dropping `file` releases our reclaimer's lock.)
            Lock::Other => Occupied::Owned,
            lock => Occupied::Locked(Occupant {
                name: name.into(),
                file,
                id,
                locked: lock == Lock::Held,
            }),
        })
    }

    /// Removes the name from /dev/shm (mappings stay valid until unmapped).
    #[cfg(test)]
    pub(crate) fn unlink(name: &str) -> Result<(), OpenError> {
        validate_name(name)?;
        nix::sys::mman::shm_unlink(format!("/{name}").as_str()).map_err(|e| match e {
            Errno::ENOENT => OpenError::NotFound { name: name.into() },
            e => open_io(name, "shm_unlink", e),
        })
    }

    /// The ring's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The validated layout (a local copy, never re-read from the segment).
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Mapped length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Address of the first byte of the mapping (identifies the mapping in
    /// the producer's write tokens).
    pub(crate) fn base_addr(&self) -> usize {
        self.map.as_ptr() as usize
    }
}

/// Opens the object named `name` (read-write or read-only).
fn open_file(name: &str, writable: bool) -> Result<File, OpenError> {
    validate_name(name)?;
    let flags = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    let fd = nix::sys::mman::shm_open(format!("/{name}").as_str(), flags, Mode::empty()).map_err(
        |e| match e {
            Errno::ENOENT => OpenError::NotFound { name: name.into() },
            Errno::EACCES | Errno::EPERM => OpenError::PermissionDenied {
                name: name.into(),
                mode: mode_of(name),
            },
            e => open_io(name, "shm_open", e),
        },
    )?;
    Ok(File::from(fd))
}

/// Which file an open descriptor, or a name, refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(file: &File) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Removes /dev/shm/`name` if it is still the file `id`: `Ok(false)` if the
/// name is gone or names another file now.
///
/// The check and the unlink are two calls; what makes them one step is the
/// protocol: the caller holds the lock of `id` ([`PRODUCER_LOCK_BYTE`]),
/// which anyone removing a name must hold, and nobody can create a file
/// under an existing name, so the name cannot change in between.
fn remove_if_same(name: &str, id: FileId) -> Result<bool, OpenError> {
    use std::os::unix::fs::MetadataExt;
    validate_name(name)?;
    let named = match std::fs::metadata(format!("{SHM_DIR}/{name}")) {
        Ok(m) => FileId {
            dev: m.dev(),
            ino: m.ino(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(open_io(name, "stat", e)),
    };
    if named != id {
        return Ok(false);
    }
    match nix::sys::mman::shm_unlink(format!("/{name}").as_str()) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(open_io(name, "shm_unlink", e)),
    }
}

/// What [`Segment::occupy`] found under a name.
#[derive(Debug)]
pub(crate) enum Occupied {
    /// Nothing (any more).
    Gone,
    /// Another reclaimer is judging it right now: wait for its verdict.
    Reclaiming,
    /// Its producer holds the producer's lock: alive, or still creating its
    /// ring. Never ours to remove.
    Owned,
    /// We hold its locks.
    Locked(Occupant),
}

/// An existing object of a ring's name, open read-write, whose reclaimer's
/// and producer's locks ([`RECLAIM_LOCK_BYTE`], [`PRODUCER_LOCK_BYTE`]) we
/// hold (or which is on a file system without such locks).
///
/// Every producer takes that lock on its new file before it gives the file
/// a size and holds it until it exits; anyone who removes a name must hold
/// it. So while an `Occupant` lives, its producer is dead (or, where locks
/// do not work, must be judged by pid), no other reclaimer can remove the
/// name, and nobody can create another ring under it: judging the object and
/// removing it ([`remove`](Self::remove)) is one step with respect to every
/// other creator and reclaimer. Dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Occupant {
    name: String,
    file: File,
    id: FileId,
    /// The lock is really held (not merely unsupported).
    locked: bool,
}

impl Occupant {
    /// Opens and validates the object as a ring, as [`Segment::open`] does
    /// (through the same open file description: the lock stays ours).
    pub(crate) fn ring(&self) -> Result<Segment, OpenError> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| open_io(&self.name, "dup", e))?;
        Segment::from_file(&self.name, file, true)
    }

    /// Whether we really hold the lock (false: locks are unsupported here,
    /// and liveness must be judged by pid).
    pub(crate) fn locked(&self) -> bool {
        self.locked
    }

    /// How long since the object was last modified.
    pub(crate) fn age(&self) -> Option<std::time::Duration> {
        self.file.metadata().ok()?.modified().ok()?.elapsed().ok()
    }

    /// Whether the object is empty, or at least a page long with its first
    /// page all zeros: what a creator that died before writing its header
    /// leaves (or another program's blank file).
    pub(crate) fn is_blank(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(len) = self.file.metadata().map(|m| m.len()) else {
            return false;
        };
        if len == 0 {
            return true;
        }
        if len < PAGE {
            return false;
        }
        let mut first = vec![0u8; PAGE as usize];
        self.file
            .read_exact_at(&mut first, 0)
            .is_ok_and(|()| first.iter().all(|&b| b == 0))
    }

    /// Removes the name, if it still names this object: `Ok(false)` if it
    /// is gone or names another file now.
    pub(crate) fn remove(self) -> Result<bool, OpenError> {
        remove_if_same(&self.name, self.id)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    pub(crate) fn test_name(tag: &str) -> String {
        format!("framering-test-{tag}-{}", std::process::id())
    }

    fn shape() -> RingSpec {
        RingSpec {
            slots: 4,
            height: 8,
            width: 16,
            channels: 3,
            dtype: 0,
            user_meta_bytes: 256,
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
        let seg = Segment::create(&name, shape(), 0o600, |_| {}).unwrap();
        assert!(matches!(
            Segment::create(&name, shape(), 0o600, |_| {}),
            Err(CreateFailure::Exists)
        ));
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.geometry(), seg.geometry());
        let mode = std::fs::metadata(format!("{SHM_DIR}/{name}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        Segment::unlink(&name).unwrap();
        assert!(matches!(
            Segment::open(&name),
            Err(OpenError::NotFound { .. })
        ));
    }

    /// Both ways of creating reserve the whole segment in /dev/shm: at once,
    /// or the control area at once and the frames by the time the
    /// reservation is waited for. The segment is usable before that.
    #[test]
    fn memory_is_reserved_now_or_by_the_reservation() {
        use std::os::unix::fs::MetadataExt;
        let big = RingSpec {
            slots: 8,
            height: 720,
            width: 1080,
            ..shape()
        };
        let reserved = |name: &str| {
            std::fs::metadata(format!("{SHM_DIR}/{name}"))
                .unwrap()
                .blocks()
                * 512
        };
        let name = test_name("reserve-now");
        let _ = Segment::unlink(&name);
        let seg = Segment::create(&name, big, 0o600, |_| {}).unwrap();
        assert!(reserved(&name) >= seg.geometry().total_size);
        Segment::unlink(&name).unwrap();

        let name = test_name("reserve-later");
        let _ = Segment::unlink(&name);
        let (seg, later) =
            Segment::create_reserving_frames_later(&name, big, 0o600, |_| {}).unwrap();
        let g = seg.geometry();
        assert!(g.off_data < g.total_size);
        assert!(
            reserved(&name) >= g.off_data,
            "control area reserved at once"
        );
        let other = Segment::open(&name).unwrap();
        assert_eq!(other.geometry(), g);
        later
            .expect("frames reserved in the background")
            .wait()
            .unwrap();
        assert!(reserved(&name) >= g.total_size);
        Segment::unlink(&name).unwrap();
    }

    #[test]
    fn garbage_headers_are_refused() {
        let name = test_name("garbage");
        let _ = Segment::unlink(&name);
        let seg = Segment::create(&name, shape(), 0o600, |_| {}).unwrap();
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
                    OpenError::NotARing { .. }
                        | OpenError::Version { .. }
                        | OpenError::NotReady { .. }
                        | OpenError::Corrupt { .. }
                ),
                "{what}: {e}"
            );
        }
        drop(seg);
        Segment::unlink(&name).unwrap();
    }

    /// Other programs' files in /dev/shm are "not a ring", never a corrupt
    /// or initialising one (so `list` and `clean` leave them out); only a
    /// fresh empty or blank file may be a ring being created.
    #[test]
    fn foreign_files_are_not_rings() {
        let name = test_name("foreign");
        let path = format!("{SHM_DIR}/{name}");
        let old = std::time::SystemTime::now() - 2 * INIT_GRACE;
        let cases: [(&str, Vec<u8>, bool); 5] = [
            ("small", vec![7; 100], false),
            ("page of text", b"hello ".repeat(1000), false),
            ("old empty", vec![], true),
            ("old blank", vec![0; 2 * PAGE as usize], true),
            ("fresh small", vec![7; 100], false),
        ];
        for (what, bytes, age) in cases {
            std::fs::write(&path, &bytes).unwrap();
            if age {
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(old).unwrap();
            }
            let e = Segment::open(&name).expect_err(what);
            assert!(matches!(e, OpenError::NotARing { .. }), "{what}: {e}");
        }
        // A fresh empty file may be a ring its producer is creating.
        std::fs::write(&path, b"").unwrap();
        let e = Segment::open(&name).expect_err("fresh empty");
        assert!(matches!(e, OpenError::NotReady { .. }), "fresh empty: {e}");
        Segment::unlink(&name).unwrap();
    }
}

/// Property test over arbitrary bytes: a segment another process left or
/// scribbled over must never make `open` panic or accept a geometry that does
/// not fit the file.
#[cfg(all(test, not(loom)))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn name(tag: &str) -> String {
        format!("framering-fuzz-{tag}-{}", std::process::id())
    }

    fn valid_segment_bytes() -> Vec<u8> {
        let n = name("template");
        let _ = Segment::unlink(&n);
        let spec = RingSpec {
            slots: 3,
            height: 8,
            width: 8,
            channels: 3,
            dtype: 0,
            user_meta_bytes: 256,
            max_consumers: 2,
            max_groups: 2,
        };
        let seg = Segment::create(&n, spec, 0o600, |_| {}).unwrap();
        let bytes = std::fs::read(format!("{SHM_DIR}/{n}")).unwrap();
        drop(seg);
        Segment::unlink(&n).unwrap();
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn opening_garbage_is_an_error_never_a_panic(
            random in proptest::collection::vec(any::<u8>(), 0..3 * 4096),
            flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
            truncate in any::<bool>(),
            cut in 0usize..32 * 1024,
            use_random in any::<bool>(),
        ) {
            let n = name("open");
            let path = format!("{SHM_DIR}/{n}");
            let bytes = if use_random {
                random
            } else {
                // A valid segment with a few header bytes changed, maybe cut short.
                let mut b = valid_segment_bytes();
                for (at, v) in flips {
                    b[at % 512] = v;
                }
                if truncate {
                    b.truncate(cut.min(b.len()));
                }
                b
            };
            std::fs::write(&path, &bytes).unwrap();
            match Segment::open(&n) {
                Ok(seg) => {
                    // Accepted: then everything it says must fit the file.
                    prop_assert_eq!(seg.geometry().total_size, bytes.len() as u64);
                    prop_assert!(seg.len() == bytes.len());
                    let groups = seg.geometry().max_groups as usize;
                    let _ = seg.slot_states().len() + seg.consumers().len() + seg.groups().len()
                        + seg.ready_cells(groups - 1).len() + seg.claims(groups - 1).len();
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}
