//! The two limits framering's figures are compared with
//! (`benches/peers/run.sh`), measured on this machine:
//!
//! * memcpy bandwidth of 720×1080×3 frames into a ring larger than the CPU
//!   caches (64 slots, 149 MB), and into one that fits (2 slots);
//! * a ping-pong between two processes over two words of shared memory,
//!   with the raw futex system call and with spinning: half a round trip is
//!   the one-way hand-off latency.
//!
//! Prints one JSON object per line. `cargo run --release` in this folder.
//!
//! A baseline, not part of framering: it calls futex(2) on a scratch shared
//! mapping itself, with nothing of framering's protocol around it.
use memmap2::MmapMut;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// FUTEX_WAIT on a shared word (no FUTEX_PRIVATE_FLAG: the word is shared
/// between processes).
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned 4-byte atomic for the whole call and
    // `ts` a live timespec on this stack frame; FUTEX_WAIT only reads them.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &ts as *const libc::timespec);
    }
}

/// FUTEX_WAKE of every waiter on a shared word.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: as in `futex_wait`; FUTEX_WAKE uses the address as a key only.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// A scratch file in /dev/shm mapped shared: two words for the ping-pong.
fn scratch(path: &str, create: bool) -> MmapMut {
    // SAFETY: only this program's two processes map the file, and they touch
    // it only through the atomics below.
    unsafe { limits_peer::map_shared(path, 4096, create) }
}

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

/// The two ping-pong words, on separate cache lines of the mapping.
fn words(map: &MmapMut) -> (&AtomicU32, &AtomicU32) {
    let base = map.as_ptr();
    // SAFETY: offsets 0 and 128 lie inside the 4096-byte page-aligned
    // mapping and are 4-byte aligned; AtomicU32 is valid for any bits; the
    // references live no longer than `map`.
    unsafe { (&*(base as *const AtomicU32), &*(base.add(128) as *const AtomicU32)) }
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
            futex_wait(w, v, Duration::from_millis(100));
        }
    }
}

fn pong(name: &str, spin: bool) {
    let map = scratch(name, false);
    let (ping, pong) = words(&map);
    for i in 1..=ROUNDS {
        wait_for(ping, i, spin);
        pong.store(i, Ordering::Release);
        if !spin {
            futex_wake(pong);
        }
    }
}

fn ping_pong(spin: bool) -> f64 {
    let name = format!("/dev/shm/framering-limits-{}", std::process::id());
    let map = scratch(&name, true);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["pong", &name, if spin { "spin" } else { "futex" }])
        .spawn()
        .unwrap();
    let (ping, pong) = words(&map);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for i in 1..=ROUNDS {
        ping.store(i, Ordering::Release);
        if !spin {
            futex_wake(ping);
        }
        wait_for(pong, i, spin);
    }
    let one_way_us = t.elapsed().as_secs_f64() / (2.0 * ROUNDS as f64) * 1e6;
    child.wait().unwrap();
    std::fs::remove_file(&name).unwrap();
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
