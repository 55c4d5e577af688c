//! Zero heap allocations per frame in steady state: a counting allocator
//! (`allocation-counter`, counting this thread only) watches the producer →
//! consumer cycle through a real segment.

use framering::ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
use std::time::Duration;

#[test]
fn the_frame_cycle_does_not_allocate() {
    let name = format!("framering-alloc-{}", std::process::id());
    let p = Producer::builder(&name)
        .shape(FrameShape::new(64, 64, 3))
        .slots(8)
        .max_consumers(4)
        .max_groups(2)
        .create()
        .unwrap();
    let c = Consumer::builder(&name).attach().unwrap();
    let meta = FrameMeta::new().source(b"steady-state").src_size(64, 64);
    let cycle = |i: u64| {
        let mut s = p.loan(Duration::from_secs(1)).unwrap();
        s.pixels_mut()[0] = i as u8;
        s.publish(&meta).unwrap();
        match c.take(Duration::from_secs(1)).unwrap() {
            Take::Frame(f) => assert_eq!(f.pixels()[0], i as u8),
            other => panic!("{other:?}"),
        }
    };
    // Warm-up: first reap of dead consumers (reads /proc), lazy statics,
    // the frames' background reservation.
    for i in 0..1_000 {
        cycle(i);
    }
    let info = allocation_counter::measure(|| {
        for i in 0..20_000 {
            cycle(i);
        }
        // Also the periodic liveness check of consumers (reads /proc).
        p.service().unwrap();
    });
    drop(c);
    p.unlink().unwrap();
    assert_eq!(
        info.count_total, 0,
        "{} allocations in 20,000 frames",
        info.count_total
    );
}
