//! The receiver's position in the remote stream, kept beside its ring
//! (`/dev/shm/<ring>.bridge-pos`) so that a receiver restarted after a
//! crash (SIGKILL) resumes where the dead one was: it asks the sender for
//! what follows, and counts what the sender no longer has as `remote_gap`.
//!
//! Before each frame is published the receiver writes (one `pwrite`) the
//! frame it is about to publish, the one before it, and the ring's publish
//! count once it is published. The ring's own counter is the commit: after
//! a crash, the dead receiver's ring (still in /dev/shm until the new one
//! reclaims it) says whether that frame made it in.

use framering_ring::inspect::RingView;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

const MAGIC: [u8; 4] = *b"FRBP";
const VERSION: u8 = 1;
const LEN: usize = 64;

/// Where a receiver is in a sender's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The sender's stream id.
    pub stream: u64,
    /// The last seq of it in the ring.
    pub seq: u64,
}

/// The position file of one ring.
#[derive(Debug)]
pub struct PositionFile {
    file: File,
    path: PathBuf,
    /// This receiver's id (kept across restarts).
    pub receiver: u64,
    buf: [u8; LEN],
}

/// What a previous receiver of this ring left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    receiver: u64,
    ring_pid: u32,
    stream: u64,
    prev: Option<u64>,
    seq: u64,
    published_after: u64,
}

impl Record {
    fn encode(&self, out: &mut [u8; LEN]) {
        out.fill(0);
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.prev.is_some() as u8;
        out[8..16].copy_from_slice(&self.receiver.to_le_bytes());
        out[16..20].copy_from_slice(&self.ring_pid.to_le_bytes());
        out[24..32].copy_from_slice(&self.stream.to_le_bytes());
        out[32..40].copy_from_slice(&self.prev.unwrap_or(0).to_le_bytes());
        out[40..48].copy_from_slice(&self.seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.published_after.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<Record> {
        if b.len() != LEN || b[..4] != MAGIC || b[4] != VERSION || b[5] > 1 {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Record {
            receiver: u64_at(8),
            ring_pid: u32::from_le_bytes(b[16..20].try_into().unwrap_or([0; 4])),
            stream: u64_at(24),
            prev: (b[5] == 1).then(|| u64_at(32)),
            seq: u64_at(40),
            published_after: u64_at(48),
        })
    }
}

fn path_of(ring: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{ring}.bridge-pos"))
}

/// A receiver id nobody else is likely to have: time, pid and the
/// process's random hasher keys.
fn new_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::app::clock::realtime_ns());
    h.write_u32(std::process::id());
    h.finish()
}

impl PositionFile {
    /// Reads what a dead receiver of `ring` left (before the ring is
    /// created again: its publish count tells whether the last frame made
    /// it in) and opens the file for this one.
    pub fn open(ring: &str) -> anyhow::Result<(PositionFile, Option<Position>)> {
        let path = path_of(ring);
        let old = std::fs::read(&path).ok().and_then(|b| Record::decode(&b));
        let position = old.and_then(|r| {
            // The dead receiver's ring: whether its last frame was published.
            let published = RingView::open(ring).ok().and_then(|v| {
                let p = v.snapshot().producer;
                (p.pid == r.ring_pid && !p.alive).then_some(p.published)
            });
            let seq = match published {
                Some(n) if n >= r.published_after => Some(r.seq),
                // Not published, or the ring is gone (its frames cannot be
                // checked): the one before (a frame twice rather than lost).
                _ => r.prev,
            };
            seq.map(|seq| Position {
                stream: r.stream,
                seq,
            })
        });
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let receiver = old.map(|r| r.receiver).unwrap_or_else(new_id);
        if let Some(p) = position {
            tracing::info!(
                stream = format_args!("{:016x}", p.stream),
                seq = p.seq,
                "resuming where the previous receiver of this ring was"
            );
        }
        let mut f = PositionFile {
            file,
            path,
            receiver,
            buf: [0; LEN],
        };
        f.write(Record {
            receiver,
            ring_pid: 0,
            stream: position.map_or(0, |p| p.stream),
            prev: position.map(|p| p.seq),
            seq: 0,
            published_after: u64::MAX,
        })?;
        Ok((f, position))
    }

    fn write(&mut self, r: Record) -> anyhow::Result<()> {
        r.encode(&mut self.buf);
        self.file
            .write_all_at(&self.buf, 0)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))
    }

    /// Notes, before publishing it, that `seq` of `stream` becomes the
    /// ring's `published_after`-th frame; `prev` is the position before it.
    pub fn intend(
        &mut self,
        stream: u64,
        prev: Option<u64>,
        seq: u64,
        published_after: u64,
    ) -> anyhow::Result<()> {
        self.write(Record {
            receiver: self.receiver,
            ring_pid: std::process::id(),
            stream,
            prev,
            seq,
            published_after,
        })
    }

    /// Removes the file (the ring was removed: nothing to resume).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_position_record_round_trips_and_refuses_garbage() {
        let r = Record {
            receiver: 0xdead_beef,
            ring_pid: 4242,
            stream: 7,
            prev: Some(40),
            seq: 41,
            published_after: 12,
        };
        let mut b = [0; LEN];
        r.encode(&mut b);
        assert_eq!(Record::decode(&b), Some(r));
        let none = Record { prev: None, ..r };
        none.encode(&mut b);
        assert_eq!(Record::decode(&b), Some(none));
        assert_eq!(Record::decode(&b[..LEN - 1]), None);
        b[0] = b'X';
        assert_eq!(Record::decode(&b), None);
    }
}
