//! Loom models of the ring core's concurrent protocols.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib models`
//!
//! Each model runs every interleaving (and every permitted weak-memory
//! outcome) loom can produce of a few threads. The futex is modelled as a
//! kernel lock plus condition variable without timeouts ([`crate::futex`]),
//! so a lost wake-up shows up as a deadlock, which loom reports.

use crate::event::{Event, WaitStrategy};
use crate::queue::{QueueCtrl, ReadyQueue, ReturnQueue};
use crate::slot::SlotState;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

const FOREVER: Duration = Duration::from_secs(1 << 30);

struct Ring {
    ctrl: QueueCtrl,
    cells: Vec<AtomicU64>,
    slots: Vec<AtomicU64>,
    ret_ctrl: QueueCtrl,
    ret_cells: Vec<AtomicU32>,
    ready: Event,
    free: Event,
}

impl Ring {
    fn new(slots: usize) -> Arc<Ring> {
        Arc::new(Ring {
            ctrl: QueueCtrl::new(),
            cells: (0..(2 * slots).next_power_of_two())
                .map(|_| AtomicU64::new(0))
                .collect(),
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            ret_ctrl: QueueCtrl::new(),
            ret_cells: (0..slots.next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect(),
            ready: Event::new(),
            free: Event::new(),
        })
    }
    fn q(&self) -> ReadyQueue<'_> {
        ReadyQueue::new(&self.ctrl, &self.cells, &self.slots)
    }
    fn r(&self) -> ReturnQueue<'_> {
        ReturnQueue::new(&self.ret_ctrl, &self.ret_cells)
    }
}

#[test]
fn event_wakes_a_sleeping_waiter() {
    loom::model(|| {
        let flag = Arc::new(AtomicU32::new(0));
        let ev = Arc::new(Event::new());
        let (f2, e2) = (flag.clone(), ev.clone());
        let t = thread::spawn(move || {
            f2.store(1, Ordering::Release);
            e2.notify();
        });
        let got = ev.wait_until(WaitStrategy::FUTEX, FOREVER, || {
            (flag.load(Ordering::Acquire) == 1).then_some(())
        });
        assert_eq!(got, Some(()));
        t.join().unwrap();
    });
}

#[test]
fn event_wakes_two_waiters_after_two_notifications() {
    loom::model(|| {
        let count = Arc::new(AtomicU32::new(0));
        let ev = Arc::new(Event::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (c, e) = (count.clone(), ev.clone());
                thread::spawn(move || {
                    e.wait_until(WaitStrategy::FUTEX, FOREVER, || {
                        (c.load(Ordering::Acquire) >= 2).then_some(())
                    })
                })
            })
            .collect();
        for _ in 0..2 {
            count.fetch_add(1, Ordering::Release);
            ev.notify();
        }
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(()));
        }
    });
}

#[test]
fn two_consumers_take_each_frame_exactly_once() {
    loom::model(|| {
        let ring = Ring::new(2);
        let consumers: Vec<_> = (0..2u8)
            .map(|me| {
                let ring = ring.clone();
                thread::spawn(move || ring.q().take(me).unwrap())
            })
            .collect();
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        let mut got: Vec<u32> = consumers
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .map(|(s, _)| s)
            .collect();
        // Whatever the consumers missed is still queued, exactly once.
        while let Some((s, _)) = ring.q().take(9).unwrap() {
            got.push(s);
        }
        got.sort();
        assert_eq!(got, vec![0, 1]);
    });
}

#[test]
fn a_consumer_dead_after_its_claim_does_not_block_others() {
    loom::model(|| {
        let ring = Ring::new(2);
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        // "Dies" between the claim CAS and the head update: claim by hand.
        let ready = SlotState::Ready { pos: 0 }.encode();
        let dead = SlotState::Reading { owner: 5, pos: 0 }.encode();
        let r2 = ring.clone();
        let t = thread::spawn(move || {
            r2.slots[0]
                .compare_exchange(ready, dead, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        let mine = ring.q().take(1).unwrap();
        let claimed_by_dead = t.join().unwrap();
        match (claimed_by_dead, mine) {
            (true, Some((s, _))) => assert_eq!(s, 1),
            (false, Some((s, _))) => assert_eq!(s, 0),
            (_, None) => panic!("a live consumer found nothing"),
        }
    });
}

#[test]
fn producer_and_consumer_round_trip_with_events() {
    // One slot: publish, take, return, collect, publish again: the full
    // ownership cycle, with both sides sleeping on futex events.
    loom::model(|| {
        let ring = Ring::new(1);
        let r2 = ring.clone();
        let consumer = thread::spawn(move || {
            let mut seen = vec![];
            for _ in 0..2 {
                let (s, pos) = r2
                    .ready
                    .wait_until(WaitStrategy::FUTEX, FOREVER, || r2.q().take(0).unwrap())
                    .unwrap();
                seen.push(pos);
                r2.r().push(s).unwrap();
                r2.free.notify();
            }
            seen
        });
        for round in 0..2 {
            if round > 0 {
                // Wait for the slot to come back.
                ring.free.wait_until(WaitStrategy::FUTEX, FOREVER, || {
                    let mut back = None;
                    ring.r().drain(|s| back = Some(s)).unwrap();
                    back
                });
                ring.slots[0].store(SlotState::Free.encode(), Ordering::Relaxed);
            }
            ring.q().push(0).unwrap();
            ring.ready.notify();
        }
        assert_eq!(consumer.join().unwrap(), vec![0, 1]);
    });
}

/// The recovery protocol of `Producer::reap_dead_consumers`: a consumer
/// "dies" after any prefix of its operations (take, take, return) while a live
/// consumer works concurrently; the producer then collects what was returned
/// and re-publishes every slot still marked as read by the dead one. No slot
/// may be lost or end up in two places.
#[test]
fn recovery_after_a_consumer_dies_at_any_step_loses_no_slot() {
    for steps in 0..=3 {
        loom::model(move || {
            let ring = Ring::new(2);
            let dead_ret = Arc::new((
                QueueCtrl::new(),
                (0..2).map(|_| AtomicU32::new(0)).collect::<Vec<_>>(),
            ));
            ring.q().push(0).unwrap();
            ring.q().push(1).unwrap();
            let (r2, d2) = (ring.clone(), dead_ret.clone());
            let doomed = thread::spawn(move || {
                let mut held = vec![];
                for step in 0..steps {
                    if step < 2 {
                        if let Some((s, _)) = r2.q().take(0).unwrap() {
                            held.push(s);
                        }
                    } else if let Some(s) = held.pop() {
                        ReturnQueue::new(&d2.0, &d2.1).push(s).unwrap();
                    }
                }
                // ...and the process dies here, holding `held`.
            });
            let r3 = ring.clone();
            let live = thread::spawn(move || {
                if let Some((s, _)) = r3.q().take(1).unwrap() {
                    r3.r().push(s).unwrap();
                }
            });
            doomed.join().unwrap();
            live.join().unwrap();

            // Producer: collect returns (validating the owner), then recover.
            let mut free = vec![];
            let mut collect = |q: ReturnQueue<'_>, owner: u8| {
                q.drain(|s| {
                    let w = &ring.slots[s as usize];
                    assert!(matches!(
                        SlotState::decode(w.load(Ordering::Acquire)),
                        Some(SlotState::Reading { owner: o, .. }) if o == owner
                    ));
                    w.store(SlotState::Free.encode(), Ordering::Relaxed);
                    free.push(s);
                })
                .unwrap();
            };
            collect(ring.r(), 1);
            collect(ReturnQueue::new(&dead_ret.0, &dead_ret.1), 0);
            for s in 0..2u32 {
                if matches!(
                    SlotState::decode(ring.slots[s as usize].load(Ordering::Acquire)),
                    Some(SlotState::Reading { owner: 0, .. })
                ) {
                    ring.q().push(s).unwrap();
                }
            }
            // Everything still queued is taken by a fresh consumer.
            while let Some((s, _)) = ring.q().take(2).unwrap() {
                free.push(s);
            }
            free.sort();
            assert_eq!(free, vec![0, 1], "steps = {steps}");
        });
    }
}

#[test]
fn drop_oldest_withdrawal_and_a_claim_never_both_win() {
    // The producer withdraws the oldest frame (drop-oldest) while a consumer
    // takes frames; then, the queue nearly full, it evicts the head. Every
    // published frame ends up either taken exactly once or withdrawn exactly
    // once, and the consumer never reads a slot the producer took back.
    loom::model(|| {
        let ring = Ring::new(2);
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        let r2 = ring.clone();
        let t = thread::spawn(move || {
            let mut got = vec![];
            while let Some((s, _)) = r2.q().take(3).unwrap() {
                got.push(s);
            }
            got
        });
        let mut withdrawn = vec![];
        if ring.q().revoke(0).unwrap() {
            withdrawn.push(0);
        }
        if let Some(s) = ring.q().evict_head().unwrap() {
            withdrawn.push(s);
        }
        let taken = t.join().unwrap();
        for s in &taken {
            assert!(!withdrawn.contains(s), "slot {s} both taken and withdrawn");
            assert!(matches!(
                SlotState::decode(ring.slots[*s as usize].load(Ordering::Relaxed)),
                Some(SlotState::Reading { owner: 3, .. })
            ));
        }
        for s in &withdrawn {
            assert_eq!(
                ring.slots[*s as usize].load(Ordering::Relaxed),
                SlotState::Free.encode()
            );
        }
        let mut all: Vec<u32> = taken.iter().chain(&withdrawn).copied().collect();
        all.sort_unstable();
        all.dedup();
        // Slot 1 may still be queued (neither taken nor evicted) if the
        // consumer finished first and the evict only passed slot 0's entry.
        let queued: Vec<u32> =
            std::iter::from_fn(|| ring.q().take(4).unwrap().map(|(s, _)| s)).collect();
        all.extend(queued);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1], "every frame accounted for exactly once");
    });
}
