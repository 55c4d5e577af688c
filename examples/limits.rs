//! The two limits framering's figures are compared with
//! (`benches/peers/run.sh`), measured on this machine:
//!
//! * memcpy bandwidth of 720×1080×3 frames into a ring larger than the CPU
//!   caches (64 slots, 149 MB), and into one that fits (2 slots);
//! * a ping-pong between two processes over two words of shared memory,
//!   with the raw futex system call and with spinning: half a round trip is
//!   the one-way hand-off latency.
//!
//! Prints one JSON object per line. `cargo run --release --example limits`
use framering::futex;
use framering::layout::Shape;
use framering::segment::Segment;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 20_000;

fn memcpy(slots: usize) -> (f64, f64) {
    let frame = 720 * 1080 * 3;
    let src = vec![7u8; frame];
    let mut dst = vec![0u8; frame * slots];
    let n = 3000;
    // Warm up (page faults).
    for s in 0..slots {
        dst[s * frame..(s + 1) * frame].copy_from_slice(&src);
    }
    let t = Instant::now();
    for i in 0..n {
        let s = i % slots;
        dst[s * frame..(s + 1) * frame].copy_from_slice(&src);
    }
    std::hint::black_box(&dst);
    let secs = t.elapsed().as_secs_f64();
    (n as f64 * frame as f64 / secs / 1e9, n as f64 / secs)
}

/// The two ping-pong words: cells of a scratch segment's return queues.
fn words(seg: &Segment) -> (&AtomicU32, &AtomicU32) {
    (&seg.return_cells(0)[0], &seg.return_cells(1)[0])
}

fn wait_for(w: &AtomicU32, want: u32, spin: bool) {
    loop {
        let v = w.load(Ordering::Acquire);
        if v == want {
            return;
        }
        if spin {
            std::hint::spin_loop();
        } else {
            futex::wait(w, v, Some(Duration::from_millis(100)));
        }
    }
}

fn pong(name: &str, spin: bool) {
    let seg = Segment::open(name).expect("scratch segment");
    let (ping, pong) = words(&seg);
    for i in 1..=ROUNDS {
        wait_for(ping, i, spin);
        pong.store(i, Ordering::Release);
        if !spin {
            futex::wake_all(pong);
        }
    }
}

fn ping_pong(spin: bool) -> f64 {
    let name = format!("framering-limits-{}", std::process::id());
    let shape = Shape {
        slots: 1,
        height: 1,
        width: 1,
        channels: 1,
        max_consumers: 2,
        max_groups: 1,
    };
    let seg = Segment::create(&name, shape, 0o600).expect("scratch segment");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["pong", &name, if spin { "spin" } else { "futex" }])
        .spawn()
        .unwrap();
    let (ping, pong) = words(&seg);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for i in 1..=ROUNDS {
        ping.store(i, Ordering::Release);
        if !spin {
            futex::wake_all(ping);
        }
        wait_for(pong, i, spin);
    }
    let one_way_us = t.elapsed().as_secs_f64() / (2.0 * ROUNDS as f64) * 1e6;
    child.wait().unwrap();
    Segment::unlink(&name).unwrap();
    one_way_us
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("pong") {
        pong(&args[2], args[3] == "spin");
        return;
    }
    for (label, slots) in [("memcpy-ring-64-slots", 64), ("memcpy-ring-2-slots", 2)] {
        let (gbps, fps) = memcpy(slots);
        println!(r#"{{"limit": "{label}", "gb_per_s": {gbps:.2}, "frames_per_s": {fps:.1}}}"#);
    }
    for (label, spin) in [("futex-ping-pong", false), ("spin-ping-pong", true)] {
        let us = ping_pong(spin);
        println!(r#"{{"limit": "{label}", "one_way_us": {us:.3}}}"#);
    }
}
