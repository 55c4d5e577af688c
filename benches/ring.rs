//! Criterion benchmarks of the ring core.
//!
//! * `queue/push_take` — one publish and one claim on the ready queue (heap
//!   atomics, one thread): the algorithmic cost of a hand-off.
//! * `pool/publish_take_release` — the full ownership cycle through a real
//!   /dev/shm segment in one thread: acquire, publish (with metadata), take,
//!   release, collect.
//! * `handoff/threads` — a producer thread and a consumer thread moving frames
//!   through a real segment, per frame, for tiny frames (hand-off bound) and
//!   720×1080×3 frames whose every byte the producer writes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use framering::layout::Shape;
use framering::pool::{Consumer, FrameMeta, Producer, RingOptions, Take};
use framering::queue::{QueueCtrl, ReadyQueue};
use framering::slot::SlotState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn queue(c: &mut Criterion) {
    let ctrl = QueueCtrl::new();
    let cells: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
    let slots: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    let q = ReadyQueue::new(&ctrl, &cells, &slots);
    c.bench_function("queue/push_take", |b| {
        b.iter(|| {
            q.push(3).unwrap();
            let got = q.take(1).unwrap();
            slots[3].store(SlotState::Free.encode(), Ordering::Relaxed);
            got
        })
    });
}

fn ring_name(tag: &str) -> String {
    format!("framering-bench-{tag}-{}", std::process::id())
}

fn shape(slots: u32, h: u32, w: u32, c: u32) -> Shape {
    Shape {
        slots,
        height: h,
        width: w,
        channels: c,
        max_consumers: 4,
        max_groups: 2,
    }
}

const META: FrameMeta<'static> = FrameMeta {
    src_width: 16,
    src_height: 16,
    name: b"bench",
};

fn pool_cycle(c: &mut Criterion) {
    let name = ring_name("cycle");
    let mut p = Producer::create(&name, shape(8, 16, 16, 1), &RingOptions::default()).unwrap();
    let consumer = Consumer::attach(&name, None, &RingOptions::default()).unwrap();
    c.bench_function("pool/publish_take_release", |b| {
        b.iter(|| {
            let s = p.acquire(Duration::from_secs(1)).unwrap().unwrap();
            p.publish(s, &META).unwrap();
            match consumer.take(Duration::from_secs(1)).unwrap() {
                Take::Frame(f) => f.info().seq,
                other => panic!("{other:?}"),
            }
        })
    });
    drop(consumer);
    p.unlink().unwrap();
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff/threads");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    for (label, h, w, ch, write) in [
        ("16x16x1", 16, 16, 1, false),
        ("720x1080x3-write", 720, 1080, 3, true),
    ] {
        let bytes = (h * w * ch) as u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| {
                let name = ring_name(label);
                let mut p =
                    Producer::create(&name, shape(8, h, w, ch), &RingOptions::default()).unwrap();
                let n2 = name.clone();
                let reader = std::thread::spawn(move || {
                    let c = Consumer::attach(&n2, None, &RingOptions::default()).unwrap();
                    let mut sum = 0u64;
                    loop {
                        match c.take(Duration::from_secs(10)).unwrap() {
                            Take::Frame(f) => {
                                // Touch one byte per page, as a strided reader.
                                sum += f
                                    .data()
                                    .iter()
                                    .step_by(4096)
                                    .map(|&b| b as u64)
                                    .sum::<u64>();
                            }
                            Take::EndOfStream => return sum,
                            other => panic!("{other:?}"),
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    let mut s = p.acquire(Duration::from_secs(10)).unwrap().unwrap();
                    if write {
                        s.data_mut().fill(i as u8);
                    }
                    p.publish(s, &META).unwrap();
                }
                p.finish();
                p.drain(Some(Duration::from_secs(30))).unwrap();
                let elapsed = start.elapsed();
                reader.join().unwrap();
                p.unlink().unwrap();
                let _ = bytes;
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, queue, pool_cycle, handoff);
criterion_main!(benches);
