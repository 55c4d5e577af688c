//! Loom models of the ring's concurrent protocols, built from the real
//! building blocks (claim words, ready and return queues, the event, the join
//! handshake, the producer's ledger) over heap memory.
//!
//! Run with (from the top of the repository):
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 cargo test --release -p framering-ring --lib models`
//!
//! Each model runs every interleaving (and every permitted weak-memory
//! outcome) loom can produce of a few threads. The futex is modelled as a
//! kernel lock plus condition variable without timeouts ([`crate::platform::futex`]),
//! so a lost wake-up shows up as a deadlock, which loom reports.
//!
//! Every model is shown to fail on a deliberately broken variant of the code
//! it checks: `FRAMERING_LOOM_MUTANT=<name>` switches one on (see
//! [`crate::protocol::sync::mutant`]); `ring/loom-mutants.sh` runs each model with its
//! mutants and requires each run to fail.

use crate::protocol::event::{Event, WaitStrategy};
use crate::protocol::layout::ConsumerEntry;
use crate::protocol::ledger::{pack_give_back, pack_return, Ledger};
use crate::protocol::queue_ctrl::QueueCtrl;
use crate::protocol::ready_queue::ReadyQueue;
use crate::protocol::return_queue::{ReturnCursor, ReturnQueue};
use crate::protocol::roster::{self, Admission, Request};
use crate::protocol::slot::SlotState;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

const FOREVER: Duration = Duration::from_secs(1 << 30);

fn words64(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// One group's queue over `slots` slots, plus a return queue per consumer and
/// the two events.
struct Ring {
    ctrl: QueueCtrl,
    cells: Vec<AtomicU64>,
    claims: Vec<AtomicU64>,
    states: Vec<AtomicU64>,
    rets: Vec<(QueueCtrl, Vec<AtomicU64>)>,
    /// Each consumer's side of its return queue (its own memory: only its
    /// thread touches it, so a plain lock, not a modelled one).
    cursors: Vec<std::sync::Mutex<ReturnCursor>>,
    /// The producer's own copies of the return queues' heads.
    heads: Vec<std::sync::Mutex<u64>>,
    ready: Event,
    free: Event,
}

impl Ring {
    fn new(slots: usize, consumers: usize) -> Arc<Ring> {
        Arc::new(Ring {
            ctrl: QueueCtrl::new(),
            cells: words64((2 * slots).next_power_of_two()),
            claims: words64(slots),
            states: words64(slots),
            rets: (0..consumers)
                .map(|_| (QueueCtrl::new(), words64(slots.next_power_of_two())))
                .collect(),
            cursors: (0..consumers)
                .map(|_| std::sync::Mutex::new(ReturnCursor::default()))
                .collect(),
            heads: (0..consumers).map(|_| std::sync::Mutex::new(0)).collect(),
            ready: Event::new(),
            free: Event::new(),
        })
    }
    fn q(&self) -> ReadyQueue<'_> {
        ReadyQueue::new(&self.ctrl, &self.cells, &self.claims)
    }
    fn r(&self, c: usize) -> ReturnQueue<'_> {
        ReturnQueue::new(&self.rets[c].0, &self.rets[c].1)
    }
    /// The producer collects consumer `c`'s returns into `ledger` (group 0's
    /// claim words), with its own copy of the queue's head.
    fn collect(
        &self,
        ledger: &mut Ledger,
        c: usize,
        again: &mut Vec<(usize, usize)>,
    ) -> Result<usize, crate::error::Corrupt> {
        let claims = |g: usize| (g == 0).then_some(&self.claims[..]);
        let mut head = self.heads[c].lock().unwrap();
        ledger.collect(c, self.r(c), &mut head, claims, &self.states, again)
    }
    /// Consumer `c` pushes `value` into its return queue.
    fn push(&self, c: usize, value: u32) {
        let mut cursor = self.cursors[c].lock().unwrap();
        self.r(c).push(value, &mut cursor).unwrap();
    }
    /// The consumer side of a hand-back: push, then tell the producer if it
    /// waits (as `Shared::release` does).
    fn give_back(&self, c: usize, slot: u32) {
        self.push(c, pack_return(0, slot));
        self.free.notify_if_waiting();
    }
}

/// Mutant that breaks it: `wait-unannounced` (the waiter sleeps without
/// counting itself in `waiters`, so the notifier skips the wake).
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

/// Mutant that breaks it: `wait-unannounced` (the waiter sleeps without
/// counting itself in `waiters`, so the notifier skips the wake).
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

/// The fixed wake-up path: a producer waits for room in a group's queue
/// (`max_queued` = 1 and one frame queued); a consumer takes that frame and
/// notifies through [`Event::notify_if_waiting`]. The producer must wake.
///
/// Mutants that break it: `notify-unfenced` (the earlier code: a Relaxed
/// load of `waiters` without a fence) and `wait-no-recheck` (a waiter that
/// re-checks only the event's count after registering).
#[test]
fn a_producer_waiting_for_room_is_woken_by_a_take() {
    loom::model(|| {
        let ring = Ring::new(1, 1);
        ring.q().push(0).unwrap();
        let r2 = ring.clone();
        let consumer = thread::spawn(move || {
            let claim = r2.q().take(0).unwrap().expect("the queued frame");
            r2.free.notify_if_waiting();
            claim.slot()
        });
        // The producer: room once the group has fewer than 1 frame queued.
        let got = ring.free.wait_until(WaitStrategy::FUTEX, FOREVER, || {
            ring.q().below_now(1).then_some(())
        });
        assert_eq!(got, Some(()));
        assert_eq!(consumer.join().unwrap(), 0);
    });
}

/// Mutant that breaks it: `claim-store` (two consumers claim one frame).
#[test]
fn two_consumers_take_each_frame_exactly_once() {
    loom::model(|| {
        let ring = Ring::new(2, 0);
        let consumers: Vec<_> = (0..2u8)
            .map(|me| {
                let ring = ring.clone();
                thread::spawn(move || ring.q().take(me).unwrap().map(|c| c.slot()))
            })
            .collect();
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        let mut got: Vec<u32> = consumers
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect();
        // Whatever the consumers missed is still queued, exactly once.
        while let Some(c) = ring.q().take(9).unwrap() {
            got.push(c.slot());
        }
        got.sort();
        assert_eq!(got, vec![0, 1]);
    });
}

/// The ready queue wrapping: three frames through one slot, so the queue's
/// two cells are reused (positions 0, 1, 2 in cells 0, 1, 0) while a second
/// consumer races for them — it may read a head, lose the CPU, and find the
/// cell of a later lap. Every position is taken exactly once, and nothing is
/// reported corrupt.
///
/// No thread waits for another (spinning or sleeping would multiply the
/// interleavings past what loom explores in minutes; the events have models
/// of their own): the main thread is the producer and consumer 0 in turn,
/// and when the slot is still held by consumer 1 it joins that thread, which
/// makes two attempts to take and hands back at once whatever it took.
///
/// Mutants that break it: `publish-tail-relaxed` (a consumer then sees the
/// new tail but a cell of the previous lap: a false "corrupt", or a frame
/// skipped).
#[test]
fn the_ready_queue_wraps_without_losing_or_doubling_a_frame() {
    const FRAMES: u64 = 3;
    loom::model(|| {
        let ring = Ring::new(1, 2);
        let other = {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut got = vec![];
                for _ in 0..2 {
                    if let Some(claim) = ring.q().take(1).unwrap() {
                        got.push(claim.pos());
                        ring.push(1, pack_return(0, claim.slot()));
                    }
                }
                got
            })
        };
        let mut other = Some(other);
        let mut all = vec![];
        let mut ledger = Ledger::new(1, 0);
        // The producer's view of the head, kept across pushes as the
        // producer keeps it (re-read at the wrap, where the bound it gives
        // is no longer enough).
        let mut head_seen = 0;
        for seq in 0..FRAMES {
            for c in 0..2 {
                ring.collect(&mut ledger, c, &mut vec![]).unwrap();
            }
            if ledger.free_len() == 0 {
                // Consumer 1 holds the slot: it hands it back before it ends.
                all.extend(other.take().unwrap().join().unwrap());
                ring.collect(&mut ledger, 1, &mut vec![]).unwrap();
            }
            let claim = ledger.loan(&ring.states).unwrap();
            let s = ledger.publish(claim, 1, seq, &ring.states);
            assert_eq!(ring.q().push_seen(s, &mut head_seen).unwrap(), seq);
            // Consumer 0's turn (consumer 1 may have been first).
            if let Some(claim) = ring.q().take(0).unwrap() {
                all.push(claim.pos());
                ring.push(0, pack_return(0, claim.slot()));
            }
        }
        if let Some(t) = other {
            all.extend(t.join().unwrap());
        }
        while let Some(claim) = ring.q().take(0).unwrap() {
            all.push(claim.pos());
        }
        all.sort_unstable();
        assert_eq!(all, (0..FRAMES).collect::<Vec<_>>());
    });
}

#[test]
fn a_consumer_dead_after_its_claim_does_not_block_others() {
    loom::model(|| {
        let ring = Ring::new(2, 0);
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        // "Dies" between the claim CAS and the head update: claim by hand.
        let ready = SlotState::Ready { pos: 0 }.encode();
        let dead = SlotState::Reading { owner: 5, pos: 0 }.encode();
        let r2 = ring.clone();
        let t = thread::spawn(move || {
            r2.claims[0]
                .compare_exchange(ready, dead, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        let mine = ring.q().take(1).unwrap().map(|c| c.slot());
        let claimed_by_dead = t.join().unwrap();
        match (claimed_by_dead, mine) {
            (true, Some(s)) => assert_eq!(s, 1),
            (false, Some(s)) => assert_eq!(s, 0),
            (_, None) => panic!("a live consumer found nothing"),
        }
    });
}

/// One slot: publish, take, return, collect, publish again: the full
/// ownership cycle, with both sides sleeping on futex events, each side
/// notifying the other only if it waits ([`Event::notify_if_waiting`], as
/// the producer's publish and the consumer's hand-back do).
///
/// Mutants that break it: `wait-unannounced` (the waiter sleeps without
/// counting itself in `waiters`, so the notifier skips the wake),
/// `notify-unfenced` and `wait-no-recheck` (see `event.rs`).
#[test]
fn producer_and_consumer_round_trip_with_events() {
    loom::model(|| {
        let ring = Ring::new(1, 1);
        let r2 = ring.clone();
        let consumer = thread::spawn(move || {
            let mut seen = vec![];
            for _ in 0..2 {
                let claim = r2
                    .ready
                    .wait_until(WaitStrategy::FUTEX, FOREVER, || r2.q().take(0).unwrap())
                    .unwrap();
                seen.push(claim.pos());
                r2.give_back(0, claim.slot());
            }
            seen
        });
        let mut ledger = Ledger::new(1, 0);
        for round in 0..2 {
            if round > 0 {
                ring.free.wait_until(WaitStrategy::FUTEX, FOREVER, || {
                    ring.collect(&mut ledger, 0, &mut vec![]).unwrap();
                    (ledger.free_len() == 1).then_some(())
                });
            }
            let claim = ledger.loan(&ring.states).unwrap();
            let s = ledger.publish(claim, 1, round, &ring.states);
            ring.q().push(s).unwrap();
            ring.ready.notify_if_waiting();
        }
        assert_eq!(consumer.join().unwrap(), vec![0, 1]);
    });
}

/// Recovery after a consumer died at any step of (take, take, return) while
/// a live consumer worked beside it: the producer collects what was
/// returned and re-publishes every slot still marked as read by the dead
/// one. No slot may be lost or end up in two places.
///
/// Mutant that breaks it: `recover-wrong-reader` (recovery looks for another
/// consumer's frames: the dead one's slots are lost).
#[test]
fn recovery_after_a_consumer_dies_at_any_step_loses_no_slot() {
    for steps in 0..=3 {
        loom::model(move || {
            let ring = Ring::new(2, 2);
            let mut ledger = Ledger::new(2, 0);
            for seq in 0..2 {
                let claim = ledger.loan(&ring.states).unwrap();
                let s = ledger.publish(claim, 1, seq, &ring.states);
                ring.q().push(s).unwrap();
            }
            let r2 = ring.clone();
            let doomed = thread::spawn(move || {
                let mut held = vec![];
                for step in 0..steps {
                    if step < 2 {
                        if let Some(c) = r2.q().take(0).unwrap() {
                            held.push(c.slot());
                        }
                    } else if let Some(s) = held.pop() {
                        r2.push(0, pack_return(0, s));
                    }
                }
                // ...and the process dies here, holding `held`.
            });
            let r3 = ring.clone();
            let live = thread::spawn(move || {
                if let Some(c) = r3.q().take(1).unwrap() {
                    r3.give_back(1, c.slot());
                }
            });
            doomed.join().unwrap();
            live.join().unwrap();

            // Producer: collect returns (validating the owner), then recover.
            ring.collect(&mut ledger, 1, &mut vec![]).unwrap();
            ring.collect(&mut ledger, 0, &mut vec![]).unwrap();
            for s in 0..2 {
                if ledger.read_by(0, 0, s, &ring.claims) {
                    ring.q().push(s as u32).unwrap();
                }
            }
            // Everything still queued is taken and returned by a fresh consumer.
            while let Some(c) = ring.q().take(1).unwrap() {
                ring.give_back(1, c.slot());
            }
            ring.collect(&mut ledger, 1, &mut vec![]).unwrap();
            assert_eq!(ledger.free_len(), 2, "steps = {steps}");
            // No frame was re-published that had come back already: every
            // return named its reader.
            assert_eq!(ledger.bogus(), 0, "steps = {steps}");
        });
    }
}

/// Recovery running while another consumer is live: consumer 5 died holding
/// slot 0; the producer re-publishes it (and collects returns) while
/// consumer 1 keeps taking and returning. Consumer 1 gets each frame once,
/// and every slot comes back.
///
/// Mutant that breaks it: `recover-any-reader` (recovery re-publishes a
/// frame the live consumer is reading: delivered twice).
#[test]
fn recovery_runs_beside_a_live_consumer() {
    loom::model(|| {
        let ring = Ring::new(2, 2);
        let mut ledger = Ledger::new(2, 0);
        for seq in 0..2 {
            let claim = ledger.loan(&ring.states).unwrap();
            let s = ledger.publish(claim, 1, seq, &ring.states);
            ring.q().push(s).unwrap();
        }
        // Consumer 5 claims slot 0 and dies.
        assert_eq!(ring.q().take(5).unwrap().map(|c| c.slot()), Some(0));
        let r2 = ring.clone();
        let live = thread::spawn(move || {
            let mut got = vec![];
            while got.len() < 2 {
                let claim = r2
                    .ready
                    .wait_until(WaitStrategy::FUTEX, FOREVER, || r2.q().take(1).unwrap())
                    .unwrap();
                got.push(claim.slot());
                r2.give_back(1, claim.slot());
            }
            got
        });
        // The producer, concurrently: collect, then recover consumer 5.
        ring.collect(&mut ledger, 1, &mut vec![]).unwrap();
        for s in 0..2 {
            if ledger.read_by(5, 0, s, &ring.claims) {
                ring.q().push(s as u32).unwrap();
            }
        }
        ring.ready.notify();
        let mut got = live.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1], "each frame delivered exactly once");
        ring.collect(&mut ledger, 1, &mut vec![]).unwrap();
        assert_eq!(ledger.free_len(), 2);
    });
}

/// A frame handed back unconsumed (its output failed): consumer 0 gives it
/// back while consumer 1 waits for frames and the producer collects
/// returns, publishing a given-back frame to the group again. Consumer 1
/// gets it (at the next queue position) and every slot comes back.
///
/// Mutant that breaks it: `give-back-consumed` (the producer treats a
/// give-back as a consumed return: the frame is lost and consumer 1 waits
/// forever).
#[test]
fn a_frame_given_back_unconsumed_is_delivered_again() {
    loom::model(|| {
        let ring = Ring::new(1, 2);
        let mut ledger = Ledger::new(1, 0);
        let claim = ledger.loan(&ring.states).unwrap();
        let s = ledger.publish(claim, 1, 0, &ring.states);
        ring.q().push(s).unwrap();
        let taken = ring.q().take(0).unwrap().unwrap();
        let r0 = ring.clone();
        let failing = thread::spawn(move || {
            r0.push(0, pack_give_back(0, taken.slot()));
            r0.free.notify();
        });
        let r1 = ring.clone();
        let healthy = thread::spawn(move || {
            let claim = r1
                .ready
                .wait_until(WaitStrategy::FUTEX, FOREVER, || r1.q().take(1).unwrap())
                .unwrap();
            r1.give_back(1, claim.slot());
            claim.pos()
        });
        // The producer: collect (both queues), publish given-back frames
        // again, until the slot is free.
        ring.free.wait_until(WaitStrategy::FUTEX, FOREVER, || {
            let mut again = vec![];
            for c in 0..2 {
                ring.collect(&mut ledger, c, &mut again).unwrap();
            }
            for &(_, s) in &again {
                ring.q().push(s as u32).unwrap();
                ring.ready.notify();
            }
            (ledger.free_len() == 1).then_some(())
        });
        failing.join().unwrap();
        assert_eq!(healthy.join().unwrap(), 1, "delivered again at position 1");
        assert_eq!(ledger.bogus(), 0);
    });
}

/// Mutant that breaks it: `revoke-store`.
#[test]
fn drop_oldest_withdrawal_and_a_claim_never_both_win() {
    // The producer withdraws the oldest frame (drop-oldest) while a consumer
    // takes frames; then, the queue nearly full, it evicts the head. Every
    // published frame ends up either taken exactly once or withdrawn exactly
    // once, and the consumer never reads a slot the producer took back.
    loom::model(|| {
        let ring = Ring::new(2, 0);
        ring.q().push(0).unwrap();
        ring.q().push(1).unwrap();
        let r2 = ring.clone();
        let t = thread::spawn(move || {
            let mut got = vec![];
            while let Some(c) = r2.q().take(3).unwrap() {
                got.push(c.slot());
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
                SlotState::decode(ring.claims[*s as usize].load(Ordering::Relaxed)),
                Some(SlotState::Reading { owner: 3, .. })
            ));
        }
        for s in &withdrawn {
            assert_eq!(
                ring.claims[*s as usize].load(Ordering::Relaxed),
                SlotState::Free.encode()
            );
        }
        let mut all: Vec<u32> = taken.iter().chain(&withdrawn).copied().collect();
        // Slot 1 may still be queued (neither taken nor evicted) if the
        // consumer finished first and the evict only passed slot 0's entry.
        all.extend(std::iter::from_fn(|| {
            ring.q().take(4).unwrap().map(|c| c.slot())
        }));
        all.sort_unstable();
        assert_eq!(all, vec![0, 1], "every frame accounted for exactly once");
    });
}

/// Two consumers join two groups at once through the roster handshake; the
/// producer admits both and publishes one frame to both groups. Each consumer
/// takes it from its own group's queue.
///
/// Mutant that breaks it: `admit-relaxed` (a consumer sees itself admitted
/// but reads a stale group index, and takes from the wrong queue).
#[test]
fn two_consumers_join_two_groups_through_the_roster() {
    struct Table {
        entries: Vec<ConsumerEntry>,
        roster: AtomicU32,
        groups: Vec<Arc<Ring>>,
    }
    loom::model(|| {
        let t = Arc::new(Table {
            entries: vec![ConsumerEntry::new(), ConsumerEntry::new()],
            roster: AtomicU32::new(0),
            groups: vec![Ring::new(1, 0), Ring::new(1, 0)],
        });
        // The producer's free event and ready event (one of each per ring).
        let events = Arc::new((Event::new(), Event::new()));
        let consumers: Vec<_> = [("a", 0u8), ("b", 1u8)]
            .into_iter()
            .enumerate()
            .map(|(i, (name, want))| {
                let (t, ev) = (t.clone(), events.clone());
                thread::spawn(move || {
                    let e = &t.entries[i];
                    assert_eq!(
                        roster::claim_entry(&t.entries[i..=i], 100 + i as u64),
                        Some(0)
                    );
                    roster::request_join(e, name.as_bytes(), &t.roster, &ev.0);
                    let (g, slot) =
                        ev.1.wait_until(WaitStrategy::FUTEX, FOREVER, || {
                            let Admission::Admitted(g) = roster::admission(e, 2).unwrap() else {
                                return None;
                            };
                            let q = t.groups[g as usize].q();
                            q.take(i as u8).unwrap().map(|c| (g, c.slot()))
                        })
                        .unwrap();
                    assert_eq!(g, want, "consumer {name} admitted into the wrong group");
                    slot
                })
            })
            .collect();
        // The producer: admit whoever asks (group by name), then publish.
        let mut seen = 0;
        let mut admitted = 0;
        while admitted < 2 {
            events.0.wait_until(WaitStrategy::FUTEX, FOREVER, || {
                roster::changed(&t.roster, &mut seen).then_some(())
            });
            for e in &t.entries {
                if roster::request(e) == Request::Join {
                    let (name, len) = roster::load_name(&e.group_name);
                    let g = match &name[..len] {
                        b"a" => 0,
                        b"b" => 1,
                        other => panic!("a garbled group name {other:?}"),
                    };
                    roster::admit(e, g);
                    admitted += 1;
                }
            }
        }
        for g in &t.groups {
            g.q().push(0).unwrap();
        }
        events.1.notify();
        for c in consumers {
            assert_eq!(c.join().unwrap(), 0);
        }
    });
}

/// A hand-back orders the consumer's reads of the frame before the
/// producer's next writes to it: the return cell's Release store, the
/// drain's Acquire load. Loom's cell tracking checks that the two accesses
/// of the frame (stood for by `frame`, never dereferenced) never overlap.
///
/// Mutant that breaks it: `return-cell-relaxed` (the cell stored Relaxed).
#[test]
fn a_returned_slot_is_written_again_only_after_its_reader_is_done() {
    loom::model(|| {
        let ring = Ring::new(1, 1);
        let frame = Arc::new(loom::cell::UnsafeCell::new(0u8));
        let (r2, f2) = (ring.clone(), frame.clone());
        let consumer = thread::spawn(move || {
            // The consumer reads the frame, then hands its slot back.
            f2.with(|_| ());
            r2.push(0, pack_return(0, 0));
        });
        // The producer collects the return, then writes the slot again.
        let r = ring.r(0);
        while r.drain(&mut ring.heads[0].lock().unwrap(), |_| {}).unwrap() == 0 {
            thread::yield_now();
        }
        frame.with_mut(|_| ());
        consumer.join().unwrap();
    });
}
