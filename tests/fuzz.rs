//! Property tests over arbitrary bytes: what another process leaves in shared
//! memory must never make this one panic, hang or step out of bounds.

use framering::layout::Shape;
use framering::queue::{QueueCtrl, ReadyQueue, ReturnQueue};
use framering::segment::{Segment, SHM_DIR};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

fn name(tag: &str) -> String {
    format!("framering-fuzz-{tag}-{}", std::process::id())
}

fn valid_segment_bytes() -> Vec<u8> {
    let n = name("template");
    let _ = Segment::unlink(&n);
    let shape = Shape {
        slots: 3,
        height: 8,
        width: 8,
        channels: 3,
        max_consumers: 2,
        max_groups: 2,
    };
    let seg = Segment::create(&n, shape, 0o600).unwrap();
    let bytes = std::fs::read(format!("{SHM_DIR}/{n}")).unwrap();
    drop(seg);
    Segment::unlink(&n).unwrap();
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn opening_garbage_is_an_error_never_a_panic(
        random in proptest::collection::vec(any::<u8>(), 0..3 * 4096),
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
        truncate in any::<bool>(),
        cut in 0usize..32 * 1024,
        use_random in any::<bool>(),
    ) {
        let n = name("open");
        let path = format!("{SHM_DIR}/{n}");
        let bytes = if use_random {
            random
        } else {
            // A valid segment with a few header bytes changed, maybe cut short.
            let mut b = valid_segment_bytes();
            for (at, v) in flips {
                b[at % 512] = v;
            }
            if truncate {
                b.truncate(cut.min(b.len()));
            }
            b
        };
        std::fs::write(&path, &bytes).unwrap();
        match Segment::open(&n) {
            Ok(seg) => {
                // Accepted: then everything it says must fit the file.
                prop_assert_eq!(seg.geometry().total_size, bytes.len() as u64);
                prop_assert!(seg.len() == bytes.len());
                let groups = seg.geometry().max_groups as usize;
                let _ = seg.slot_states().len() + seg.consumers().len() + seg.groups().len()
                    + seg.ready_cells(groups - 1).len() + seg.claims(groups - 1).len();
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn queue_operations_on_garbage_stay_in_bounds(
        head in any::<u64>(),
        tail in any::<u64>(),
        small_positions in any::<bool>(),
        cells in proptest::collection::vec(any::<u64>(), 16),
        slots in proptest::collection::vec(any::<u64>(), 8),
        ret in proptest::collection::vec(any::<u32>(), 8),
        me in any::<u8>(),
    ) {
        let ctrl = QueueCtrl::new();
        let (h, t) = if small_positions { (head % 40, tail % 40) } else { (head, tail) };
        ctrl.head.store(h, Ordering::Relaxed);
        ctrl.tail.store(t, Ordering::Relaxed);
        let cells: Vec<AtomicU64> = cells.into_iter().map(AtomicU64::new).collect();
        let slots: Vec<AtomicU64> = slots.into_iter().map(AtomicU64::new).collect();
        let q = ReadyQueue::new(&ctrl, &cells, &slots);
        for _ in 0..4 {
            if let Ok(Some((slot, _))) = q.take(me) {
                prop_assert!((slot as usize) < slots.len());
            }
        }
        for s in 0..10 {
            let r = q.push(s);
            if s >= 8 {
                prop_assert!(r.is_err());
            }
        }
        let rctrl = QueueCtrl::new();
        rctrl.head.store(h, Ordering::Relaxed);
        rctrl.tail.store(t, Ordering::Relaxed);
        let rcells: Vec<AtomicU32> = ret.into_iter().map(AtomicU32::new).collect();
        let rq = ReturnQueue::new(&rctrl, &rcells);
        let mut n = 0usize;
        match rq.drain(|_| n += 1) {
            Ok(k) => prop_assert!(k == n && k <= rcells.len()),
            Err(_) => prop_assert_eq!(n, 0),
        }
        let _ = rq.push(1);
    }
}
