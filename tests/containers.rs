//! Processes in different PID namespaces (containers sharing /dev/shm):
//! a consumer started with `unshare -p -f --mount-proc` beside a producer
//! in the root namespace. Its pid means nothing to the producer; liveness
//! goes through open-file-description locks on the segment file.

mod common;
use common::{stderr, wait_with_timeout};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");

fn ring(tag: &str) -> String {
    format!("framering-ns-{tag}-{}", std::process::id())
}

/// Whether this machine lets us make a PID namespace (root, or user
/// namespaces allowed).
fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A ppm consumer of group `default`, inside a new PID namespace if
/// `namespaced`.
fn consumer(name: &str, out: &Path, namespaced: bool, hold_ms: &str) -> Child {
    let mut c = if namespaced {
        let mut c = Command::new("unshare");
        c.args(["-p", "-f", "--mount-proc", CONSUMER]);
        c
    } else {
        Command::new(CONSUMER)
    };
    let side = common::SIDE.to_string();
    c.args(["--config", "/dev/null", "--ring", name])
        .args(["--height", &side, "--width", &side, "--channels", "3"])
        .args(["--format", "ppm", "--hold-ms", hold_ms, "--output"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn producer(name: &str, input: &Path, loops: u32, stats: &Path) -> Child {
    let side = common::SIDE.to_string();
    Command::new(PRODUCER)
        .args(["--config", "/dev/null", "--ring", name])
        .args(["--height", &side, "--width", &side, "--channels", "3"])
        .args(["--slots", "8", "--quiet", "--drain-timeout", "30"])
        .arg("--input")
        .arg(input)
        .args(["--loop", &loops.to_string(), "--stats-json"])
        .arg(stats)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// seq → directory, for every frame file in `dirs`, each checked against
/// the input it came from; `counts[seq]` = how many copies were written.
fn written(dirs: &[&PathBuf], reference: &[Vec<u8>], total: u64) -> Vec<u32> {
    let mut counts = vec![0u32; total as usize];
    for d in dirs {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let seq: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let px = image::open(&p).unwrap().to_rgb8().into_raw();
            let want = &reference[(seq % reference.len() as u64) as usize];
            assert!(
                &px == want,
                "frame {seq} in {} has the wrong pixels",
                d.display()
            );
            counts[seq as usize] += 1;
        }
    }
    counts
}

/// The namespaced consumer's own process (the child of `unshare -f`), as
/// the root namespace sees it.
fn inner_pid(unshare: &Child) -> i32 {
    let path = format!("/proc/{0}/task/{0}/children", unshare.id());
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no child of unshare"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_consumer_in_another_pid_namespace_is_alive_and_its_death_is_seen() {
    if !unshare_works() {
        eprintln!("SKIPPED: unshare -p -f --mount-proc is not permitted here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let reference = common::small_inputs(&input, 10);

    // 1000 frames shared by a namespaced consumer and one beside the
    // producer: nobody is judged dead, nothing is delivered twice.
    let name = ring("share");
    let (inside, outside) = (tmp.path().join("inside"), tmp.path().join("outside"));
    let a = consumer(&name, &inside, true, "1");
    let b = consumer(&name, &outside, false, "1");
    let stats = tmp.path().join("p.json");
    let p = producer(&name, &input, 100, &stats);
    let pout = wait_with_timeout(p, Duration::from_secs(120));
    assert!(pout.status.success(), "{}", stderr(&pout));
    let (aout, bout) = (
        wait_with_timeout(a, Duration::from_secs(30)),
        wait_with_timeout(b, Duration::from_secs(30)),
    );
    assert!(aout.status.success(), "{}", stderr(&aout));
    assert!(bout.status.success(), "{}", stderr(&bout));
    assert!(!stderr(&pout).contains("died"), "{}", stderr(&pout));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["frames"], 1000);
    assert_eq!(s["redelivered"], 0, "{s}");
    let counts = written(&[&inside, &outside], &reference, 1000);
    assert!(counts.iter().all(|&n| n == 1), "every frame exactly once");
    assert!(
        std::fs::read_dir(&inside).unwrap().count() > 0,
        "the namespaced consumer took none"
    );

    // SIGKILL the namespaced consumer while it holds frames: they go to the
    // other consumer and everything ends.
    let name = ring("kill");
    let (inside, outside) = (tmp.path().join("inside2"), tmp.path().join("outside2"));
    let a = consumer(&name, &inside, true, "20");
    let b = consumer(&name, &outside, false, "2");
    let stats = tmp.path().join("p2.json");
    let p = producer(&name, &input, 60, &stats);
    while std::fs::read_dir(&inside).map_or(0, |d| d.count()) < 5 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let victim = inner_pid(&a);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed_at = Instant::now();
    let _ = wait_with_timeout(a, Duration::from_secs(10));
    // Its frames are delivered again within a second (the producer looks
    // every 200 ms): the ring's redelivery counter says so.
    loop {
        let redelivered = framering::ring::inspect::RingView::open(&name)
            .map(|v| v.snapshot().producer.redelivered)
            .unwrap_or(0);
        if redelivered > 0 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(1),
            "the namespaced consumer's frames were not redelivered within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pout = wait_with_timeout(p, Duration::from_secs(60));
    assert!(pout.status.success(), "{}", stderr(&pout));
    let bout = wait_with_timeout(b, Duration::from_secs(30));
    assert!(bout.status.success(), "{}", stderr(&bout));
    let counts = written(&[&inside, &outside], &reference, 600);
    assert!(counts.iter().all(|&n| n >= 1), "a frame was lost");
}
