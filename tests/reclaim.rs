//! Replacing a dead producer with real processes: of two producers started
//! at once on the name of a SIGKILLed one, exactly one owns the new ring and
//! the other is refused (exit 3) — never two owners, one of them publishing
//! into a segment that no longer has a name.

mod common;

use common::{command, signal, stderr};
use framering::ring::inspect::RingView;
use nix::sys::signal::Signal;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");

/// A producer of raw frames on a stdin that never delivers any: it creates
/// its ring and then waits for its input.
fn producer(ring: &str) -> Child {
    command(PRODUCER, ring)
        .args(["--input", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid of the live producer that the name `ring` leads to, if any.
fn owner(ring: &str) -> Option<u32> {
    let (pid, alive) = RingView::open(ring).ok()?.producer();
    alive.then_some(pid)
}

fn wait_for_owner(ring: &str, pid: u32) {
    let start = Instant::now();
    while owner(ring) != Some(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "producer {pid} never owned {ring}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_producers_replacing_a_killed_one_never_both_own_the_ring() {
    let ring = format!("frt-reclaim-{}", std::process::id());
    let trials = 200;
    for trial in 0..trials {
        let mut dead = producer(&ring);
        wait_for_owner(&ring, dead.id());
        signal(&dead, Signal::SIGKILL);
        dead.wait().unwrap();

        let mut racers = vec![producer(&ring), producer(&ring)];
        // The loser is refused at once; on a cold, loaded machine "at once"
        // is generously bounded.
        let start = Instant::now();
        let loser = loop {
            if let Some(i) = (0..2).find(|&i| racers[i].try_wait().unwrap().is_some()) {
                break i;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "trial {trial}: both producers kept running (both think they own {ring})"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let lost = racers.remove(loser).wait_with_output().unwrap();
        let mut winner = racers.pop().unwrap();
        let text = stderr(&lost);
        assert_eq!(lost.status.code(), Some(3), "trial {trial}: {text}");
        assert!(text.contains("in use"), "trial {trial}: {text}");
        // The winner runs, and the name leads to it.
        assert!(
            winner.try_wait().unwrap().is_none(),
            "trial {trial}: the winner exited too"
        );
        assert_eq!(
            owner(&ring),
            Some(winner.id()),
            "trial {trial}: the ring's name does not lead to the producer that runs"
        );
        winner.kill().unwrap();
        winner.wait().unwrap();
    }
    let _ = std::fs::remove_file(format!("/dev/shm/{ring}"));
}
