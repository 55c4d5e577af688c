//! Zero heap allocations per frame in steady state: a counting global
//! allocator watches the producer → consumer cycle through a real segment.

use framering::layout::Shape;
use framering::pool::{Consumer, FrameMeta, Producer, RingOptions, Take};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Only the test's own thread is counted (the test harness has others).
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_frame_cycle_does_not_allocate() {
    let name = format!("framering-alloc-{}", std::process::id());
    let shape = Shape {
        slots: 8,
        height: 64,
        width: 64,
        channels: 3,
        max_consumers: 4,
        max_groups: 2,
    };
    let mut p = Producer::create(&name, shape, &RingOptions::default()).unwrap();
    let c = Consumer::attach(&name, None, &RingOptions::default()).unwrap();
    let meta = FrameMeta {
        src_width: 64,
        src_height: 64,
        name: b"steady-state",
    };
    let mut cycle = |i: u64| {
        let mut s = p.acquire(Duration::from_secs(1)).unwrap().unwrap();
        s.data_mut()[0] = i as u8;
        p.publish(s, &meta).unwrap();
        match c.take(Duration::from_secs(1)).unwrap() {
            Take::Frame(f) => assert_eq!(f.data()[0], i as u8),
            other => panic!("{other:?}"),
        }
    };
    // Warm-up: first reap of dead consumers (reads /proc), lazy statics.
    for i in 0..1_000 {
        cycle(i);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for i in 0..20_000 {
        cycle(i);
    }
    // Also the periodic liveness check of consumers (reads /proc).
    p.reap_dead_consumers().unwrap();
    COUNTING.with(|c| c.set(false));
    let during = ALLOCS.load(Ordering::Relaxed) - before;
    drop(c);
    p.unlink().unwrap();
    assert_eq!(during, 0, "{during} allocations in 20,000 frames");
}
