//! A read-only view of rings: slots by state, queue depths, the producer and
//! every consumer of one ring, with rates from two samples; the rings on this
//! host; removing those whose producer died.
//!
//! It reads only counters the processes keep in the segment anyway; it maps
//! the segment read-only (a store would fault, so it cannot change the ring
//! even by mistake), needs only read permission, and never holds a slot, so
//! watching a ring costs the pipeline nothing but a few cache-line reads per
//! refresh.
//!
//! ```
//! use framering_ring::{inspect::RingView, FrameShape, Producer};
//!
//! let ring = format!("doc-inspect-{}", std::process::id());
//! let producer = Producer::builder(&ring).shape(FrameShape::new(4, 4, 1)).create()?;
//! let view = RingView::open(&ring)?;
//! let status = view.snapshot();
//! assert_eq!((status.slots, status.slot_states.free), (8, 8));
//! assert!(status.producer.alive);
//! producer.unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{OpenError, SHM_DIR};
use crate::options::{Backpressure, InputState};
use crate::platform::clock::monotonic_ns;
use crate::platform::liveness;
use crate::platform::process::ProcessId;
use crate::platform::segment::{Occupied, Segment};
use crate::protocol::layout::{
    BACKPRESSURE_DROP_OLDEST, FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_RUNNING, GROUP_DECLARED,
    GROUP_LINGERING, GROUP_UNUSED, JOIN_ACTIVE, JOIN_LEAVING, JOIN_LEAVING_FAILED, JOIN_REFUSED,
};
use crate::protocol::ledger::unpack_return;
use crate::protocol::roster::load_name;
use crate::protocol::slot::SlotState;
use crate::protocol::sync::Ordering;
use crate::shape::FrameShape;
use std::time::Duration;

/// Slots by ownership state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotCounts {
    /// In the producer's free pool.
    pub free: u32,
    /// Being filled by the producer.
    pub writing: u32,
    /// Published, not being read by any group yet.
    pub ready: u32,
    /// Being read by a consumer of at least one group.
    pub reading: u32,
    /// Handed back by every consumer that read it, not yet collected by the
    /// producer (it collects when its free pool runs out).
    pub returned: u32,
    /// Words no process of this layout writes.
    pub corrupt: u32,
}

/// The producer.
#[derive(Debug, Clone)]
pub struct ProducerStatus {
    /// Process id.
    pub pid: u32,
    /// Whether that process (same start time) still runs.
    pub alive: bool,
    /// What it last did (a dead producer's: what it was doing when it died).
    pub state: ProducerState,
    /// Frames published.
    pub published: u64,
    /// Frames re-published after their consumer died.
    pub redelivered: u64,
    /// Inputs skipped ([`Producer::count_skipped_input`](crate::Producer::count_skipped_input)).
    pub skipped: u64,
    /// Frames dropped unconsumed.
    pub dropped: u64,
    /// Frames per second between the two samples.
    pub fps: f64,
    /// What it says its input is doing
    /// ([`Producer::set_input_state`](crate::Producer::set_input_state)):
    /// [`InputState::Waiting`] means it waits for a camera or a pipe, not for
    /// consumers.
    pub input: InputState,
}

/// What a ring's producer last did, as [`RingView::snapshot`] reads it.
/// Its `Display` is the words `framering status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProducerState {
    /// Publishing (or waiting to).
    Running,
    /// It ended the stream; consumers take what is left.
    EndOfStream,
    /// Every frame came back after the end of the stream.
    Drained,
    /// Neither running nor ended (it exited without ending the stream).
    Stopped,
    /// It died while running.
    DiedWhileRunning,
    /// It died after ending the stream, before it drained.
    DiedAfterEndOfStream,
}

impl std::fmt::Display for ProducerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProducerState::Running => "running",
            ProducerState::EndOfStream => "end-of-stream",
            ProducerState::Drained => "drained",
            ProducerState::Stopped => "stopped",
            ProducerState::DiedWhileRunning => "died while running",
            ProducerState::DiedAfterEndOfStream => "died after the end of stream",
        })
    }
}

/// Where a consumer is in joining its group (the roster handshake). Its
/// `Display` is the word `framering status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinState {
    /// Asked to join; the producer has not admitted it yet.
    Joining,
    /// A member of its group.
    Active,
    /// Leaving its group.
    Leaving,
    /// The producer refused it (its group table is full).
    Refused,
}

impl std::fmt::Display for JoinState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinState::Joining => "joining",
            JoinState::Active => "active",
            JoinState::Leaving => "leaving",
            JoinState::Refused => "refused",
        })
    }
}

/// One attached consumer.
#[derive(Debug, Clone)]
pub struct ConsumerStatus {
    /// Its index in the consumer table.
    pub index: usize,
    /// Process id.
    pub pid: u32,
    /// Whether it still runs.
    pub alive: bool,
    /// Index of its group in the group table.
    pub group: u32,
    /// Its group's name (empty until the producer admitted it).
    pub group_name: String,
    /// Where it is in joining its group.
    pub state: JoinState,
    /// Frames skipped to stay on the newest (`--latest`).
    pub skipped: u64,
    /// Frames taken.
    pub frames: u64,
    /// Frames per second between the two samples.
    pub fps: f64,
    /// Slots it holds now.
    pub slots_held: u32,
    /// Seconds since the oldest frame it holds was published (`None`: it
    /// holds none). A frame a user keeps alive (a numpy view in Python)
    /// shows here.
    pub oldest_held_age_s: Option<f64>,
    /// Seconds since its last sign of life.
    pub heartbeat_age_s: f64,
    /// Frames published but not yet taken by its group (consumers of a
    /// group share the queue, so they share this figure).
    pub lag_frames: u64,
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct GroupStatus {
    /// Index in the group table.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Declared by the producer (kept without consumers) or ad hoc.
    pub declared: bool,
    /// Drop-oldest (a live group: never slows the producer) or lossless.
    pub live: bool,
    /// Its last consumer died: how long it still keeps its frames for a
    /// consumer that restarts.
    pub lingering: Option<std::time::Duration>,
    /// Consumers in it.
    pub members: u32,
    /// Frames published into it.
    pub delivered: u64,
    /// Frames it lost (dropped unconsumed, or released when it emptied).
    pub dropped: u64,
    /// Entries in its ready queue (frames waiting; some may be stale).
    pub queue_depth: u64,
    /// Slots published to it that it has not taken.
    pub ready: u32,
    /// Slots its consumers are reading.
    pub reading: u32,
    /// Slots its consumers handed back, not yet collected.
    pub returned: u32,
}

/// One sample of a ring: everything `framering status` shows.
#[derive(Debug, Clone)]
pub struct RingStatus {
    /// Ring name.
    pub name: String,
    /// Slot count.
    pub slots: u32,
    /// Frame height.
    pub height: u32,
    /// Frame width.
    pub width: u32,
    /// Channels.
    pub channels: u32,
    /// The element type of the frames.
    pub dtype: crate::shape::Dtype,
    /// Bytes of user metadata each frame has room for.
    pub user_meta_bytes: u32,
    /// Slots by state.
    pub slot_states: SlotCounts,
    /// The ring's default backpressure (each group has its own: see
    /// [`GroupStatus::live`]).
    pub backpressure: Backpressure,
    /// Most entries of any group's ready queue (frames waiting).
    pub queue_depth: u64,
    /// Consumer groups in use.
    pub groups: Vec<GroupStatus>,
    /// The producer.
    pub producer: ProducerStatus,
    /// Attached consumers.
    pub consumers: Vec<ConsumerStatus>,
}

impl GroupStatus {
    /// Frames published to the group that it has not handed back to the
    /// producer yet: [`ready`](Self::ready) + [`reading`](Self::reading) +
    /// [`returned`](Self::returned).
    pub fn unconsumed(&self) -> u32 {
        self.ready + self.reading + self.returned
    }
}

/// A ring mapped read-only, for inspection.
#[derive(Debug)]
pub struct RingView {
    seg: Segment,
}

impl RingView {
    /// Maps the ring `name` read-only (needs read permission only).
    pub fn open(name: &str) -> Result<RingView, OpenError> {
        Ok(RingView {
            seg: Segment::open_read_only(name)?,
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The frames' shape.
    pub fn shape(&self) -> FrameShape {
        self.seg.geometry().frame_shape()
    }

    /// One sample of the ring (rates are zero: see [`sample`](Self::sample)).
    pub fn snapshot(&self) -> RingStatus {
        snapshot(&self.seg)
    }

    /// Samples the ring twice, `interval` apart, and returns the second
    /// sample with rates computed from the difference.
    pub fn sample(&self, interval: Duration) -> RingStatus {
        sample(&self.seg, interval)
    }

    /// The producer's pid, and whether that very process (same start time)
    /// still runs.
    pub fn producer(&self) -> (u32, bool) {
        let p = producer_of(&self.seg);
        (p.pid, p.pid != 0 && liveness::producer_alive(&self.seg))
    }
}

fn producer_of(seg: &Segment) -> ProcessId {
    let h = seg.header();
    ProcessId {
        pid: h.producer_pid.load(Ordering::Acquire),
        start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
    }
}

/// The names of the files in /dev/shm, sorted: rings and anything else
/// (open each with [`RingView::open`]; other programs' files give
/// [`OpenError::NotARing`]).
pub fn shm_names() -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(SHM_DIR)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    Ok(v)
}

/// What [`remove_if_abandoned`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The ring's producer is dead: the ring was removed.
    Removed {
        /// The dead producer's pid.
        pid: u32,
    },
    /// The ring's producer is alive: the ring was left alone.
    Kept {
        /// The live producer's pid.
        pid: u32,
    },
}

/// Removes the ring `name` if its producer is dead (a leftover of a crash);
/// leaves it if the producer runs. Consumers still attached keep their
/// mapping.
///
/// Judged and removed holding the producer's lock, as a producer reclaiming
/// the name does, so a ring that another producer replaces meanwhile is
/// never removed. Needs write access to the ring.
pub fn remove_if_abandoned(name: &str) -> Result<Removal, OpenError> {
    let old = match Segment::occupy(name)? {
        Occupied::Gone => return Err(OpenError::NotFound { name: name.into() }),
        // A live producer, or one creating or reclaiming the ring now.
        Occupied::Owned | Occupied::Reclaiming => {
            let pid = Segment::open_read_only(name)
                .map(|seg| producer_of(&seg).pid)
                .unwrap_or(0);
            return Ok(Removal::Kept { pid });
        }
        Occupied::Locked(old) => old,
    };
    let seg = old.ring()?;
    let p = producer_of(&seg);
    if !old.locked() && p.pid != 0 && liveness::producer_alive(&seg) {
        return Ok(Removal::Kept { pid: p.pid });
    }
    drop(seg);
    match old.remove()? {
        true => Ok(Removal::Removed { pid: p.pid }),
        false => Err(OpenError::NotFound { name: name.into() }),
    }
}

pub(crate) fn snapshot(seg: &Segment) -> RingStatus {
    let g = seg.geometry();
    let h = seg.header();
    let slots = g.slots as usize;
    // Returned but not yet collected: (group, slot) pairs in return queues.
    let mut returned = vec![0u64; slots];
    for c in 0..g.max_consumers as usize {
        for v in seg.return_queue(c).pending() {
            let (grp, s) = unpack_return(v);
            if let Some(r) = returned.get_mut(s) {
                *r |= 1u64.checked_shl(grp as u32).unwrap_or(0);
            }
        }
    }
    let mut groups: Vec<GroupStatus> = seg
        .groups()
        .iter()
        .enumerate()
        // In use, or gone with frames it lost (until its entry is reused).
        .filter(|(_, e)| {
            e.state.load(Ordering::Acquire) != GROUP_UNUSED || e.dropped.load(Ordering::Relaxed) > 0
        })
        .map(|(index, e)| {
            let (name, len) = load_name(&e.name);
            GroupStatus {
                index,
                name: String::from_utf8_lossy(&name[..len]).into_owned(),
                declared: e.state.load(Ordering::Relaxed) == GROUP_DECLARED,
                live: e.policy.load(Ordering::Relaxed) == BACKPRESSURE_DROP_OLDEST,
                lingering: (e.state.load(Ordering::Relaxed) == GROUP_LINGERING).then(|| {
                    std::time::Duration::from_nanos(
                        e.linger_until_ns
                            .load(Ordering::Relaxed)
                            .saturating_sub(crate::platform::clock::monotonic_ns()),
                    )
                }),
                members: e.members.load(Ordering::Relaxed),
                delivered: e.delivered.load(Ordering::Relaxed),
                dropped: e.dropped.load(Ordering::Relaxed),
                queue_depth: e.ready.len(),
                ready: 0,
                reading: 0,
                returned: 0,
            }
        })
        .collect();
    let mut counts = SlotCounts::default();
    let mut held = vec![0u32; g.max_consumers as usize];
    // Publish time of the oldest frame each consumer holds.
    let mut oldest = vec![u64::MAX; g.max_consumers as usize];
    for (s, w) in seg.slot_states().iter().enumerate() {
        match SlotState::decode(w.load(Ordering::Relaxed)) {
            Some(SlotState::Free) => counts.free += 1,
            Some(SlotState::Writing) => counts.writing += 1,
            Some(SlotState::Ready { .. }) => {
                let (mut ready, mut reading, mut back) = (false, false, false);
                for gs in &mut groups {
                    match SlotState::decode(seg.claims(gs.index)[s].load(Ordering::Relaxed)) {
                        Some(SlotState::Ready { .. }) => {
                            ready = true;
                            gs.ready += 1;
                        }
                        Some(SlotState::Reading { .. }) if returned[s] & (1 << gs.index) != 0 => {
                            back = true;
                            gs.returned += 1;
                        }
                        Some(SlotState::Reading { owner, .. }) => {
                            reading = true;
                            gs.reading += 1;
                            if let Some(n) = held.get_mut(owner as usize) {
                                *n += 1;
                                let published =
                                    seg.slot_meta()[s].publish_ns.load(Ordering::Relaxed);
                                let o = &mut oldest[owner as usize];
                                *o = (*o).min(published);
                            }
                        }
                        Some(_) => {}
                        None => counts.corrupt += 1,
                    }
                }
                if reading {
                    counts.reading += 1;
                } else if ready || !back {
                    counts.ready += 1;
                } else {
                    counts.returned += 1;
                }
            }
            Some(SlotState::Reading { .. }) | None => counts.corrupt += 1,
        }
    }
    let producer = producer_of(seg);
    let producer_alive = producer.pid != 0 && liveness::producer_alive(seg);
    let flags = h.flags.load(Ordering::Acquire);
    // The flags say what the producer last did; a dead one's are history.
    let state = match (producer_alive, flags) {
        (_, f) if f & FLAG_DRAINED != 0 => ProducerState::Drained,
        (true, f) if f & FLAG_END_OF_STREAM != 0 => ProducerState::EndOfStream,
        (false, f) if f & FLAG_END_OF_STREAM != 0 => ProducerState::DiedAfterEndOfStream,
        (true, f) if f & FLAG_RUNNING != 0 => ProducerState::Running,
        (false, f) if f & FLAG_RUNNING != 0 => ProducerState::DiedWhileRunning,
        _ => ProducerState::Stopped,
    };
    let now = monotonic_ns();
    let queue_depth = groups.iter().map(|g| g.queue_depth).max().unwrap_or(0);
    let consumers = seg
        .consumers()
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let owner = e.owner.load(Ordering::Acquire);
            if owner == 0 {
                return None;
            }
            let join = e.join.load(Ordering::Acquire);
            let group = e.group.load(Ordering::Relaxed);
            let grp = (join == JOIN_ACTIVE)
                .then(|| groups.iter().find(|g| g.index == group as usize))
                .flatten();
            Some(ConsumerStatus {
                index,
                pid: owner as u32,
                alive: liveness::consumer_alive(seg, index, owner),
                group,
                group_name: grp.map(|g| g.name.clone()).unwrap_or_default(),
                state: match join {
                    JOIN_ACTIVE => JoinState::Active,
                    JOIN_LEAVING | JOIN_LEAVING_FAILED => JoinState::Leaving,
                    JOIN_REFUSED => JoinState::Refused,
                    _ => JoinState::Joining,
                },
                skipped: e.skipped.load(Ordering::Relaxed),
                frames: e.frames.load(Ordering::Relaxed),
                fps: 0.0,
                slots_held: held[index],
                oldest_held_age_s: (oldest[index] != u64::MAX)
                    .then(|| now.saturating_sub(oldest[index]) as f64 / 1e9),
                heartbeat_age_s: now.saturating_sub(e.heartbeat_ns.load(Ordering::Relaxed)) as f64
                    / 1e9,
                lag_frames: grp.map_or(0, |g| g.queue_depth),
            })
        })
        .collect();
    RingStatus {
        name: seg.name().to_string(),
        slots: g.slots,
        height: g.height,
        width: g.width,
        channels: g.channels,
        dtype: g.frame_shape().dtype,
        user_meta_bytes: g.user_meta_bytes,
        slot_states: counts,
        backpressure: if h.backpressure.load(Ordering::Relaxed) == BACKPRESSURE_DROP_OLDEST {
            Backpressure::DropOldest
        } else {
            Backpressure::Block
        },
        queue_depth,
        groups,
        producer: ProducerStatus {
            pid: producer.pid,
            alive: producer_alive,
            state,
            published: h.published.load(Ordering::Relaxed),
            redelivered: h.redelivered.load(Ordering::Relaxed),
            skipped: h.skipped.load(Ordering::Relaxed),
            dropped: h.dropped.load(Ordering::Relaxed),
            fps: 0.0,
            input: if h.waiting_input.load(Ordering::Relaxed) == 1 {
                InputState::Waiting
            } else {
                InputState::Reading
            },
        },
        consumers,
    }
}

fn sample(seg: &Segment, interval: Duration) -> RingStatus {
    let before = snapshot(seg);
    std::thread::sleep(interval);
    let mut now = snapshot(seg);
    let secs = interval.as_secs_f64().max(1e-3);
    now.producer.fps = now
        .producer
        .published
        .saturating_sub(before.producer.published) as f64
        / secs;
    for c in &mut now.consumers {
        if let Some(b) = before
            .consumers
            .iter()
            .find(|b| b.index == c.index && b.pid == c.pid)
        {
            c.fps = c.frames.saturating_sub(b.frames) as f64 / secs;
        }
    }
    now
}
