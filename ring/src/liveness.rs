//! Liveness that crosses PID namespaces: open-file-description locks.
//!
//! A pid means nothing to a process in another PID namespace (a container
//! sharing /dev/shm, `unshare -p`), and `/proc` there shows other
//! processes, or none. What every process sharing the segment can test is a
//! lock the kernel holds for a live process and drops when it dies: an
//! open-file-description lock (`fcntl(F_OFD_SETLK)`, Linux ≥ 3.15) on one
//! byte of the segment file. The producer holds byte [`PRODUCER_BYTE`];
//! consumer table entry `c` is held through byte [`consumer_byte`]`(c)`.
//! The locks are advisory and cover bytes nobody reads through them (the
//! frames are reached through the mapping), and they belong to the open file
//! description of the holder's [`crate::segment::Segment`], so they live
//! exactly as long as its mapping's file: released at exit, however the
//! process ends. Tested with `F_OFD_GETLK`, which needs no write access:
//! read-only inspection tools can test them too.
//!
//! A consumer locks an entry's byte *before* claiming the entry (the CAS on
//! its owner word), so an owner word is never visible without its lock; the
//! pid recorded beside it is for display only. Where the file system does
//! not support these locks, every call reports [`Lock::Unsupported`] and
//! callers fall back to pid + start-time checks ([`crate::process`]).

use crate::layout::FLAG_LIVENESS_LOCK;
use crate::process::ProcessId;
use crate::segment::Segment;
use crate::sync::Ordering;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use std::fs::File;
use std::os::fd::AsRawFd;

/// The byte the producer holds.
pub(crate) const PRODUCER_BYTE: u64 = 0;

/// The byte the owner of consumer table entry `c` holds.
pub(crate) const fn consumer_byte(c: usize) -> u64 {
    1 + c as u64
}

/// What a lock call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Taken by us (`try_lock`), or held by a live process (`probe`).
    Held,
    /// Held by another open file description (`try_lock`), or by nobody
    /// (`probe`).
    Other,
    /// These locks do not work here: fall back to pids.
    Unsupported,
}

fn request(kind: libc::c_int, byte: u64) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: byte as libc::off_t,
        l_len: 1,
        // Must be 0 for OFD locks.
        l_pid: 0,
    }
}

/// Takes the write lock on `byte` without waiting: [`Lock::Held`] if we
/// have it now, [`Lock::Other`] if another open file description holds it.
/// `file` must be open for writing.
pub(crate) fn try_lock(file: &File, byte: u64) -> Lock {
    let req = request(libc::F_WRLCK, byte);
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_SETLK(&req)) {
        Ok(_) => Lock::Held,
        Err(Errno::EAGAIN | Errno::EACCES) => Lock::Other,
        Err(e) => {
            tracing::debug!(error = %e, "open-file-description locks unsupported: liveness by pid");
            Lock::Unsupported
        }
    }
}

/// Drops our lock on `byte` (nothing if we do not hold it).
pub(crate) fn unlock(file: &File, byte: u64) {
    let req = request(libc::F_UNLCK, byte);
    let _ = fcntl(file.as_raw_fd(), FcntlArg::F_OFD_SETLK(&req));
}

/// Whether some *other* open file description holds `byte`: [`Lock::Held`]
/// (its holder is alive), [`Lock::Other`] (nobody holds it), or
/// [`Lock::Unsupported`].
pub(crate) fn probe(file: &File, byte: u64) -> Lock {
    let mut req = request(libc::F_WRLCK, byte);
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut req)) {
        Ok(_) if req.l_type == libc::F_UNLCK as libc::c_short => Lock::Other,
        Ok(_) => Lock::Held,
        Err(_) => Lock::Unsupported,
    }
}

/// Whether the producer of `seg` is alive: its lock is held, or, where
/// locks do not work, the pid and start time in the header name a running
/// process.
pub(crate) fn producer_alive(seg: &Segment) -> bool {
    let locked = seg.header().flags.load(Ordering::Acquire) & FLAG_LIVENESS_LOCK != 0;
    match probe(seg.file(), PRODUCER_BYTE) {
        Lock::Held => true,
        // Nobody holds it: dead, if it ever held it.
        Lock::Other if locked => false,
        Lock::Other | Lock::Unsupported => {
            let h = seg.header();
            let p = ProcessId {
                pid: h.producer_pid.load(Ordering::Acquire),
                start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
            };
            p.pid != 0 && p.is_alive()
        }
    }
}

/// Whether the owner of consumer entry `c` (owner word `owner`, not 0) is
/// alive, by its lock or, where locks do not work, its pid.
pub(crate) fn consumer_alive(seg: &Segment, c: usize, owner: u64) -> bool {
    // Relaxed: written before the owner CAS we acquired when reading `owner`.
    let locked = seg.consumers()[c].liveness_lock.load(Ordering::Relaxed) == 1;
    match probe(seg.file(), consumer_byte(c)) {
        Lock::Held => true,
        // Nobody holds it: dead, if its owner took it.
        Lock::Other if locked => false,
        Lock::Other | Lock::Unsupported => ProcessId::owner_word_alive(owner),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_seen_by_another_description_and_released_with_it() {
        let path = std::env::temp_dir().join(format!("framering-lock-{}", std::process::id()));
        let open = || {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let (a, b) = (open(), open());
        assert_eq!(probe(&b, 5), Lock::Other);
        assert_eq!(try_lock(&a, 5), Lock::Held);
        // Another open file description of the same process conflicts.
        assert_eq!(probe(&b, 5), Lock::Held);
        assert_eq!(try_lock(&b, 5), Lock::Other);
        assert_eq!(probe(&b, 6), Lock::Other);
        // A read-only description can test it.
        let ro = File::open(&path).unwrap();
        assert_eq!(probe(&ro, 5), Lock::Held);
        drop(a);
        // A child that another test thread forks at this moment holds a
        // copy of `a`'s descriptor until its exec closes it (O_CLOEXEC), and
        // with it the description and its lock: wait for that, boundedly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while probe(&b, 5) == Lock::Held && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(probe(&b, 5), Lock::Other);
        assert_eq!(try_lock(&b, 5), Lock::Held);
        unlock(&b, 5);
        assert_eq!(probe(&ro, 5), Lock::Other);
        std::fs::remove_file(&path).unwrap();
    }
}
