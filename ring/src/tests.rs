//! Tests of the public API and the protocols through real segments, in one
//! process (threads stand in for processes; a "dead" consumer is one whose
//! table entry is made to name a process that has exited).

use crate::platform::clock::realtime_ns;
use crate::platform::process::ProcessId;
use crate::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn name(tag: &str) -> String {
    format!("framering-ring-{tag}-{}", std::process::id())
}

const SHAPE: FrameShape = FrameShape::new(4, 8, 3);

fn producer(n: &str, slots: u32, groups: &[&str], bp: Backpressure) -> Producer {
    Producer::builder(n)
        .shape(SHAPE)
        .slots(slots)
        .max_consumers(4)
        .max_groups(4)
        .groups(groups.iter().copied())
        .backpressure(bp)
        .create()
        .unwrap()
}

fn consumer(n: &str, group: &str, latest: bool) -> Consumer {
    Consumer::builder(n)
        .group(group)
        .latest(latest)
        .attach()
        .unwrap()
}

fn put(p: &Producer, fill: u8) -> Option<u64> {
    let mut s = match p.loan(Duration::from_millis(50)) {
        Ok(s) => s,
        Err(e) if e.is_timeout() => return None,
        Err(e) => panic!("{e}"),
    };
    s.pixels_mut().fill(fill);
    Some(
        s.publish(&FrameMeta::new().source(b"g").src_size(8, 4))
            .unwrap(),
    )
}

fn take(c: &Consumer, timeout: Duration) -> Option<Frame> {
    match c.take(timeout) {
        Ok(Take::Frame(f)) => Some(f),
        Err(e) if e.is_timeout() => None,
        other => panic!("{other:?}"),
    }
}

fn seq_of(c: &Consumer) -> Option<u64> {
    let f = take(c, Duration::from_millis(20))?;
    assert!(f.pixels().iter().all(|&b| b == (f.seq() % 251) as u8));
    Some(f.seq())
}

/// Makes consumer `c`'s table entry name a process that has exited, and
/// forgets `c` without handing anything back (forget its frames first).
fn kill(p: &Producer, c: Consumer) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId::of(child.id());
    child.wait().unwrap();
    let dead = dead.unwrap_or(ProcessId {
        pid: u32::MAX - 7,
        start_ticks: 1,
    });
    p.segment().consumers()[c.index() as usize]
        .owner
        .store(dead.owner_word(), Ordering::Release);
    c.drop_liveness_lock();
    std::mem::forget(c);
}

#[test]
fn threads_move_frames_in_order_and_in_place() {
    let n = name("threads");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let n2 = n.clone();
    let reader = std::thread::spawn(move || {
        let c = Consumer::builder(&n2).expect_shape(SHAPE).attach().unwrap();
        let mut next = 0u64;
        loop {
            match c.take(Duration::from_secs(10)).unwrap() {
                Take::Frame(f) => {
                    assert_eq!(f.seq(), next);
                    assert!(f.pixels().iter().all(|&b| b == (next % 251) as u8));
                    assert_eq!(f.info().source(), format!("f{next}").as_bytes());
                    assert_eq!(f.info().src_width, 8);
                    next += 1;
                }
                Take::EndOfStream => return next,
                other => panic!("{other:?}"),
            }
        }
    });
    for i in 0..5000u64 {
        let mut s = p.loan(Duration::from_secs(10)).unwrap();
        s.pixels_mut().fill((i % 251) as u8);
        let source = format!("f{i}");
        let seq = s
            .publish(&FrameMeta::new().source(source.as_bytes()).src_size(8, 4))
            .unwrap();
        assert_eq!(seq, i);
    }
    p.finish();
    p.drain(Duration::from_secs(10)).unwrap();
    assert_eq!(reader.join().unwrap(), 5000);
    assert_eq!(p.free_slots(), 4);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_adopts_the_ring_shape_unless_it_insists_on_another() {
    let n = name("adopt");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let c = Consumer::builder(&n).attach().unwrap();
    assert_eq!((c.shape(), c.slots()), (SHAPE, 2));
    let e = Consumer::builder(&n)
        .expect_shape(FrameShape::new(4, 8, 1))
        .attach()
        .unwrap_err();
    assert!(
        matches!(e, AttachError::ShapeMismatch { ring: SHAPE, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("ring {n:?} holds 4x8x3 frames, but this consumer expects 4x8x1 (leave the shape unset to adopt the ring's)")
    );
    drop(c);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_reads_the_frame_rate_its_producer_recorded() {
    for (rate, want) in [
        (Some((30000, 1001)), Some((30000, 1001))),
        (Some((25, 0)), None),
        (None, None),
    ] {
        let n = name("rate");
        let mut b = Producer::builder(&n).shape(SHAPE);
        if let Some((num, den)) = rate {
            b = b.frame_rate(num, den);
        }
        let p = b.create().unwrap();
        let c = Consumer::builder(&n).attach().unwrap();
        assert_eq!(c.frame_rate(), want, "{rate:?}");
        drop(c);
        p.unlink().unwrap();
    }
}

#[test]
fn errors_read_as_sentences() {
    let n = name("absent");
    let e = Consumer::builder(&n).attach().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("ring {n:?} does not exist (no /dev/shm/{n})")
    );
    let e = Producer::builder("../etc")
        .shape(SHAPE)
        .create()
        .unwrap_err();
    assert!(
        e.to_string().starts_with("invalid ring name \"../etc\""),
        "{e}"
    );
    let e = Producer::builder(&n).create().unwrap_err();
    assert!(e.to_string().contains("no frame shape given"), "{e}");
    let e = Producer::builder(&n)
        .shape(FrameShape::new(0, 1, 1))
        .create()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("ring {n:?}: height must be between 1 and 32768, got 0")
    );
}

#[test]
fn timeouts_are_reported_the_same_way_by_loan_take_drain_and_wait_for_groups() {
    let n = name("timeouts");
    let p = producer(&n, 1, &["default"], Backpressure::Block);
    // Two groups never subscribe: the wait ends with Err(Timeout).
    let e = p.wait_for_groups(2, Duration::from_millis(10)).unwrap_err();
    assert!(
        e.is_timeout()
            && matches!(e, WaitError::Timeout { waited } if waited == Duration::from_millis(10))
    );
    p.wait_for_groups(1, Duration::from_millis(10)).unwrap();
    let c = consumer(&n, "default", false);
    let e = c.take(Duration::from_millis(10)).unwrap_err();
    assert!(
        e.is_timeout()
            && matches!(e, TakeError::Timeout { waited } if waited == Duration::from_millis(10))
    );
    put(&p, 1).unwrap();
    let held = take(&c, Duration::from_secs(1)).unwrap();
    let e = p.loan(Duration::from_millis(10)).unwrap_err();
    assert!(
        e.is_timeout()
            && matches!(e, LoanError::Timeout { waited } if waited == Duration::from_millis(10))
    );
    // A frame held: the ring does not drain in time.
    p.finish();
    let e = p.drain(Duration::from_millis(10)).unwrap_err();
    assert!(
        e.is_timeout()
            && matches!(e, WaitError::Timeout { waited } if waited == Duration::from_millis(10))
    );
    drop(held);
    p.drain(Duration::MAX).unwrap();
    p.unlink().unwrap();
}

#[test]
fn a_dropped_slot_goes_back_and_decoder_threads_can_fill_slots() {
    let n = name("slots");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    drop(p.loan(Duration::from_secs(1)).unwrap());
    assert_eq!(p.free_slots(), 4);
    // Two slots filled by two threads at once, published in order.
    let a = p.loan(Duration::from_secs(1)).unwrap();
    let b = p.loan(Duration::from_secs(1)).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let ta = s.spawn(move || {
            let mut a = a;
            a.pixels_mut().fill(0);
            a
        });
        let tb = s.spawn(move || {
            let mut b = b;
            b.pixels_mut().fill(1);
            b
        });
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!(a.publish(&FrameMeta::new()).unwrap(), 0);
    assert_eq!(b.publish(&FrameMeta::new()).unwrap(), 1);
    assert_eq!((seq_of(&c), seq_of(&c)), (Some(0), Some(1)));
    p.unlink().unwrap();
}

#[test]
fn a_frame_goes_to_another_thread_and_returns_the_slot_there() {
    let n = name("lease");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    for i in 0..2 {
        put(&p, i).unwrap();
    }
    let leases: Vec<Frame> = (0..2)
        .map(|_| take(&c, Duration::from_secs(1)).unwrap())
        .collect();
    // Both slots are out; the consumer itself may even go away first.
    drop(c);
    assert!(p.loan(Duration::from_millis(20)).unwrap_err().is_timeout());
    let sums: Vec<u64> = leases
        .into_iter()
        .map(|l| std::thread::spawn(move || (l.seq(), l.pixels()[0] as u64)))
        .map(|t| t.join().unwrap())
        .map(|(seq, px)| seq * 10 + px)
        .collect();
    assert_eq!(sums, vec![0, 11]);
    // Both came back, and the entry was freed once the last lease went.
    p.loan(Duration::from_secs(1)).unwrap();
    p.service().unwrap();
    assert_eq!(p.consumers(), 0);
    p.unlink().unwrap();
}

#[test]
fn release_hands_the_slot_back_as_consumed() {
    let n = name("release");
    let p = producer(&n, 1, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    put(&p, 5).unwrap();
    let f = take(&c, Duration::from_secs(1)).unwrap();
    // The only slot is held.
    assert!(p.loan(Duration::from_millis(20)).unwrap_err().is_timeout());
    f.release();
    // Back, consumed: the producer loans it again and nothing is redelivered.
    drop(p.loan(Duration::from_secs(1)).unwrap());
    assert_eq!(p.redelivered(), 0);
    assert!(take(&c, Duration::from_millis(20)).is_none());
    drop(c);
    p.unlink().unwrap();
}

#[test]
fn a_detached_frame_keeps_its_address_and_pixels_while_its_slot_is_rewritten() {
    let n = name("detach");
    let p = producer(&n, 1, &["default"], Backpressure::Block);
    let c = Consumer::builder(&n).detachable().attach().unwrap();
    put(&p, 7).unwrap();
    let lease = take(&c, Duration::from_secs(1)).unwrap();
    let addr = lease.pixels().as_ptr();
    // The only slot is held: the producer has none to write.
    assert!(lease.blocks_producer());
    std::thread::scope(|s| {
        // The producer waits for it.
        let writer = s.spawn(|| {
            let mut slot = p.loan(Duration::from_secs(30)).unwrap();
            slot.pixels_mut().fill(9);
            slot.publish(&FrameMeta::new().user_meta(b"second"))
                .unwrap()
        });
        let detached = lease.detach().map_err(|(_, e)| e).unwrap();
        assert_eq!(writer.join().unwrap(), 1);
        // The slot now holds frame 1; the copy, at the old address, frame 0.
        assert_eq!(detached.pixels().as_ptr(), addr);
        assert!(detached.pixels().iter().all(|&b| b == 7));
        assert_eq!(detached.seq(), 0);
        let again = take(&c, Duration::from_secs(1)).unwrap();
        assert_eq!((again.seq(), again.user_meta()), (1, &b"second"[..]));
        assert!(again.pixels().iter().all(|&b| b == 9));
        assert_ne!(again.pixels().as_ptr(), addr);
        assert!(detached.pixels().iter().all(|&b| b == 7));
    });
    drop(c);
    // A consumer attached without `detachable` refuses, and keeps the frame.
    let plain = consumer(&n, "default", false);
    put(&p, 3).unwrap();
    let lease = take(&plain, Duration::from_secs(1)).unwrap();
    let (lease, e) = lease.detach().unwrap_err();
    assert!(matches!(e, DetachError::NotDetachable { .. }), "{e}");
    assert!(lease.pixels().iter().all(|&b| b == 3));
    drop(lease);
    p.unlink().unwrap();
}

#[test]
fn a_frame_blocks_the_producer_only_if_its_slot_would_be_free_without_it() {
    let n = name("blocks");
    let p = producer(&n, 2, &["default", "other"], Backpressure::Block);
    let (c, other) = (consumer(&n, "default", false), consumer(&n, "other", false));
    put(&p, 1).unwrap();
    let lease = take(&c, Duration::from_secs(1)).unwrap();
    assert!(!lease.blocks_producer()); // the other slot is free
    put(&p, 2).unwrap(); // now none is
                         // The other group has the frame queued: handing ours back frees nothing.
    assert!(!lease.blocks_producer());
    let mut held: Vec<Frame> = (0..2)
        .map(|_| take(&other, Duration::from_secs(1)).unwrap())
        .collect();
    // The other group reads it too: it may be keeping it while it waits,
    // as we do, so our share is worth letting go (else two groups on one
    // slot wait for each other).
    assert!(lease.blocks_producer());
    held.retain(|l| l.seq() != lease.seq());
    // Handed back by the other group but not collected yet: its claim word
    // still names it, and the producer frees nothing before collecting.
    assert!(!lease.blocks_producer());
    // Collected (while the producer looks for a slot): only we hold it.
    assert!(p.loan(Duration::from_millis(1)).unwrap_err().is_timeout());
    assert!(lease.blocks_producer());
    drop((lease, held));
    p.unlink().unwrap();
}

#[test]
fn two_threads_share_one_consumer() {
    let n = name("sharedc");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    let got = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = vec![];
                    loop {
                        match c.take(Duration::from_secs(10)).unwrap() {
                            Take::Frame(f) => seen.push(f.seq()),
                            Take::EndOfStream => return seen,
                            other => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for i in 0..2000u64 {
            let mut s = p.loan(Duration::from_secs(10)).unwrap();
            s.pixels_mut().fill((i % 251) as u8);
            s.publish(&FrameMeta::new()).unwrap();
        }
        p.finish();
        p.drain(Duration::from_secs(10)).unwrap();
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut got = got;
    got.sort_unstable();
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
    assert_eq!(c.frames_taken(), 2000);
    p.unlink().unwrap();
}

#[test]
fn shape_mismatch_and_full_table_are_refused() {
    let n = name("refuse");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let held: Vec<_> = (0..4).map(|_| consumer(&n, "default", false)).collect();
    assert!(matches!(
        Consumer::builder(&n).attach(),
        Err(AttachError::TooManyConsumers { max: 4, .. })
    ));
    drop(held);
    // The producer frees the entries of consumers that left.
    p.service().unwrap();
    consumer(&n, "default", false);
    // A second producer on a live ring is refused, naming us.
    match Producer::builder(&n).shape(SHAPE).create() {
        Err(CreateError::InUse { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    p.unlink().unwrap();
}

#[test]
fn a_ring_left_by_a_dead_producer_is_reclaimed() {
    let n = name("reclaim");
    kill_in_place(producer(&n, 2, &["default"], Backpressure::Block));
    let q = producer(&n, 3, &["default"], Backpressure::Block);
    assert_eq!(q.slots(), 3);
    q.unlink().unwrap();
}

/// A producer that "dies" (test double of a crash): its header names an
/// exited process and its liveness lock is released; its mapping leaks.
fn kill_in_place(p: Producer) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    p.segment()
        .header()
        .producer_pid
        .store(pid, Ordering::Release);
    crate::platform::liveness::unlock(p.segment().file(), crate::platform::liveness::PRODUCER_BYTE);
    std::mem::forget(p);
}

/// Two producers that find the same dead ring at the same moment: exactly
/// one of them creates the new ring, the other is refused as the ring is in
/// use, and the name names the winner's ring (a frame it publishes reaches a
/// consumer attached by name). Judging the old ring dead and removing its
/// name used to be two steps, so both could "reclaim" it and one of them
/// published into a segment nobody could attach to any more.
#[test]
fn two_producers_reclaiming_one_dead_ring_never_both_own_it() {
    for trial in 0..200u32 {
        let n = name(&format!("race{trial}"));
        kill_in_place(producer(&n, 2, &["default"], Backpressure::Block));
        let start = std::sync::Barrier::new(2);
        let created: Vec<Result<Producer, CreateError>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        Producer::builder(&n)
                            .shape(SHAPE)
                            .slots(2)
                            .groups(["default"])
                            .create()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let (won, lost): (Vec<_>, Vec<_>) = created.into_iter().partition(|r| r.is_ok());
        assert_eq!(won.len(), 1, "trial {trial}: {lost:?}");
        match &lost[0] {
            Err(CreateError::InUse { pid, .. }) => assert_eq!(*pid, std::process::id()),
            other => panic!("trial {trial}: {other:?}"),
        }
        let winner = won.into_iter().next().unwrap().unwrap();
        let c = consumer(&n, "default", false);
        let seq = put(&winner, trial as u8).unwrap();
        match c.take(Duration::from_secs(5)).unwrap() {
            Take::Frame(f) => {
                assert_eq!(f.seq(), seq);
                assert!(f.pixels().iter().all(|&b| b == trial as u8));
            }
            other => panic!("trial {trial}: {other:?}"),
        }
        drop(c);
        winner.unlink().unwrap();
    }
}

/// A producer's `unlink` removes its own ring's name only, never a later
/// ring of the same name.
#[test]
fn unlink_leaves_a_later_ring_of_the_name_alone() {
    let n = name("unlinkown");
    let first = producer(&n, 2, &["default"], Backpressure::Block);
    first.unlink().unwrap();
    let second = producer(&n, 2, &["default"], Backpressure::Block);
    assert!(matches!(first.unlink(), Err(OpenError::NotFound { .. })));
    assert!(inspect::RingView::open(&n).is_ok(), "the later ring stays");
    second.unlink().unwrap();
}

/// A blank file of the ring's name that changed moments ago may be a ring
/// being written by someone right now: it is never deleted, and the
/// producer says what it is and what to do (once old, it is reclaimed:
/// below).
#[test]
fn a_recent_blank_file_is_never_removed() {
    let n = name("recentblank");
    let path = format!("/dev/shm/{n}");
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let t = std::time::Instant::now();
    let e = Producer::builder(&n).shape(SHAPE).create().unwrap_err();
    assert!(matches!(e, CreateError::Blank { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let text = e.to_string();
    assert!(text.contains("framering clean --force"), "{text}");
    assert_eq!(std::fs::read(&path).unwrap().len(), 8192, "left alone");
    std::fs::remove_file(&path).unwrap();
}

/// A creator that died before writing its header leaves an empty or blank
/// file: once it is old it is "not a ring" to `list`, and still reclaimed by
/// the next producer of that name (a file with other content is not).
#[test]
fn a_blank_leftover_is_reclaimed_and_a_foreign_file_is_not() {
    let n = name("blank");
    let path = format!("/dev/shm/{n}");
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for bytes in [vec![], vec![0u8; 8192]] {
        std::fs::write(&path, &bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(old).unwrap();
        assert!(matches!(
            inspect::RingView::open(&n),
            Err(OpenError::NotARing { .. })
        ));
        let q = producer(&n, 2, &["default"], Backpressure::Block);
        q.unlink().unwrap();
    }
    // A consumer waiting for the ring keeps waiting on a blank leftover (its
    // next producer reclaims it) instead of refusing it at once.
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(old).unwrap();
    let t = std::time::Instant::now();
    let e = Consumer::builder(&n)
        .wait_for_ring(Duration::from_millis(200))
        .attach()
        .unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(200), "{e}");
    std::fs::write(&path, b"somebody else's data").unwrap();
    let e = Producer::builder(&n)
        .shape(FrameShape::new(2, 2, 1))
        .create()
        .unwrap_err();
    assert!(matches!(e, CreateError::Unreclaimable { .. }), "{e}");
    assert!(std::path::Path::new(&path).exists(), "left alone");
    std::fs::remove_file(&path).unwrap();
}

/// A consumer must never see a header without its producer: the producer's
/// identity, groups and policy are written before the layout version makes
/// the segment openable.
#[test]
fn an_openable_header_always_names_its_producer() {
    let n = name("halfinit");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let opener = s.spawn(|| {
            let mut seen = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(view) = inspect::RingView::open(&n) {
                    let st = view.snapshot();
                    assert_ne!(
                        st.producer.pid, 0,
                        "an openable ring without a producer pid"
                    );
                    assert_eq!(st.groups.len(), 1, "an openable ring without its groups");
                    seen += 1;
                }
            }
            seen
        });
        for _ in 0..300 {
            let p = producer(&n, 1, &["default"], Backpressure::Block);
            p.unlink().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let seen = opener.join().unwrap();
        assert!(seen > 0, "the opener never caught a ring");
    });
}

#[test]
fn frames_of_a_dead_consumer_are_delivered_again() {
    let n = name("dead");
    let p = producer(&n, 3, &["default"], Backpressure::Block);
    for i in 0..3u8 {
        put(&p, i).unwrap();
    }
    // A consumer takes two frames, returns one, then "dies".
    let victim = consumer(&n, "default", false);
    p.service().unwrap();
    let a = take(&victim, Duration::ZERO).unwrap();
    let b = take(&victim, Duration::ZERO).unwrap();
    assert_eq!((a.seq(), b.seq()), (0, 1));
    drop(a);
    let index = victim.index() as usize;
    std::mem::forget(b);
    kill(&p, victim);

    assert_eq!(p.reap_dead_consumers().unwrap(), 1);
    assert_eq!(
        p.segment().consumers()[index].owner.load(Ordering::Relaxed),
        0
    );
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    let mut seen = vec![];
    while let Some(f) = take(&c, Duration::from_millis(50)) {
        seen.push((f.seq(), f.info().redeliveries, f.pixels()[0]));
    }
    seen.sort();
    assert_eq!(seen, vec![(1, 1, 1), (2, 0, 2)]);
    p.unlink().unwrap();
}

#[test]
fn a_garbage_return_cell_is_an_error_that_marks_the_ring_failed() {
    let n = name("badreturn");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    let mut s = p.loan(Duration::from_secs(2)).unwrap();
    s.pixels_mut().fill(1);
    s.publish(&FrameMeta::new()).unwrap();
    let f = take(&c, Duration::from_secs(1)).unwrap();
    // Someone scribbles over the consumer's return queue, one cell past
    // where its first return goes: stamped for no position it can hold.
    let cells = p.segment().return_cells(c.index() as usize);
    cells[1].store(u64::MAX, Ordering::Relaxed);
    drop(f);
    // The producer collects the return, then finds the garbage after it
    // (at its next loan, or its liveness check) and fails the ring.
    let e = p.drain(Duration::from_secs(2)).unwrap_err();
    assert!(e.to_string().contains("return queue"), "{e}");
    let other = consumer(&n, "other", false);
    assert!(matches!(
        other.take(Duration::from_secs(1)),
        Ok(Take::ProducerFailed {
            reason: crate::FailReason::RingCorrupt
        })
    ));
    p.unlink().unwrap();
}

#[test]
fn a_scribbled_return_queue_head_stops_only_its_consumer() {
    let n = name("badhead");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    let publish = |v: u8| {
        let mut s = p.loan(Duration::from_secs(2)).unwrap();
        s.pixels_mut().fill(v);
        s.publish(&FrameMeta::new()).unwrap();
    };
    publish(1);
    drop(take(&c, Duration::from_secs(1)).unwrap());
    publish(2);
    drop(take(&c, Duration::from_secs(1)).unwrap());
    // Both returns collected (the second by this loan), one slot free.
    publish(3);
    assert_eq!(p.free_slots(), 1);
    // The shared head of the consumer's queue (the producer's copy of it,
    // stored for the consumer's full check) is scribbled over. The
    // producer reads only its own copy.
    let ret = &p.segment().consumers()[c.index() as usize].ret;
    ret.head.store(1000, Ordering::Relaxed);
    // The consumer reads it once its queue looks full by the head it saw
    // last (two returns on a 2-slot ring): it cannot hand the frame back,
    // and its next take says so.
    drop(take(&c, Duration::from_secs(1)).unwrap());
    assert!(matches!(
        c.take(Duration::from_millis(10)),
        Err(TakeError::Corrupt(_))
    ));
    assert!(c.check_returns().is_err());
    // The ring itself goes on for others.
    assert_eq!(
        p.segment().header().flags.load(Ordering::Relaxed) & crate::protocol::layout::FLAG_FAILED,
        0
    );
    p.unlink().unwrap();
}

#[test]
fn a_claim_word_naming_no_member_of_its_group_is_an_error() {
    for owner in [63u8, 5] {
        let n = name(&format!("badowner{owner}"));
        let p = producer(&n, 2, &["default"], Backpressure::Block);
        let c = consumer(&n, "default", false);
        p.service().unwrap();
        let mut s = p.loan(Duration::from_secs(2)).unwrap();
        s.pixels_mut().fill(1);
        s.publish(&FrameMeta::new()).unwrap();
        let f = take(&c, Duration::from_secs(1)).unwrap();
        let slot = f.info().slot as usize;
        p.reap_dead_consumers().unwrap();
        let w = &p.segment().claims(0)[slot];
        let word = w.load(Ordering::Relaxed);
        w.store(
            (word & !(0xff << 48)) | ((owner as u64) << 48),
            Ordering::Relaxed,
        );
        let e = p.reap_dead_consumers().unwrap_err();
        assert!(e.to_string().contains("claim word"), "{e}");
        drop(f);
        p.unlink().unwrap();
    }
}

#[test]
fn every_group_gets_every_frame_and_its_consumers_share_them() {
    let n = name("groups");
    let p = producer(&n, 4, &["a", "b"], Backpressure::Block);
    let readers: Vec<_> = ["a", "a", "b"]
        .into_iter()
        .map(|g| {
            let n = n.clone();
            std::thread::spawn(move || {
                let c = consumer(&n, g, false);
                let mut seen = vec![];
                loop {
                    match c.take(Duration::from_secs(10)).unwrap() {
                        Take::Frame(f) => {
                            let seq = f.seq();
                            assert!(f.pixels().iter().all(|&b| b == (seq % 251) as u8));
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
        let mut s = p.loan(Duration::from_secs(10)).unwrap();
        s.pixels_mut().fill((i % 251) as u8);
        s.publish(&FrameMeta::new()).unwrap();
    }
    p.finish();
    p.drain(Duration::from_secs(10)).unwrap();
    let mut a = vec![];
    let mut b = vec![];
    for r in readers {
        let (g, seen) = r.join().unwrap();
        if g == "a" {
            a.extend(seen)
        } else {
            b.extend(seen)
        }
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
    let p = producer(&n, 4, &["main"], Backpressure::Block);
    let main = consumer(&n, "main", false);
    assert_eq!(put(&p, 0), Some(0));
    assert_eq!(put(&p, 1), Some(1));
    let preview = consumer(&n, "preview", false);
    p.service().unwrap();
    assert_eq!(p.subscribed_groups(), 2);
    assert_eq!(put(&p, 2), Some(2));
    // The new group sees frame 2 only; the declared one sees them all.
    assert_eq!(seq_of(&preview), Some(2));
    assert_eq!(seq_of(&preview), None);
    assert_eq!(
        (seq_of(&main), seq_of(&main), seq_of(&main)),
        (Some(0), Some(1), Some(2))
    );
    assert_eq!(put(&p, 3), Some(3));
    assert_eq!(put(&p, 4), Some(4));
    // The preview leaves without taking 3 and 4; main takes them: the
    // slots come back although the preview never returned them.
    drop(preview);
    p.service().unwrap();
    assert_eq!(p.subscribed_groups(), 1);
    assert_eq!((seq_of(&main), seq_of(&main)), (Some(3), Some(4)));
    p.finish();
    p.drain(Duration::from_secs(2)).unwrap();
    // What the preview never took counts as its drops.
    let preview = p.groups().into_iter().find(|g| g.name == "preview");
    let preview = preview.expect("a group gone with drops is still reported");
    assert_eq!(
        (
            preview.dropped,
            preview.declared,
            preview.members,
            preview.unconsumed(),
            preview.live,
            preview.lingering
        ),
        (2, false, 0, 0, false, None)
    );
    p.unlink().unwrap();
}

#[test]
fn block_with_no_group_waits_for_a_subscriber() {
    let n = name("nogroup");
    let p = producer(&n, 2, &[], Backpressure::Block);
    assert!(p.loan(Duration::from_millis(30)).unwrap_err().is_timeout());
    let c = consumer(&n, "late", false);
    assert_eq!(put(&p, 0), Some(0));
    assert_eq!(seq_of(&c), Some(0));
    p.unlink().unwrap();
}

#[test]
fn drop_oldest_keeps_the_newest_and_never_takes_a_frame_being_read() {
    let n = name("dropold");
    let p = producer(&n, 4, &["default"], Backpressure::DropOldest);
    let c = consumer(&n, "default", false);
    assert_eq!(put(&p, 0), Some(0));
    let held = take(&c, Duration::from_millis(50)).unwrap();
    // The producer never waits: 20 more frames into 3 remaining slots.
    for i in 1..=20u64 {
        assert_eq!(put(&p, (i % 251) as u8), Some(i));
    }
    // The frame being read was not touched.
    assert_eq!(held.seq(), 0);
    assert!(held.pixels().iter().all(|&b| b == 0));
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
    let p = producer(&n, 2, &["default"], Backpressure::DropOldest);
    let c = consumer(&n, "default", false);
    for i in 0..1000u64 {
        assert_eq!(put(&p, (i % 251) as u8), Some(i));
    }
    assert_eq!(p.dropped(), 998);
    let rest: Vec<_> = std::iter::from_fn(|| seq_of(&c)).collect();
    assert_eq!(rest, vec![998, 999]);
    p.unlink().unwrap();
}

#[test]
fn latest_skips_to_the_newest_frame_and_returns_the_rest() {
    let n = name("latest");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", true);
    for i in 0..3u8 {
        put(&p, i).unwrap();
    }
    assert_eq!(seq_of(&c), Some(2));
    assert_eq!(c.skipped(), 2);
    // Every slot is back with the producer.
    p.finish();
    p.drain(Duration::from_secs(2)).unwrap();
    p.unlink().unwrap();
}

#[test]
fn a_dead_consumer_of_an_ad_hoc_group_without_linger_releases_its_slots() {
    let n = name("adhocdead");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(2)
        .group_linger(Duration::ZERO)
        .create()
        .unwrap();
    let victim = consumer(&n, "tmp", false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    let f = take(&victim, Duration::from_millis(50)).unwrap();
    std::mem::forget(f);
    kill(&p, victim);
    assert_eq!(
        p.reap_dead_consumers().unwrap(),
        0,
        "nobody to redeliver to"
    );
    assert_eq!(p.free_slots(), 2);
    assert_eq!(p.subscribed_groups(), 0);
    p.unlink().unwrap();
}

#[test]
fn block_keeps_at_most_max_queued_frames_ahead_of_the_consumers() {
    let n = name("maxq");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(8)
        .max_queued(3)
        .create()
        .unwrap();
    let c = consumer(&n, "default", false);
    for i in 0..3u8 {
        put(&p, i).unwrap();
    }
    // Five slots are free, but three frames wait already.
    assert_eq!(p.free_slots(), 5);
    assert!(p.loan(Duration::from_millis(30)).unwrap_err().is_timeout());
    // A consumer taking one (and holding it) lets the producer go on.
    let held = take(&c, Duration::from_millis(50)).unwrap();
    assert_eq!(put(&p, 3), Some(3));
    assert!(p.loan(Duration::from_millis(30)).unwrap_err().is_timeout());
    drop(held);
    p.unlink().unwrap();
}

#[test]
fn an_ad_hoc_group_whose_consumer_died_keeps_its_frames_for_the_linger_period() {
    let n = name("linger");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(4)
        .group_linger(Duration::from_millis(400))
        .create()
        .unwrap();
    let victim = consumer(&n, "rec", false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    let f = take(&victim, Duration::from_millis(50)).unwrap();
    assert_eq!(f.seq(), 0);
    std::mem::forget(f);
    kill(&p, victim);
    // Its frame being read goes back to the group, which stays subscribed.
    assert_eq!(p.reap_dead_consumers().unwrap(), 1);
    assert_eq!(p.subscribed_groups(), 1);
    let report = |p: &Producer| p.groups().into_iter().find(|g| g.name == "rec");
    let lingering = report(&p).unwrap().lingering.expect("lingering");
    assert!(lingering <= Duration::from_millis(400));
    // Frames published meanwhile are kept too.
    put(&p, 2).unwrap();
    // A consumer restarted in time gets every frame, none lost.
    let back = consumer(&n, "rec", false);
    p.service().unwrap();
    let mut seen = vec![];
    while let Some(f) = take(&back, Duration::from_millis(50)) {
        seen.push(f.seq());
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
    assert_eq!(report(&p).unwrap().lingering, None);
    // Dies again, and nobody comes back: released after the period.
    kill(&p, back);
    put(&p, 3).unwrap();
    p.reap_dead_consumers().unwrap();
    assert_eq!(p.free_slots(), 3);
    std::thread::sleep(Duration::from_millis(450));
    p.reap_dead_consumers().unwrap();
    assert_eq!(p.free_slots(), 4);
    assert_eq!(p.subscribed_groups(), 0);
    assert_eq!(report(&p).unwrap().dropped, 1);
    p.unlink().unwrap();
}

#[test]
fn a_group_whose_last_consumer_left_releases_its_frames_at_once() {
    let n = name("leftnow");
    let p = producer(&n, 4, &[], Backpressure::Block);
    let c = consumer(&n, "rec", false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    drop(c);
    p.service().unwrap();
    assert_eq!(p.free_slots(), 4);
    assert_eq!(p.subscribed_groups(), 0);
    // With no group left, a lossless producer waits for the next consumer.
    assert!(p.loan(Duration::from_millis(30)).unwrap_err().is_timeout());
    p.unlink().unwrap();
}

#[test]
fn a_live_group_never_holds_back_a_lossless_one() {
    let n = name("perpolicy");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(4)
        .max_consumers(4)
        .group("rec", Backpressure::Block)
        .group("preview", Backpressure::DropOldest)
        .create()
        .unwrap();
    let rec = consumer(&n, "rec", false);
    let preview = consumer(&n, "preview", false);
    p.service().unwrap();
    // The preview holds one frame and takes nothing else; the recorder
    // takes every frame as it comes. The producer never waits on the
    // preview.
    assert_eq!(put(&p, 0), Some(0));
    let held = take(&preview, Duration::from_millis(50)).unwrap();
    let mut recorded = vec![];
    for i in 1..40u64 {
        assert_eq!(put(&p, (i % 251) as u8), Some(i), "blocked at frame {i}");
        while let Some(s) = seq_of(&rec) {
            recorded.push(s);
        }
    }
    assert_eq!(recorded, (0..40).collect::<Vec<_>>());
    assert_eq!(held.seq(), 0);
    let reports = p.groups();
    let of = |name: &str| reports.iter().find(|g| g.name == name).unwrap().clone();
    assert_eq!(of("rec").dropped, 0);
    assert!(of("preview").live);
    assert!(of("preview").dropped >= 30, "{:?}", of("preview"));
    assert_eq!(preview.group_backpressure(), Some(Backpressure::DropOldest));
    assert_eq!(rec.group_backpressure(), Some(Backpressure::Block));
    // And the recorder does hold the producer back: lossless.
    assert_eq!(put(&p, 0), Some(40));
    assert_eq!(put(&p, 0), Some(41));
    let mut n_put = 0;
    while put(&p, 0).is_some() {
        n_put += 1;
        assert!(
            n_put < 8,
            "a lossless group with a stalled consumer must block"
        );
    }
    drop(held);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_can_create_its_group_live() {
    let n = name("livejoin");
    let p = producer(&n, 3, &[], Backpressure::Block);
    let rec = consumer(&n, "rec", false);
    let preview = Consumer::builder(&n)
        .group("preview")
        .group_backpressure(Backpressure::DropOldest)
        .attach()
        .unwrap();
    p.service().unwrap();
    for i in 0..20u8 {
        assert!(put(&p, i).is_some(), "blocked at frame {i}");
        assert_eq!(seq_of(&rec), Some(i as u64));
    }
    // The preview takes the newest frames that were kept for it.
    let got = seq_of(&preview).unwrap();
    assert!(got >= 17, "{got}");
    let g = p.groups();
    assert!(g.iter().any(|g| g.name == "preview" && g.dropped >= 17));
    p.unlink().unwrap();
}

#[test]
fn a_frame_given_back_unconsumed_is_delivered_again_to_its_group_only() {
    let n = name("give-back");
    let p = producer(&n, 3, &["a", "b"], Backpressure::Block);
    let ca = consumer(&n, "a", false);
    let cb = consumer(&n, "b", false);
    p.service().unwrap();
    put(&p, 0).unwrap();
    // Group a's output failed: the frame goes back unconsumed.
    let f = take(&ca, Duration::ZERO).unwrap();
    assert_eq!((f.seq(), f.info().redeliveries), (0, 0));
    f.give_back();
    assert_eq!(seq_of(&cb), Some(0));
    // The producer collects the give-back as it goes (here: its next loan)
    // and publishes the frame to group a again: its next take gets it.
    put(&p, 1).unwrap();
    let again = take(&ca, Duration::from_secs(1)).unwrap();
    assert_eq!((again.seq(), again.info().redeliveries), (0, 1));
    assert!(again.pixels().iter().all(|&b| b == 0));
    drop(again);
    assert_eq!(seq_of(&ca), Some(1));
    // Group b got each frame once, and nothing more.
    assert_eq!(seq_of(&cb), Some(1));
    assert_eq!(seq_of(&cb), None);
    assert_eq!(p.redelivered(), 1);

    // A lease given back from another thread, at the end of the stream:
    // the drain waits for it to be consumed, then completes.
    put(&p, 2).unwrap();
    assert_eq!(seq_of(&cb), Some(2));
    let lease = take(&ca, Duration::from_secs(1)).unwrap();
    std::thread::spawn(move || lease.give_back())
        .join()
        .unwrap();
    p.finish();
    assert!(p.drain(Duration::from_millis(50)).unwrap_err().is_timeout());
    let last = take(&ca, Duration::from_secs(1)).unwrap();
    assert_eq!((last.seq(), last.info().redeliveries), (2, 1));
    drop(last);
    p.drain(Duration::from_secs(2)).unwrap();
    assert_eq!(p.redelivered(), 2);
    assert!(matches!(
        ca.take(Duration::from_secs(1)),
        Ok(Take::EndOfStream)
    ));
    assert!(matches!(
        cb.take(Duration::from_secs(1)),
        Ok(Take::EndOfStream)
    ));
    p.unlink().unwrap();
}

#[test]
fn a_given_back_frame_goes_to_the_next_consumer_of_the_group() {
    let n = name("give-back-next");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let failing = consumer(&n, "default", false);
    p.service().unwrap();
    for i in 0..3u8 {
        put(&p, i).unwrap();
    }
    // The failing consumer gives back what it took and leaves.
    let (a, b) = (
        take(&failing, Duration::ZERO).unwrap(),
        take(&failing, Duration::ZERO).unwrap(),
    );
    a.give_back();
    b.give_back();
    drop(failing);
    let healthy = consumer(&n, "default", false);
    p.finish();
    assert!(p.drain(Duration::from_millis(50)).unwrap_err().is_timeout());
    let mut seen = vec![];
    while let Some(f) = take(&healthy, Duration::from_millis(200)) {
        assert!(f.pixels().iter().all(|&b| b == f.seq() as u8));
        seen.push((f.seq(), f.info().redeliveries));
    }
    seen.sort();
    assert_eq!(seen, vec![(0, 1), (1, 1), (2, 0)]);
    p.drain(Duration::from_secs(2)).unwrap();
    assert_eq!(p.redelivered(), 2);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_that_gave_frames_back_and_left_leaves_its_group_lingering() {
    let n = name("failedleave");
    let p = producer(&n, 4, &[], Backpressure::Block);
    let c = consumer(&n, "rec", false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    // Its output failed: it hands frame 0 back unconsumed and exits.
    take(&c, Duration::from_millis(50)).unwrap().give_back();
    drop(c);
    p.service().unwrap();
    let rec = p.groups().into_iter().find(|g| g.name == "rec").unwrap();
    assert!(rec.lingering.is_some(), "{rec:?}");
    // The next consumer of the group gets both frames.
    let next = consumer(&n, "rec", false);
    p.service().unwrap();
    let mut seen = vec![];
    while let Some(s) = seq_of(&next) {
        seen.push(s);
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1]);
    p.unlink().unwrap();
}

#[test]
fn a_producer_waiting_for_a_slot_sleeps_instead_of_spinning() {
    use nix::time::{clock_gettime, ClockId};
    let n = name("nospin");
    let p = producer(&n, 2, &[], Backpressure::Block);
    let c = consumer(&n, "g", false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    // Every slot is held (one being read, one queued) while the group's
    // queue has room: the wait must not mistake that room for progress.
    let held = take(&c, Duration::from_millis(50)).unwrap();
    let cpu = || {
        let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
        Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
    };
    let before = cpu();
    assert!(p.loan(Duration::from_millis(300)).unwrap_err().is_timeout());
    let spent = cpu() - before;
    assert!(
        spent < Duration::from_millis(100),
        "spun for {spent:?} of CPU in a 300 ms wait"
    );
    drop(held);
    p.unlink().unwrap();
}

#[test]
fn dtype_user_meta_and_timestamps_travel_with_the_frame() {
    let n = name("dtype-meta");
    let shape = FrameShape::new(3, 5, 2).with_dtype(Dtype::F32);
    let p = Producer::builder(&n)
        .shape(shape)
        .slots(3)
        .user_meta_bytes(16)
        .create()
        .unwrap();
    let c = Consumer::builder(&n).attach().unwrap();
    assert_eq!(c.shape(), shape);
    assert_eq!(c.user_meta_capacity(), 16);
    assert_eq!(p.user_meta_capacity(), 16);
    // A consumer that insists on u8 frames is refused.
    assert!(matches!(
        Consumer::builder(&n)
            .expect_shape(FrameShape::new(0, 0, 2))
            .attach(),
        Err(AttachError::ShapeMismatch { .. })
    ));

    let mut s = p.loan(Duration::from_secs(1)).unwrap();
    assert_eq!(s.pixels_mut().len(), 3 * 5 * 2 * 4);
    for (i, px) in s.pixels_mut().chunks_exact_mut(4).enumerate() {
        px.copy_from_slice(&(i as f32 * 0.5).to_ne_bytes());
    }
    let before = realtime_ns();
    s.publish(&FrameMeta::new().pts_ns(-40).user_meta(b"hello"))
        .unwrap();
    let s = p.loan(Duration::from_secs(1)).unwrap();
    s.publish(&FrameMeta::new().capture_ns(1234)).unwrap();
    // Too long for the 16 bytes: refused, and the slot is not lost.
    let s = p.loan(Duration::from_secs(1)).unwrap();
    assert!(matches!(
        s.publish(&FrameMeta::new().user_meta(&[0; 17])),
        Err(PublishError::UserMetaTooLong {
            len: 17,
            capacity: 16
        })
    ));

    let Ok(Take::Frame(f)) = c.take(Duration::from_secs(1)) else {
        panic!()
    };
    let values: Vec<f32> = f
        .pixels()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values[7], 3.5);
    assert_eq!(f.user_meta(), b"hello");
    assert_eq!(f.info().pts_ns, Some(-40));
    assert!(f.info().capture_ns >= before && f.info().capture_ns <= realtime_ns());
    drop(f);
    let Ok(Take::Frame(f)) = c.take(Duration::from_secs(1)) else {
        panic!()
    };
    let lease = f;
    assert_eq!(lease.user_meta(), b"");
    assert_eq!((lease.info().capture_ns, lease.info().pts_ns), (1234, None));
    drop(lease);
    drop(c);
    p.finish();
    p.drain(Duration::from_secs(1)).unwrap();
    p.unlink().unwrap();
}

#[test]
fn a_user_meta_length_beyond_the_capacity_in_the_segment_is_clamped() {
    let n = name("meta-clamp");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(1)
        .user_meta_bytes(8)
        .create()
        .unwrap();
    let c = Consumer::builder(&n).attach().unwrap();
    let s = p.loan(Duration::from_secs(1)).unwrap();
    let slot = s.index() as usize;
    s.publish(&FrameMeta::new().user_meta(b"abc")).unwrap();
    // A misbehaving peer writes a huge length.
    p.seg.slot_meta()[slot]
        .user_len
        .store(u32::MAX, Ordering::Relaxed);
    let Ok(Take::Frame(f)) = c.take(Duration::from_secs(1)) else {
        panic!()
    };
    assert_eq!(f.user_meta().len(), 8);
    assert_eq!(&f.user_meta()[..3], b"abc");
    drop(f);
    drop(c);
    p.unlink().unwrap();
}

#[test]
fn status_shows_the_frames_a_consumer_holds_and_the_oldest_ones_age() {
    let n = name("held-age");
    let p = producer(&n, 4, &[], Backpressure::Block);
    let c = consumer(&n, DEFAULT_GROUP, false);
    put(&p, 0).unwrap();
    put(&p, 1).unwrap();
    let f0 = take(&c, Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    let f1 = take(&c, Duration::from_secs(1)).unwrap();
    let view = inspect::RingView::open(&n).unwrap();
    let me = &view.snapshot().consumers[0];
    assert_eq!(me.slots_held, 2);
    let age = me.oldest_held_age_s.unwrap();
    assert!((0.12..5.0).contains(&age), "{age}");
    drop((f0, f1));
    assert_eq!(view.snapshot().consumers[0].oldest_held_age_s, None);
    drop(c);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_that_keeps_its_frames_sees_the_stream_end_without_handing_them_back() {
    let n = name("ended");
    let p = producer(&n, 4, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    assert!(c.take_now().unwrap().is_none(), "nothing published yet");
    assert!(!c.stream_ended().unwrap());
    for i in 0..3u8 {
        put(&p, i).unwrap();
    }
    let first = c
        .take_now()
        .unwrap()
        .expect("a queued frame, without waiting");
    p.finish();
    assert!(!c.stream_ended().unwrap(), "two frames are still queued");
    let mut kept = vec![first];
    while let Some(f) = c.take_now().unwrap() {
        kept.push(f);
    }
    assert_eq!(kept.iter().map(|f| f.seq()).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(c.stream_ended().unwrap());
    // `take` cannot report the end: the ring drains only once they are back.
    assert!(take(&c, Duration::from_millis(20)).is_none());
    drop(kept);
    p.drain(Duration::from_secs(5)).unwrap();
    assert!(matches!(
        c.take(Duration::from_secs(1)).unwrap(),
        Take::EndOfStream
    ));
    p.unlink().unwrap();
}

#[test]
fn a_cancelled_consumer_stops_waiting_but_still_gets_queued_frames() {
    let n = name("cancel");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let stop = Canceller::new();
    let c = Consumer::builder(&n)
        .cancel_with(stop.clone())
        .attach()
        .unwrap();
    assert!(!c.canceller().is_cancelled());
    // A take blocked for a minute returns when another thread cancels.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| c.take(Duration::from_secs(60)).map(|_| ()));
        // Cancelled whether the waiter already sleeps or not yet.
        stop.cancel();
        let r = waiter.join().unwrap();
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
    });
    assert!(c.canceller().is_cancelled());
    // A frame already queued is still taken; then the take is cancelled
    // again rather than waiting.
    put(&p, 0).unwrap();
    assert_eq!(seq_of(&c), Some(0));
    let r = c.take(Duration::from_secs(60)).map(|_| ());
    assert!(
        matches!(&r, Err(TakeError::Cancelled { name }) if *name == n),
        "{r:?}"
    );
    drop(c);
    p.unlink().unwrap();
}

#[test]
fn a_consumer_waiting_for_its_ring_is_cancelled() {
    let n = name("cancel-attach");
    let stop = Canceller::new();
    let builder = Consumer::builder(&n)
        .wait_for_ring(Duration::from_secs(60))
        .cancel_with(stop.clone());
    let waiter = std::thread::spawn(move || builder.attach().map(|_| ()));
    stop.cancel();
    let r = waiter.join().unwrap();
    assert!(
        matches!(&r, Err(AttachError::Cancelled { name }) if *name == n),
        "{r:?}"
    );
}

#[test]
fn each_group_ends_its_stream_when_its_own_frames_came_back() {
    let n = name("group-eos");
    let p = producer(&n, 4, &["fast", "slow"], Backpressure::Block);
    let fast = consumer(&n, "fast", false);
    let slow = consumer(&n, "slow", false);
    p.service().unwrap();
    for i in 0..3 {
        put(&p, i).unwrap();
    }
    p.finish();
    // Nothing is published after the end of the stream.
    let late = p.loan(Duration::from_millis(50)).unwrap();
    assert!(matches!(
        late.publish(&FrameMeta::new()),
        Err(PublishError::Finished { .. })
    ));
    // The fast group reads and hands back all three; the slow one holds one
    // and has two queued.
    for _ in 0..3 {
        drop(take(&fast, Duration::from_secs(1)).unwrap());
    }
    let held = take(&slow, Duration::from_secs(1)).unwrap();
    // The producer collects what came back; the ring has not drained.
    assert!(p
        .drain(Duration::from_millis(100))
        .unwrap_err()
        .is_timeout());
    // The fast group's stream is over although the slow group is not done.
    assert!(matches!(
        fast.take(Duration::from_secs(2)),
        Ok(Take::EndOfStream)
    ));
    assert!(take(&slow, Duration::from_secs(1)).is_some());
    drop(held);
    // Both of the slow group's reads came back and one frame is queued.
    let unconsumed: Vec<_> = p.groups().iter().map(|g| g.unconsumed()).collect();
    assert_eq!(unconsumed, vec![0, 3]);
    p.unlink().unwrap();
}

/// The frames' memory is reserved in the background; frames are published
/// meanwhile (the first would otherwise wait for every later slot's pages),
/// and a reservation that failed is reported by the next publish.
#[test]
fn frames_are_published_while_the_memory_is_reserved_and_a_failure_is_reported() {
    use crate::platform::segment::Reservation;
    let n = name("reserving");
    let p = producer(&n, 2, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    let (outcome, told) = std::sync::mpsc::channel();
    // A reservation that ends only when told to.
    p.set_reservation(Reservation::pending(&n, 1 << 40, told));
    std::thread::scope(|s| {
        let (done, published) = std::sync::mpsc::channel();
        let p = &p;
        s.spawn(move || done.send(put(p, 0)).unwrap());
        let r = published.recv_timeout(Duration::from_secs(60));
        if r.is_err() {
            // Let the publish go before failing.
            outcome.send(Ok(())).unwrap();
            panic!("the publish waited for the reservation");
        }
        assert_eq!(r.unwrap(), Some(0));
    });
    assert!(p.reserving(), "published while reserving");
    assert_eq!(seq_of(&c), Some(0));
    outcome.send(Err(nix::errno::Errno::ENOSPC)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while p.reserving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reservation ended"
        );
        std::thread::yield_now();
    }
    let mut s = p.loan(Duration::from_secs(60)).unwrap();
    s.pixels_mut().fill(1);
    let e = s.publish(&FrameMeta::new()).unwrap_err();
    assert!(matches!(e, PublishError::NoSpace { .. }), "{e}");
    drop(c);
    p.unlink().unwrap();
}

/// A consumer waiting for its ring sleeps until the name changes in
/// /dev/shm (inotify) instead of trying to open it every few milliseconds,
/// and attaches as soon as the ring is created. Its looks are counted while
/// it waits 300 ms for the ring (the scenario; nothing waits on that time
/// for correctness): polling every 2 ms would look about 150 times.
#[test]
fn a_consumer_waiting_for_its_ring_sleeps_until_the_ring_appears() {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    let n = name("watch-attach");
    let looks = Arc::new(AtomicU32::new(0));
    let mut builder = Consumer::builder(&n).wait_for_ring(Duration::from_secs(60));
    builder.looks = Some(looks.clone());
    let waiter = std::thread::spawn(move || {
        let c = builder.attach().unwrap();
        take(&c, Duration::from_secs(60)).map(|f| f.seq())
    });
    // Waiting: it looked once, found nothing, set its watch, looked again.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while looks.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "the consumer looked");
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(300));
    let p = producer(&n, 2, &[], Backpressure::Block);
    p.wait_for_groups(1, Duration::from_secs(60)).unwrap();
    put(&p, 0);
    assert_eq!(waiter.join().unwrap(), Some(0));
    let looks = looks.load(Ordering::Relaxed);
    // Two before the wait, then one per change of the name while the ring
    // is created (created, sized, reserved, its mode set); none for the
    // cancel checks (every 50 ms) in between.
    assert!(looks <= 16, "looked {looks} times");
    p.unlink().unwrap();
}

/// The frames' memory is reserved in the background once the first frame is
/// out, not while it is being made (it would take the cores the first frame
/// needs), and by the time the reservation is collected it is all there.
#[test]
fn the_frames_memory_is_reserved_from_the_first_publish_on() {
    use std::os::unix::fs::MetadataExt;
    let n = name("reserve-first");
    let p = Producer::builder(&n)
        .shape(FrameShape::new(256, 256, 3))
        .slots(4)
        .create()
        .unwrap();
    let g = *p.segment().geometry();
    let reserved = || std::fs::metadata(format!("/dev/shm/{n}")).unwrap().blocks() * 512;
    assert!(
        reserved() < g.off_data + g.frame_bytes,
        "not before the first frame"
    );
    let c = consumer(&n, "default", false);
    assert_eq!(put(&p, 0), Some(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while p.reserving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reservation ended"
        );
        std::thread::yield_now();
    }
    assert!(reserved() >= g.total_size);
    drop(c);
    p.unlink().unwrap();
}

/// `Duration::MAX` means "no deadline" to `take` and `loan` as it does to
/// `drain` and `wait_for_groups`: each waits past its first wait slice
/// (the point where it starts counting its deadline) and gets what comes.
#[test]
fn take_and_loan_without_a_deadline_wait_past_their_first_slice() {
    let n = name("nodeadline");
    let p = producer(&n, 1, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    let later = crate::platform::liveness::PEER_CHECK * 3;
    std::thread::scope(|s| {
        // The frame comes three slices after the take began.
        s.spawn(|| {
            std::thread::sleep(later);
            let mut w = p.loan(Duration::from_secs(2)).unwrap();
            w.pixels_mut().fill(1);
            w.publish(&FrameMeta::new()).unwrap();
        });
        let f = match c.take(Duration::MAX).unwrap() {
            Take::Frame(f) => f,
            other => panic!("{other:?}"),
        };
        // The one slot is held: the loan waits until the frame goes back.
        s.spawn(move || {
            std::thread::sleep(later);
            drop(f);
        });
        let w = p.loan(Duration::MAX).unwrap();
        drop(w);
    });
    p.unlink().unwrap();
}

/// Publishes one frame into each of the ring's 4 slots, has a consumer take
/// all four and hand them back in the order 2, 0, 3, 1 (by frame), then
/// returns where each of the next four loans' slots stood in that order.
fn loans_after_returns_in_order(reuse: SlotReuse) -> Vec<u32> {
    let n = name(&format!("reuse-{reuse:?}"));
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(4)
        .groups(["default"])
        .reuse(reuse)
        .create()
        .unwrap();
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    let mut published = vec![];
    for i in 0..4u8 {
        let s = p.loan(Duration::from_secs(1)).unwrap();
        published.push(s.index());
        s.publish(&FrameMeta::new().source(&[i])).unwrap();
    }
    let mut held: Vec<Frame> = (0..4)
        .map(|_| take(&c, Duration::from_secs(1)).unwrap())
        .collect();
    for k in [2u64, 0, 3, 1] {
        let at = held.iter().position(|f| f.seq() == k).unwrap();
        drop(held.swap_remove(at));
    }
    let order = [2, 0, 3, 1].map(|k| published[k]);
    let loans: Vec<WriteSlot<'_>> = (0..4)
        .map(|_| p.loan(Duration::from_secs(1)).unwrap())
        .collect();
    let slots = loans.iter().map(|s| s.index()).collect();
    drop(loans);
    drop(c);
    p.unlink().unwrap();
    slots_in(order, slots)
}

/// Where each of `slots` stands in `order`.
fn slots_in(order: [u32; 4], slots: Vec<u32>) -> Vec<u32> {
    slots
        .into_iter()
        .map(|s| order.iter().position(|&o| o == s).unwrap() as u32)
        .collect()
}

#[test]
fn loans_reuse_the_slot_handed_back_last_or_first_as_asked() {
    // Handed back 1st, 2nd, 3rd, 4th: loaned last-first by default...
    assert_eq!(
        loans_after_returns_in_order(SlotReuse::LastFreed),
        [3, 2, 1, 0]
    );
    // ... first-first with FirstFreed.
    assert_eq!(
        loans_after_returns_in_order(SlotReuse::FirstFreed),
        [0, 1, 2, 3]
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn a_group_head_scribbled_past_its_tail_does_not_make_the_producer_spin() {
    let n = name("scribbled-group-head");
    let p = Producer::builder(&n)
        .shape(SHAPE)
        .slots(4)
        .max_queued(1)
        .groups(["default"])
        .backpressure(Backpressure::Block)
        .create()
        .unwrap();
    let _c = consumer(&n, "default", false);
    p.service().unwrap();
    // One frame queued, nobody takes it: the lossless group is at its
    // max_queued, so the next loan waits for room, with free slots left.
    put(&p, 0).unwrap();
    // Someone sets the group's head past its tail: counted with a
    // saturating difference the queue is empty, so room is always there,
    // yet the loan (which counts as the queue does, modulo 2^64) still finds
    // none — a wait that woke at once, over and over, until its timeout.
    p.segment().groups()[0]
        .ready
        .head
        .store(u64::MAX, Ordering::Release);
    let cpu = thread_cpu();
    let r = p.loan(Duration::from_millis(300));
    let spent = thread_cpu() - cpu;
    // It sleeps through its first wait slice, and then finds the scribble.
    assert!(
        matches!(&r, Err(LoanError::Corrupt(_))),
        "{:?}",
        r.as_ref().err()
    );
    assert!(
        spent < Duration::from_millis(100),
        "{spent:?} of CPU in a 300 ms wait"
    );
    p.unlink().unwrap();
}

#[test]
fn a_scribbled_return_head_does_not_make_the_producer_spin() {
    let n = name("scribbled-head");
    let p = producer(&n, 1, &["default"], Backpressure::Block);
    let c = consumer(&n, "default", false);
    p.service().unwrap();
    // Frame 0 taken and handed back (position 0 of the return queue), then
    // collected by the next loan; frame 1 held, so no slot is free.
    put(&p, 0).unwrap();
    drop(take(&c, Duration::from_secs(1)).unwrap());
    put(&p, 1).unwrap();
    let held = take(&c, Duration::from_secs(1)).unwrap();
    // Someone sets the shared head back to 0: its cell is stamped for
    // position 0, so by the shared head a return is waiting, forever.
    p.segment().consumers()[c.index() as usize]
        .ret
        .head
        .store(0, Ordering::Release);
    // The producer's own head says nothing is: it sleeps until the loan
    // times out, rather than waking at once, over and over (where it never
    // read the clock, so the loan never timed out either: hence a thread,
    // left behind if it hangs).
    let p = std::sync::Arc::new(p);
    let (tx, rx) = std::sync::mpsc::channel();
    let q = p.clone();
    std::thread::spawn(move || {
        let cpu = thread_cpu();
        let timed_out = q.loan(Duration::from_millis(300)).unwrap_err().is_timeout();
        let _ = tx.send((timed_out, thread_cpu() - cpu));
    });
    let (timed_out, spent) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a 300 ms loan did not return within 10 s");
    assert!(timed_out);
    assert!(
        spent < Duration::from_millis(100),
        "{spent:?} of CPU in a 300 ms wait"
    );
    // The same for the drain at the end of the stream, with frame 1 held.
    p.finish();
    let (tx, rx) = std::sync::mpsc::channel();
    let q = p.clone();
    std::thread::spawn(move || {
        let cpu = thread_cpu();
        let r = q.drain(Duration::from_millis(300));
        let _ = tx.send((r, thread_cpu() - cpu));
    });
    let (r, spent) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a 300 ms drain did not return within 10 s");
    assert!(matches!(r, Err(WaitError::Timeout { .. })), "{r:?}");
    assert!(
        spent < Duration::from_millis(100),
        "{spent:?} of CPU in a 300 ms drain"
    );
    drop(held);
    p.unlink().unwrap();
}
