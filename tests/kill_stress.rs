//! Kill stress: one producer and three consumers over 20,000 small frames,
//! while consumers are SIGKILLed at random moments and restarted. Afterwards
//! every sequence number was written at least once with the right pixels,
//! and every slot of the ring is free again.

mod common;

use framering::ring::inspect::{self, RingView};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const INPUTS: u32 = 50;
const LOOPS: u32 = 400;

fn spawn_consumer(ring: &str, out: &Path) -> Child {
    common::command(CONSUMER, ring)
        .args(["--output", out.to_str().unwrap(), "--format", "ppm"])
        .spawn()
        .unwrap()
}

#[test]
fn consumers_killed_at_random_lose_no_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let reference = common::small_inputs(&input, INPUTS);
    let ring = format!("framering-stress-{}", std::process::id());
    let total = (INPUTS * LOOPS) as u64;
    let started = Instant::now();

    let mut producer = common::command(PRODUCER, &ring);
    producer.args(["--slots", "8", "--keep", "--drain-timeout", "60"]);
    producer.args([
        "--input",
        input.to_str().unwrap(),
        "--loop",
        &LOOPS.to_string(),
    ]);
    let mut producer = producer.spawn().unwrap();

    let mut outs: Vec<PathBuf> = vec![];
    let next_out = |outs: &mut Vec<PathBuf>| {
        let p = tmp.path().join(format!("out{}", outs.len()));
        outs.push(p.clone());
        p
    };
    let mut consumers: Vec<Child> = (0..3)
        .map(|_| spawn_consumer(&ring, &next_out(&mut outs)))
        .collect();
    let mut rng = common::Lcg(started.elapsed().as_nanos() as u64 ^ std::process::id() as u64);
    let mut kills = 0;
    let status = loop {
        if let Some(status) = producer.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "stress test took too long"
        );
        std::thread::sleep(Duration::from_millis(10 + rng.next(60)));
        let k = rng.next(3) as usize;
        if consumers[k].try_wait().unwrap().is_none() {
            consumers[k].kill().unwrap();
            consumers[k].wait().unwrap();
            kills += 1;
        }
        consumers[k] = spawn_consumer(&ring, &next_out(&mut outs));
    };
    assert!(status.success(), "producer failed: {status}");
    for mut c in consumers {
        let s = c.wait().unwrap();
        assert!(s.success(), "a surviving consumer failed: {s}");
    }
    assert!(kills >= 5, "only {kills} kills happened");

    // Every slot is free, and no live consumer is registered (a consumer
    // killed after the producer finished may leave its entry, owned by a
    // dead process: harmless).
    let status = RingView::open(&ring).unwrap().snapshot();
    assert_eq!(
        status.slot_states.free, status.slots,
        "{:?}",
        status.slot_states
    );
    assert!(
        status.consumers.iter().all(|c| !c.alive),
        "{:?}",
        status.consumers
    );
    let redelivered = status.producer.redelivered;
    assert!(matches!(
        inspect::remove_if_abandoned(&ring),
        Ok(inspect::Removal::Removed { .. })
    ));

    // Every frame written at least once, each copy with the right pixels.
    let mut seen = BTreeSet::new();
    let mut copies = 0u64;
    for d in &outs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with('.') {
                continue; // a temporary file of a killed consumer
            }
            let seq: u64 = name.split('.').next().unwrap().parse().unwrap();
            let got = image::open(&p).unwrap().to_rgb8().into_raw();
            assert!(
                got == reference[(seq % INPUTS as u64) as usize],
                "frame {seq} pixels"
            );
            seen.insert(seq);
            copies += 1;
        }
    }
    assert_eq!(seen.len() as u64, total, "frames missing");
    assert_eq!(*seen.iter().next_back().unwrap(), total - 1);
    eprintln!(
        "kill stress: {total} frames, {kills} consumers killed, {redelivered} frames redelivered, \
         {} duplicate outputs, {:.1} s",
        copies - total,
        started.elapsed().as_secs_f64()
    );
}
