//! Open-file-description locks (`fcntl(F_OFD_SETLK)`) on single bytes of a
//! file: the platform call under [`crate::platform::liveness`] (who is alive) and under
//! the segment's create/reclaim protocol (who may remove a name).
//!
//! Such a lock belongs to an open file description, not to a process or a
//! descriptor: it conflicts with every other description of the same file,
//! whatever process or PID namespace holds it, and the kernel drops it when
//! the last descriptor of its description closes — however the holder ends.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use std::fs::File;
use std::os::fd::AsRawFd;

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
