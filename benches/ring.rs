//! Criterion benchmarks of the ring core.
//!
//! * `pool/publish_take_release` — the full ownership cycle through a real
//!   /dev/shm segment in one thread: acquire, publish (with metadata), take,
//!   release, collect.
//! * `handoff/threads` — a producer thread and a consumer thread moving frames
//!   through a real segment, per frame, for tiny frames (hand-off bound) and
//!   720×1080×3 frames whose every byte the producer writes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use framering::ring::{Consumer, FrameMeta, FrameShape, Producer, Take};
use std::time::{Duration, Instant};

fn ring_name(tag: &str) -> String {
    format!("framering-bench-{tag}-{}", std::process::id())
}

fn producer(name: &str, slots: u32, h: u32, w: u32, c: u32) -> Producer {
    Producer::builder(name)
        .shape(FrameShape::new(h, w, c))
        .slots(slots)
        .create()
        .unwrap()
}

const META: FrameMeta<'static> = FrameMeta::new().source(b"bench").src_size(16, 16);

fn pool_cycle(c: &mut Criterion) {
    let name = ring_name("cycle");
    let p = producer(&name, 8, 16, 16, 1);
    let consumer = Consumer::builder(&name).attach().unwrap();
    c.bench_function("pool/publish_take_release", |b| {
        b.iter(|| {
            let s = p.loan(Duration::from_secs(1)).unwrap();
            s.publish(&META).unwrap();
            match consumer.take(Duration::from_secs(1)).unwrap() {
                Take::Frame(f) => f.seq(),
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
                let p = producer(&name, 8, h, w, ch);
                let n2 = name.clone();
                let reader = std::thread::spawn(move || {
                    let c = Consumer::builder(&n2).attach().unwrap();
                    let mut sum = 0u64;
                    loop {
                        match c.take(Duration::from_secs(10)).unwrap() {
                            Take::Frame(f) => {
                                // Touch one byte per page, as a strided reader.
                                sum += f
                                    .pixels()
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
                    let mut s = p.loan(Duration::from_secs(10)).unwrap();
                    if write {
                        s.pixels_mut().fill(i as u8);
                    }
                    s.publish(&META).unwrap();
                }
                p.finish();
                p.drain(Duration::from_secs(30)).unwrap();
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

criterion_group!(benches, pool_cycle, handoff);
criterion_main!(benches);
