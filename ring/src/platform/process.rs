//! Process identity that survives pid reuse: pid plus the process's start
//! time (field 22 of `/proc/PID/stat`, in clock ticks since boot).
//!
//! A pid alone is not an identity: after a crash the kernel may hand the same
//! pid to an unrelated process. Every owner recorded in the segment is a
//! [`ProcessId`], and a peer is alive only if a process with that pid exists,
//! is not a zombie, and started at the same tick.

use std::fs;

/// A process, identified by pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcessId {
    /// Process id.
    pub(crate) pid: u32,
    /// Start time in clock ticks after boot.
    pub(crate) start_ticks: u64,
}

struct Stat {
    state: u8,
    start_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    use std::io::{Read, Write};
    if pid == 0 {
        return None;
    }
    // Allocation-free (the producer calls this periodically on its hot
    // path): the path and the file's contents live on the stack.
    let mut path = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut path[..]);
    write!(cursor, "/proc/{pid}/stat").ok()?;
    let len = cursor.position() as usize;
    let path = std::str::from_utf8(&path[..len]).ok()?;
    let mut buf = [0u8; 1024];
    let mut file = fs::File::open(path).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let text = &buf[..n];
    // The command name (field 2) is in parentheses and may contain anything,
    // spaces and ')' included: the fields we want follow the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // Fields 4..=21 sit between the state (field 3) and starttime (field 22).
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

impl ProcessId {
    /// This process.
    pub(crate) fn current() -> Self {
        let pid = std::process::id();
        // Our own stat file always exists; the fallback only guards against a
        // /proc that is not mounted, where liveness checks degrade to pids.
        let start_ticks = read_stat(pid).map_or(0, |s| s.start_ticks);
        Self { pid, start_ticks }
    }

    /// The process running as `pid` now, if any.
    #[cfg(test)]
    pub(crate) fn of(pid: u32) -> Option<Self> {
        read_stat(pid).map(|s| Self {
            pid,
            start_ticks: s.start_ticks,
        })
    }

    /// Whether this very process is still running (a zombie is dead: it has
    /// exited, only its parent has not reaped it yet).
    pub(crate) fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(s) => s.start_ticks == self.start_ticks && !matches!(s.state, b'Z' | b'X' | b'x'),
            None => false,
        }
    }

    /// Packs pid and the low 32 bits of the start time into one word, so that
    /// an owner can be claimed with a single CAS. Never zero.
    pub(crate) fn owner_word(&self) -> u64 {
        (self.start_ticks << 32) | self.pid as u64
    }

    /// Whether `word` (from [`owner_word`](Self::owner_word)) names a live
    /// process.
    pub(crate) fn owner_word_alive(word: u64) -> bool {
        let pid = word as u32;
        match read_stat(pid) {
            Some(s) => {
                (s.start_ticks & 0xffff_ffff) == word >> 32
                    && !matches!(s.state, b'Z' | b'X' | b'x')
            }
            None => false,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_identity_is_stable() {
        let me = ProcessId::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_ticks > 0);
        assert!(me.is_alive());
        assert!(ProcessId::owner_word_alive(me.owner_word()));
        assert_eq!(ProcessId::of(me.pid), Some(me));
    }

    #[test]
    fn wrong_start_time_or_missing_pid_is_dead() {
        let me = ProcessId::current();
        let impostor = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(!ProcessId::owner_word_alive(impostor.owner_word()));
        assert!(!ProcessId {
            pid: u32::MAX - 1,
            start_ticks: 1
        }
        .is_alive());
    }

    #[test]
    fn reaped_child_is_dead_zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id());
        // Wait until it exits but is not reaped yet: a zombie.
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Some(id) = id {
            assert!(!id.is_alive(), "a zombie counts as dead");
        }
        child.wait().unwrap();
        if let Some(id) = id {
            assert!(!id.is_alive());
        }
    }
}
