//! Soak: minutes of consumers SIGKILLed and restarted, and of the producer
//! SIGKILLed and restarted on the same ring name (its dead segment reclaimed).
//! Ignored by default; run with
//! `FRAMERING_SOAK_SECS=300 cargo test --release --test soak -- --ignored --nocapture`.
//!
//! Per producer run: every frame it published is written at least once with
//! the right pixels, the consumers exit with code 4 (producer died), and the
//! next producer reclaims the abandoned segment.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const INPUTS: u32 = 40;

fn consumer(ring: &str, out: &Path) -> Child {
    common::command(CONSUMER, ring)
        .args([
            "--output",
            out.to_str().unwrap(),
            "--format",
            "ppm",
            "--wait-timeout",
            "10",
        ])
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "minutes long; see the module docs"]
fn soak_killing_consumers_and_producers() {
    let secs: u64 = std::env::var("FRAMERING_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let reference = common::small_inputs(&input, INPUTS);
    let ring = format!("framering-soak-{}", std::process::id());
    let start = Instant::now();
    let mut rng = common::Lcg(std::process::id() as u64 * 7919);
    let (mut runs, mut kills, mut frames) = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        runs += 1;
        let run_dir = tmp.path().join(format!("run{runs}"));
        let mut outs: Vec<PathBuf> = vec![];
        let fresh = |outs: &mut Vec<PathBuf>| {
            let p = run_dir.join(format!("c{}", outs.len()));
            outs.push(p.clone());
            p
        };
        let mut producer = common::command(PRODUCER, &ring)
            .args([
                "--slots",
                "8",
                "--input",
                input.to_str().unwrap(),
                "--loop",
                "100000",
            ])
            .spawn()
            .unwrap();
        let mut consumers: Vec<Child> =
            (0..3).map(|_| consumer(&ring, &fresh(&mut outs))).collect();
        let run_for = Duration::from_millis(1000 + rng.next(4000));
        let t0 = Instant::now();
        while t0.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(10 + rng.next(90)));
            let k = rng.next(3) as usize;
            if consumers[k].try_wait().unwrap().is_none() {
                consumers[k].kill().unwrap();
                consumers[k].wait().unwrap();
                kills += 1;
            }
            consumers[k] = consumer(&ring, &fresh(&mut outs));
        }
        // Once the producer has recovered the last victim's frames (no
        // dead consumer left in the ring), kill it.
        common::wait_for_state(&ring, "rid of its dead consumers", |s| {
            s.consumers.iter().all(|c| c.alive)
        });
        producer.kill().unwrap();
        producer.wait().unwrap();
        for mut c in consumers {
            let code = c.wait().unwrap().code();
            assert!(
                matches!(code, Some(4)),
                "consumer exit {code:?} after the producer died"
            );
        }
        let published = framering::ring::inspect::RingView::open(&ring)
            .unwrap()
            .snapshot()
            .producer
            .published;
        let mut seen = BTreeSet::new();
        for d in &outs {
            let Ok(rd) = std::fs::read_dir(d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                if name.starts_with('.') {
                    continue;
                }
                let seq: u64 = name.split('.').next().unwrap().parse().unwrap();
                let got = image::open(&p).unwrap().to_rgb8().into_raw();
                assert!(
                    got == reference[(seq % INPUTS as u64) as usize],
                    "run {runs} frame {seq}"
                );
                seen.insert(seq);
            }
        }
        assert_eq!(seen.len() as u64, published, "run {runs}: frames missing");
        frames += published;
        std::fs::remove_dir_all(&run_dir).unwrap();
        // The next producer reclaims the abandoned segment by itself.
    }
    let _ = framering::ring::inspect::remove_if_abandoned(&ring);
    eprintln!(
        "soak: {:.0} s, {runs} producer runs (each SIGKILLed), {kills} consumer kills, {frames} frames all delivered",
        start.elapsed().as_secs_f64()
    );
}
