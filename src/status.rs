//! A read-only view of a running ring: slots by state, queue depth, the
//! producer and every consumer, with rates from two samples.
//!
//! Reads only counters the processes keep in the segment anyway (see
//! [`crate::layout`]); it never writes the segment (open it with
//! [`Segment::open_read_only`]) and never holds a slot, so watching a ring
//! costs the pipeline nothing but a few cache-line reads per refresh.

use crate::clock::monotonic_ns;
use crate::layout::{FLAG_DRAINED, FLAG_END_OF_STREAM, FLAG_RUNNING};
use crate::process::ProcessId;
use crate::segment::Segment;
use crate::slot::SlotState;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Slots by ownership state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SlotCounts {
    /// In the producer's free pool.
    pub free: u32,
    /// Being filled by the producer.
    pub writing: u32,
    /// Published, not yet taken.
    pub ready: u32,
    /// Being read by a consumer.
    pub reading: u32,
    /// Handed back by a consumer, not yet collected by the producer (it
    /// collects when its free pool runs out).
    pub returned: u32,
    /// Words no process of this layout writes.
    pub corrupt: u32,
}

/// The producer.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerStatus {
    /// Process id.
    pub pid: u32,
    /// Whether that process (same start time) still runs.
    pub alive: bool,
    /// running, end-of-stream, drained or stopped.
    pub state: &'static str,
    /// Frames published.
    pub published: u64,
    /// Frames re-published after their consumer died.
    pub redelivered: u64,
    /// Inputs skipped.
    pub skipped: u64,
    /// Frames dropped unconsumed.
    pub dropped: u64,
    /// Frames per second between the two samples.
    pub fps: f64,
}

/// One attached consumer.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    /// Its index in the consumer table.
    pub index: usize,
    /// Process id.
    pub pid: u32,
    /// Whether it still runs.
    pub alive: bool,
    /// Consumer group (0 in this layout version).
    pub group: u32,
    /// Frames taken.
    pub frames: u64,
    /// Frames per second between the two samples.
    pub fps: f64,
    /// Slots it holds now.
    pub slots_held: u32,
    /// Seconds since its last sign of life.
    pub heartbeat_age_s: f64,
    /// Frames published but not yet taken by its group (consumers of a
    /// group share the queue, so they share this figure).
    pub lag_frames: u64,
}

/// Everything `framering status` shows.
#[derive(Debug, Clone, Serialize)]
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
    /// Slots by state.
    pub slot_states: SlotCounts,
    /// Entries between the ready queue's head and tail (frames waiting).
    pub queue_depth: u64,
    /// The producer.
    pub producer: ProducerStatus,
    /// Attached consumers.
    pub consumers: Vec<ConsumerStatus>,
}

/// One sample of the ring (rates are zero: see [`sample`]).
pub fn snapshot(seg: &Segment) -> RingStatus {
    let g = seg.geometry();
    let h = seg.header();
    let mut counts = SlotCounts::default();
    let mut held = vec![0u32; g.max_consumers as usize];
    for w in seg.slot_states() {
        match SlotState::decode(w.load(Ordering::Relaxed)) {
            Some(SlotState::Free) => counts.free += 1,
            Some(SlotState::Writing) => counts.writing += 1,
            Some(SlotState::Ready { .. }) => counts.ready += 1,
            Some(SlotState::Reading { owner, .. }) => {
                counts.reading += 1;
                if let Some(n) = held.get_mut(owner as usize) {
                    *n += 1;
                }
            }
            None => counts.corrupt += 1,
        }
    }
    let producer = ProcessId {
        pid: h.producer_pid.load(Ordering::Acquire),
        start_ticks: h.producer_start_ticks.load(Ordering::Relaxed),
    };
    let flags = h.flags.load(Ordering::Acquire);
    let state = if flags & FLAG_DRAINED != 0 {
        "drained"
    } else if flags & FLAG_END_OF_STREAM != 0 {
        "end-of-stream"
    } else if flags & FLAG_RUNNING != 0 {
        "running"
    } else {
        "stopped"
    };
    // A returned slot stays READING(consumer) until the producer collects it.
    for (c, e) in seg.consumers().iter().enumerate() {
        let pending = (e.ret.len() as u32).min(held[c]);
        held[c] -= pending;
        counts.reading -= pending;
        counts.returned += pending;
    }
    let now = monotonic_ns();
    let queue_depth = seg.ready_ctrl().len();
    let consumers = seg
        .consumers()
        .iter()
        .enumerate()
        .filter_map(|(index, e)| {
            let owner = e.owner.load(Ordering::Acquire);
            (owner != 0).then(|| ConsumerStatus {
                index,
                pid: owner as u32,
                alive: ProcessId::owner_word_alive(owner),
                group: e.group.load(Ordering::Relaxed),
                frames: e.frames.load(Ordering::Relaxed),
                fps: 0.0,
                slots_held: held[index],
                heartbeat_age_s: now.saturating_sub(e.heartbeat_ns.load(Ordering::Relaxed)) as f64
                    / 1e9,
                lag_frames: queue_depth,
            })
        })
        .collect();
    RingStatus {
        name: seg.name().to_string(),
        slots: g.slots,
        height: g.height,
        width: g.width,
        channels: g.channels,
        slot_states: counts,
        queue_depth,
        producer: ProducerStatus {
            pid: producer.pid,
            alive: producer.pid != 0 && producer.is_alive(),
            state,
            published: h.published.load(Ordering::Relaxed),
            redelivered: h.redelivered.load(Ordering::Relaxed),
            skipped: h.skipped.load(Ordering::Relaxed),
            dropped: h.dropped.load(Ordering::Relaxed),
            fps: 0.0,
        },
        consumers,
    }
}

/// Samples the ring twice, `interval` apart, and returns the second sample
/// with rates computed from the difference.
pub fn sample(seg: &Segment, interval: Duration) -> RingStatus {
    let before = snapshot(seg);
    std::thread::sleep(interval);
    let mut now = snapshot(seg);
    let secs = interval.as_secs_f64().max(1e-3);
    now.producer.fps = now.producer.published.saturating_sub(before.producer.published) as f64 / secs;
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

impl RingStatus {
    /// A `top`-like text rendering.
    pub fn render(&self) -> String {
        let s = &self.slot_states;
        let p = &self.producer;
        let mut out = format!(
            "ring {}: {} slots of {}x{}x{}\n\
             slots: {} free, {} writing, {} ready, {} reading, {} returned{}; queue depth {}\n\
             producer pid {} ({}) {}: {} published, {:.1} fps, {} redelivered, {} skipped, {} dropped\n",
            self.name,
            self.slots,
            self.height,
            self.width,
            self.channels,
            s.free,
            s.writing,
            s.ready,
            s.reading,
            s.returned,
            if s.corrupt > 0 { format!(", {} CORRUPT", s.corrupt) } else { String::new() },
            self.queue_depth,
            p.pid,
            if p.alive { "alive" } else { "dead" },
            p.state,
            p.published,
            p.fps,
            p.redelivered,
            p.skipped,
            p.dropped,
        );
        out += &format!(
            "{:>5} {:>8} {:>6} {:>6} {:>12} {:>10} {:>5} {:>10} {:>6}\n",
            "ENTRY", "PID", "ALIVE", "GROUP", "FRAMES", "FPS", "HELD", "HEARTBEAT", "LAG"
        );
        for c in &self.consumers {
            out += &format!(
                "{:>5} {:>8} {:>6} {:>6} {:>12} {:>10.1} {:>5} {:>9.1}s {:>6}\n",
                c.index,
                c.pid,
                if c.alive { "yes" } else { "no" },
                c.group,
                c.frames,
                c.fps,
                c.slots_held,
                c.heartbeat_age_s,
                c.lag_frames
            );
        }
        if self.consumers.is_empty() {
            out += "(no consumers attached)\n";
        }
        out
    }
}
