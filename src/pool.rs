//! The user API of the ring: a [`Producer`] that fills and publishes frames,
//! and [`Consumer`]s that take them in place and hand them back. The two
//! live in [`crate::producer`] and [`crate::consumer`]; this module holds
//! what they share.
//!
//! Ownership of a slot moves only through the slot word ([`crate::slot`]) and
//! the queues ([`crate::queue`]):
//!
//! ```text
//!                                          ┌▶ group 0: READY(pos) ──take (CAS)──▶ READING(c, pos) ─┐
//!  free pool ──acquire──▶ WRITING ──publish┤                                                       │
//!      ▲                                   └▶ group 1: READY(pos) ──take (CAS)──▶ READING(d, pos) ─┤
//!      └── when no group holds it ◀── collect (validates READING(c)) ◀── return queues ◀── drop(Frame)
//! ```
//!
//! The producer keeps its free slots in a LIFO stack, so the slot it fills
//! next is the one most recently handed back — still warm in the cache.
//!
//! A consumer that dies holding frames is noticed by the producer (its
//! process identity is gone: see [`crate::process`]); the producer collects
//! what it had returned and re-publishes every slot still marked as read by
//! it, with the same sequence number. Delivery is therefore at-least-once
//! across crashes and exactly-once without them.
//!
//! ```no_run
//! use framering::layout::Shape;
//! use framering::pool::{Consumer, FrameMeta, Producer, RingOptions, Take};
//! use std::time::Duration;
//!
//! let shape = Shape { slots: 4, height: 2, width: 2, channels: 3, max_consumers: 4, max_groups: 2 };
//! let mut producer = Producer::create("doc-ring", shape, &RingOptions::default())?;
//! let consumer = Consumer::attach("doc-ring", None, &RingOptions::default())?;
//!
//! let mut slot = producer.acquire(Duration::from_secs(1))?.expect("a free slot");
//! slot.data_mut().fill(7);
//! producer.publish(slot, &FrameMeta { src_width: 2, src_height: 2, name: b"seven" })?;
//!
//! match consumer.take(Duration::from_secs(1))? {
//!     Take::Frame(frame) => assert!(frame.data().iter().all(|&b| b == 7)),
//!     _ => unreachable!(),
//! }
//! # drop(consumer); producer.finish(); producer.unlink()?;
//! # Ok::<(), framering::pool::PoolError>(())
//! ```

pub use crate::consumer::{Consumer, Frame, Take};
pub use crate::producer::{GroupReport, Producer, WriteSlot};

use crate::event::WaitStrategy;
use crate::layout::{GROUP_NAME_MAX, NAME_MAX};
use crate::queue::{Corrupt, ReadyQueue, ReturnQueue};
use crate::segment::{Segment, SegmentError};
use crate::sync::{AtomicU64, Ordering};

/// Errors of the ring API.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Creating or opening the segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A shared structure holds garbage.
    #[error("ring {name:?}: {source}")]
    Corrupt {
        /// Ring name.
        name: String,
        /// What was wrong.
        source: Corrupt,
    },
    /// A live producer owns the ring.
    #[error("ring {name:?} is in use by a running producer (pid {pid}); stop it or choose another ring.name")]
    InUse {
        /// Ring name.
        name: String,
        /// The live producer.
        pid: u32,
    },
    /// The ring's frames are not the shape this process expects.
    #[error("ring {name:?} holds {ring_h}x{ring_w}x{ring_c} frames, but this consumer expects {want_h}x{want_w}x{want_c}")]
    ShapeMismatch {
        /// Ring name.
        name: String,
        /// Ring height.
        ring_h: u32,
        /// Ring width.
        ring_w: u32,
        /// Ring channels.
        ring_c: u32,
        /// Expected height.
        want_h: u32,
        /// Expected width.
        want_w: u32,
        /// Expected channels.
        want_c: u32,
    },
    /// A group name is empty, too long or has characters other than
    /// letters, digits, `_`, `-` and `.`.
    #[error("invalid group name {group:?}: use 1 to {max} letters, digits, '_', '-' or '.'", max = GROUP_NAME_MAX)]
    BadGroupName {
        /// The name.
        group: String,
    },
    /// The group table is full.
    #[error("ring {name:?} cannot take group {group:?}: it already has its maximum of {max} groups (ring.max_groups)")]
    GroupsFull {
        /// Ring name.
        name: String,
        /// The group refused.
        group: String,
        /// Table size.
        max: u32,
    },
    /// Every consumer table entry is taken.
    #[error("ring {name:?} already has its maximum of {max} consumers attached")]
    TooManyConsumers {
        /// Ring name.
        name: String,
        /// Table size.
        max: u32,
    },
}

/// What the producer does when no slot is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for a consumer to return one: lossless.
    #[default]
    Block,
    /// Withdraw the oldest published frame nobody is reading and reuse its
    /// slot: for live sources that must never be slowed down.
    DropOldest,
}

/// Options of producers and consumers.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Mode of a created segment (default 0600).
    pub mode: u32,
    /// How to wait for frames or free slots.
    pub wait: WaitStrategy,
    /// Producer: what to do when no slot is free.
    pub backpressure: Backpressure,
    /// Producer, block policy: publish no further while a group has this
    /// many frames queued and not yet taken (0: 2 to 8 frames, as many as fit in 8 MiB). Keeps the
    /// frames consumers read recent (in cache) and the latency short in a
    /// deep ring; the other slots still serve consumers that hold frames.
    pub max_queued: u32,
    /// Producer: groups declared up front (default `["default"]`): they
    /// receive every frame, with or without consumers.
    pub groups: Vec<String>,
    /// Consumer: the group to join (default `default`).
    pub group: String,
    /// Consumer: skip to the newest frame on each take.
    pub latest: bool,
}

/// The name of the group consumers join unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

impl Default for RingOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            wait: WaitStrategy::default(),
            backpressure: Backpressure::Block,
            max_queued: 0,
            groups: vec![DEFAULT_GROUP.to_string()],
            group: DEFAULT_GROUP.to_string(),
            latest: false,
        }
    }
}

/// Checks a group name: 1 to [`GROUP_NAME_MAX`] bytes of ASCII letters,
/// digits, `_`, `-` or `.`.
pub fn valid_group_name(name: &str) -> Result<(), PoolError> {
    let ok = !name.is_empty()
        && name.len() <= GROUP_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PoolError::BadGroupName { group: name.into() })
    }
}

/// What the producer says about a frame it publishes.
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta<'a> {
    /// Width of the source image.
    pub src_width: u32,
    /// Height of the source image.
    pub src_height: u32,
    /// Source name (truncated to [`NAME_MAX`] bytes).
    pub name: &'a [u8],
}

/// Metadata of a taken frame, copied out of the segment (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Sequence number.
    pub seq: u64,
    /// Publish time (CLOCK_MONOTONIC ns).
    pub publish_ns: u64,
    /// Source width.
    pub src_width: u32,
    /// Source height.
    pub src_height: u32,
    /// Earlier deliveries of this frame (to consumers that died).
    pub redeliveries: u32,
    /// Index of the slot that holds it.
    pub slot: u32,
    pub(crate) name: [u8; NAME_MAX],
    pub(crate) name_len: usize,
}

impl FrameInfo {
    /// The source name's bytes.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

pub(crate) fn ring_corrupt(seg: &Segment, source: Corrupt) -> PoolError {
    PoolError::Corrupt {
        name: seg.name().to_string(),
        source,
    }
}

/// Group `g`'s ready queue (`g` below `max_groups`, else a panic).
pub(crate) fn group_queue(seg: &Segment, g: usize) -> ReadyQueue<'_> {
    ReadyQueue::new(&seg.groups()[g].ready, seg.ready_cells(g), seg.claims(g))
}

pub(crate) fn return_queue(seg: &Segment, consumer: usize) -> ReturnQueue<'_> {
    ReturnQueue::new(&seg.consumers()[consumer].ret, seg.return_cells(consumer))
}

/// A return-queue cell: the group in the high half, the slot in the low.
pub(crate) fn pack_return(group: u8, slot: u32) -> u32 {
    ((group as u32) << 16) | (slot & 0xffff)
}

/// The inverse of [`pack_return`] (unchecked: callers validate both).
pub(crate) fn unpack_return(v: u32) -> (usize, usize) {
    ((v >> 16) as usize, (v & 0xffff) as usize)
}

/// Reads a NUL-padded name written by [`store_name`].
pub(crate) fn load_name(words: &[AtomicU64]) -> ([u8; GROUP_NAME_MAX], usize) {
    let mut out = [0u8; GROUP_NAME_MAX];
    for (i, w) in words.iter().enumerate().take(GROUP_NAME_MAX / 8) {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    let len = out.iter().position(|&b| b == 0).unwrap_or(GROUP_NAME_MAX);
    (out, len)
}

pub(crate) fn store_name(words: &[AtomicU64], name: &[u8]) -> usize {
    let len = name.len().min(words.len() * 8);
    for (i, w) in words.iter().enumerate() {
        let mut b = [0u8; 8];
        let lo = (i * 8).min(len);
        let hi = (i * 8 + 8).min(len);
        b[..hi - lo].copy_from_slice(&name[lo..hi]);
        // Every word, so a shorter name leaves no bytes of a longer one.
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    len
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::Shape;
    use crate::process::ProcessId;
    use std::time::Duration;

    fn shape(slots: u32) -> Shape {
        Shape {
            slots,
            height: 4,
            width: 8,
            channels: 3,
            max_consumers: 4,
            max_groups: 4,
        }
    }

    fn name(tag: &str) -> String {
        format!("framering-pool-{tag}-{}", std::process::id())
    }

    #[test]
    fn threads_move_frames_in_order_and_in_place() {
        let n = name("threads");
        let mut p = Producer::create(&n, shape(4), &RingOptions::default()).unwrap();
        let n2 = n.clone();
        let reader = std::thread::spawn(move || {
            let c = Consumer::attach(&n2, Some((4, 8, 3)), &RingOptions::default()).unwrap();
            let mut next = 0u64;
            loop {
                match c.take(Duration::from_secs(10)).unwrap() {
                    Take::Frame(f) => {
                        assert_eq!(f.info().seq, next);
                        assert!(f.data().iter().all(|&b| b == (next % 251) as u8));
                        assert_eq!(f.info().name(), format!("f{next}").as_bytes());
                        next += 1;
                    }
                    Take::EndOfStream => return next,
                    other => panic!("{other:?}"),
                }
            }
        });
        for i in 0..5000u64 {
            let mut s = p.acquire(Duration::from_secs(10)).unwrap().unwrap();
            s.data_mut().fill((i % 251) as u8);
            let name = format!("f{i}");
            let seq = p
                .publish(
                    s,
                    &FrameMeta {
                        src_width: 8,
                        src_height: 4,
                        name: name.as_bytes(),
                    },
                )
                .unwrap();
            assert_eq!(seq, i);
        }
        p.finish();
        assert!(p.drain(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(reader.join().unwrap(), 5000);
        assert_eq!(p.free_slots(), 4);
        p.unlink().unwrap();
    }

    #[test]
    fn shape_mismatch_and_full_table_are_refused() {
        let n = name("refuse");
        let mut p = Producer::create(&n, shape(2), &RingOptions::default()).unwrap();
        assert!(matches!(
            Consumer::attach(&n, Some((4, 8, 1)), &RingOptions::default()),
            Err(PoolError::ShapeMismatch { .. })
        ));
        let held: Vec<_> = (0..4)
            .map(|_| Consumer::attach(&n, None, &RingOptions::default()).unwrap())
            .collect();
        assert!(matches!(
            Consumer::attach(&n, None, &RingOptions::default()),
            Err(PoolError::TooManyConsumers { .. })
        ));
        drop(held);
        // The producer frees the entries of consumers that left.
        p.service().unwrap();
        Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        // A second producer on a live ring is refused, naming us.
        match Producer::create(&n, shape(2), &RingOptions::default()) {
            Err(PoolError::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        p.unlink().unwrap();
    }

    #[test]
    fn frames_of_a_dead_consumer_are_delivered_again() {
        let n = name("dead");
        let mut p = Producer::create(&n, shape(3), &RingOptions::default()).unwrap();
        for i in 0..3u8 {
            let mut s = p.acquire(Duration::from_secs(1)).unwrap().unwrap();
            s.data_mut().fill(i);
            p.publish(
                s,
                &FrameMeta {
                    src_width: 8,
                    src_height: 4,
                    name: b"x",
                },
            )
            .unwrap();
        }
        // A consumer takes two frames, then "dies": we forge its identity to
        // that of a process that has exited.
        let victim = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        p.service().unwrap();
        let (a, b) = match (
            victim.take(Duration::ZERO).unwrap(),
            victim.take(Duration::ZERO).unwrap(),
        ) {
            (Take::Frame(a), Take::Frame(b)) => (a, b),
            other => panic!("{other:?}"),
        };
        assert_eq!((a.info().seq, b.info().seq), (0, 1));
        drop(a); // returned before dying
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(child.id());
        child.wait().unwrap();
        let dead = dead.unwrap_or(ProcessId {
            pid: u32::MAX - 7,
            start_ticks: 1,
        });
        let entry = &p.segment().consumers()[victim.index() as usize];
        entry.owner.store(dead.owner_word(), Ordering::Release);
        std::mem::forget(b);
        std::mem::forget(victim);

        assert_eq!(p.reap_dead_consumers().unwrap(), 1);
        assert_eq!(p.segment().consumers()[0].owner.load(Ordering::Relaxed), 0);
        let c = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        p.service().unwrap();
        let mut seen = vec![];
        while let Take::Frame(f) = c.take(Duration::from_millis(50)).unwrap() {
            seen.push((f.info().seq, f.info().redeliveries, f.data()[0]));
        }
        seen.sort();
        assert_eq!(seen, vec![(1, 1, 1), (2, 0, 2)]);
        p.unlink().unwrap();
    }

    #[test]
    fn a_consumer_with_a_corrupt_return_queue_does_not_stop_the_ring() {
        let n = name("quarantine");
        let mut p = Producer::create(&n, shape(2), &RingOptions::default()).unwrap();
        let bad = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        let good = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        // The bad consumer scribbles over its own return queue.
        p.segment().consumers()[bad.index() as usize]
            .ret
            .tail
            .store(u64::MAX / 3, Ordering::Relaxed);
        for round in 0..20u8 {
            let mut s = p.acquire(Duration::from_secs(2)).unwrap().expect("a slot");
            s.data_mut().fill(round);
            p.publish(s, &FrameMeta { src_width: 8, src_height: 4, name: b"q" })
                .unwrap();
            match good.take(Duration::from_secs(1)).unwrap() {
                Take::Frame(f) => assert_eq!(f.data()[0], round),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.quarantined(), 1 << bad.index());
        p.unlink().unwrap();
    }

    fn opts(groups: &[&str], backpressure: Backpressure) -> RingOptions {
        RingOptions {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            backpressure,
            ..RingOptions::default()
        }
    }

    fn joining(group: &str, latest: bool) -> RingOptions {
        RingOptions {
            group: group.into(),
            latest,
            ..RingOptions::default()
        }
    }

    fn put(p: &mut Producer, fill: u8) -> Option<u64> {
        let mut s = p.acquire(Duration::from_millis(50)).unwrap()?;
        s.data_mut().fill(fill);
        Some(
            p.publish(s, &FrameMeta { src_width: 8, src_height: 4, name: b"g" })
                .unwrap(),
        )
    }

    fn seq_of(c: &Consumer) -> Option<u64> {
        match c.take(Duration::from_millis(20)).unwrap() {
            Take::Frame(f) => {
                assert!(f.data().iter().all(|&b| b == (f.info().seq % 251) as u8));
                Some(f.info().seq)
            }
            _ => None,
        }
    }

    #[test]
    fn every_group_gets_every_frame_and_its_consumers_share_them() {
        let n = name("groups");
        let mut p = Producer::create(&n, shape(4), &opts(&["a", "b"], Backpressure::Block)).unwrap();
        let readers: Vec<_> = ["a", "a", "b"]
            .into_iter()
            .map(|g| {
                let n = n.clone();
                std::thread::spawn(move || {
                    let c = Consumer::attach(&n, None, &joining(g, false)).unwrap();
                    let mut seen = vec![];
                    loop {
                        match c.take(Duration::from_secs(10)).unwrap() {
                            Take::Frame(f) => {
                                let seq = f.info().seq;
                                assert!(f.data().iter().all(|&b| b == (seq % 251) as u8));
                                seen.push(seq);
                            }
                            Take::EndOfStream => return (g, seen),
                            other => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for i in 0..3000u64 {
            let mut s = p.acquire(Duration::from_secs(10)).unwrap().unwrap();
            s.data_mut().fill((i % 251) as u8);
            p.publish(s, &FrameMeta { src_width: 8, src_height: 4, name: b"x" })
                .unwrap();
        }
        p.finish();
        assert!(p.drain(Some(Duration::from_secs(10))).unwrap());
        let mut a = vec![];
        let mut b = vec![];
        for r in readers {
            let (g, seen) = r.join().unwrap();
            if g == "a" { a.extend(seen) } else { b.extend(seen) }
        }
        a.sort_unstable();
        let all: Vec<u64> = (0..3000).collect();
        assert_eq!(a, all, "group a: each frame exactly once");
        assert_eq!(b, all, "group b: each frame exactly once, in order");
        assert_eq!(p.free_slots(), 4);
        assert_eq!(p.dropped(), 0);
        p.unlink().unwrap();
    }

    #[test]
    fn an_ad_hoc_group_starts_at_the_next_frame_and_stops_holding_slots_when_it_leaves() {
        let n = name("adhoc");
        let mut p = Producer::create(&n, shape(4), &opts(&["main"], Backpressure::Block)).unwrap();
        let main = Consumer::attach(&n, None, &joining("main", false)).unwrap();
        assert_eq!(put(&mut p, 0), Some(0));
        assert_eq!(put(&mut p, 1), Some(1));
        let preview = Consumer::attach(&n, None, &joining("preview", false)).unwrap();
        p.service().unwrap();
        assert_eq!(p.subscribed_groups(), 2);
        assert_eq!(put(&mut p, 2), Some(2));
        // The new group sees frame 2 only; the declared one sees them all.
        assert_eq!(seq_of(&preview), Some(2));
        assert_eq!(seq_of(&preview), None);
        assert_eq!((seq_of(&main), seq_of(&main), seq_of(&main)), (Some(0), Some(1), Some(2)));
        assert_eq!(put(&mut p, 3), Some(3));
        assert_eq!(put(&mut p, 4), Some(4));
        // The preview leaves without taking 3 and 4; main takes them: the
        // slots come back although the preview never returned them.
        drop(preview);
        p.service().unwrap();
        assert_eq!(p.subscribed_groups(), 1);
        assert_eq!((seq_of(&main), seq_of(&main)), (Some(3), Some(4)));
        p.finish();
        assert!(p.drain(Some(Duration::from_secs(2))).unwrap());
        // What the preview never took counts as its drops.
        let preview = p.group_reports().into_iter().find(|g| g.name == "preview");
        assert_eq!(
            preview,
            Some(GroupReport { name: "preview".into(), dropped: 2, declared: false })
        );
        p.unlink().unwrap();
    }

    #[test]
    fn block_with_no_group_waits_for_a_subscriber() {
        let n = name("nogroup");
        let mut p = Producer::create(&n, shape(2), &opts(&[], Backpressure::Block)).unwrap();
        assert!(p.acquire(Duration::from_millis(30)).unwrap().is_none());
        let c = Consumer::attach(&n, None, &joining("late", false)).unwrap();
        assert_eq!(put(&mut p, 0), Some(0));
        assert_eq!(seq_of(&c), Some(0));
        p.unlink().unwrap();
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_never_takes_a_frame_being_read() {
        let n = name("dropold");
        let mut p =
            Producer::create(&n, shape(4), &opts(&["default"], Backpressure::DropOldest)).unwrap();
        let c = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        assert_eq!(put(&mut p, 0), Some(0));
        let held = match c.take(Duration::from_millis(50)).unwrap() {
            Take::Frame(f) => f,
            other => panic!("{other:?}"),
        };
        // The producer never waits: 20 more frames into 3 remaining slots.
        for i in 1..=20u64 {
            assert_eq!(put(&mut p, (i % 251) as u8), Some(i));
        }
        // The frame being read was not touched.
        assert_eq!(held.info().seq, 0);
        assert!(held.data().iter().all(|&b| b == 0));
        drop(held);
        assert_eq!(p.dropped(), 17);
        assert_eq!(c.group_dropped(), 17);
        let rest: Vec<_> = std::iter::from_fn(|| seq_of(&c)).collect();
        assert_eq!(rest, vec![18, 19, 20], "the newest frames survive");
        p.unlink().unwrap();
    }

    #[test]
    fn drop_oldest_with_a_consumer_that_never_takes_keeps_going() {
        // Stale queue entries would fill the group's queue if nothing
        // cleared them; the producer evicts them.
        let n = name("dropidle");
        let mut p =
            Producer::create(&n, shape(2), &opts(&["default"], Backpressure::DropOldest)).unwrap();
        let c = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        for i in 0..1000u64 {
            assert_eq!(put(&mut p, (i % 251) as u8), Some(i));
        }
        assert_eq!(p.dropped(), 998);
        let rest: Vec<_> = std::iter::from_fn(|| seq_of(&c)).collect();
        assert_eq!(rest, vec![998, 999]);
        p.unlink().unwrap();
    }

    #[test]
    fn latest_skips_to_the_newest_frame_and_returns_the_rest() {
        let n = name("latest");
        let mut p = Producer::create(&n, shape(4), &opts(&["default"], Backpressure::Block)).unwrap();
        let c = Consumer::attach(&n, None, &joining("default", true)).unwrap();
        for i in 0..3u8 {
            put(&mut p, i).unwrap();
        }
        assert_eq!(seq_of(&c), Some(2));
        assert_eq!(c.skipped(), 2);
        // Every slot is back with the producer.
        p.finish();
        assert!(p.drain(Some(Duration::from_secs(2))).unwrap());
        p.unlink().unwrap();
    }

    #[test]
    fn a_dead_consumer_of_an_ad_hoc_group_releases_its_slots() {
        let n = name("adhocdead");
        let mut p = Producer::create(&n, shape(2), &opts(&[], Backpressure::Block)).unwrap();
        let victim = Consumer::attach(&n, None, &joining("tmp", false)).unwrap();
        put(&mut p, 0).unwrap();
        put(&mut p, 1).unwrap();
        let f = match victim.take(Duration::from_millis(50)).unwrap() {
            Take::Frame(f) => f,
            other => panic!("{other:?}"),
        };
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(child.id());
        child.wait().unwrap();
        let dead = dead.unwrap_or(ProcessId { pid: u32::MAX - 7, start_ticks: 1 });
        p.segment().consumers()[victim.index() as usize]
            .owner
            .store(dead.owner_word(), Ordering::Release);
        std::mem::forget(f);
        std::mem::forget(victim);
        assert_eq!(p.reap_dead_consumers().unwrap(), 0, "nobody to redeliver to");
        assert_eq!(p.free_slots(), 2);
        assert_eq!(p.subscribed_groups(), 0);
        p.unlink().unwrap();
    }

    #[test]
    fn block_keeps_at_most_max_queued_frames_ahead_of_the_consumers() {
        let n = name("maxq");
        let o = RingOptions { max_queued: 3, ..RingOptions::default() };
        let mut p = Producer::create(&n, shape(8), &o).unwrap();
        let c = Consumer::attach(&n, None, &RingOptions::default()).unwrap();
        for i in 0..3u8 {
            put(&mut p, i).unwrap();
        }
        // Five slots are free, but three frames wait already.
        assert_eq!(p.free_slots(), 5);
        assert!(p.acquire(Duration::from_millis(30)).unwrap().is_none());
        // A consumer taking one (and holding it) lets the producer go on.
        let held = match c.take(Duration::from_millis(50)).unwrap() {
            Take::Frame(f) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!(put(&mut p, 3), Some(3));
        assert!(p.acquire(Duration::from_millis(30)).unwrap().is_none());
        drop(held);
        p.unlink().unwrap();
    }
}
