//! Corruption is an error, never a hang (issue 12 §4): control words of a
//! live ring overwritten under a running producer and consumer, through the
//! segment's file in /dev/shm at the offsets README's "Segment layout" gives.
//! Every process that sees the corruption exits 1 within seconds.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{stderr, wait_with_timeout};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const LIMIT: Duration = Duration::from_secs(20);

fn ring(tag: &str) -> String {
    format!("framering-it-{tag}-{}", std::process::id())
}

/// A binary of the crate on ring `ring` (16×16×3), stderr captured.
fn command(bin: &str, ring: &str, extra: &[&str]) -> Command {
    let mut c = common::command(bin, ring);
    c.args(extra);
    c.stderr(Stdio::piped());
    c
}

/// A producer over `input`, 4 slots, bounded drain.
fn producer(ring: &str, input: &Path) -> Child {
    command(
        PRODUCER,
        ring,
        &[
            "--input",
            input.to_str().unwrap(),
            "--slots",
            "4",
            "--drain-timeout",
            "60",
        ],
    )
    .spawn()
    .unwrap()
}

fn consumer(ring: &str, hold_ms: &str) -> Child {
    command(CONSUMER, ring, &["--output", "null", "--hold-ms", hold_ms])
        .spawn()
        .unwrap()
}

fn inputs(tmp: &Path, n: u32) -> PathBuf {
    let dir = tmp.join("in");
    common::small_inputs(&dir, n);
    dir
}

/// The segment's file, opened for reading and writing.
struct Segment {
    file: std::fs::File,
}

impl Segment {
    fn open(name: &str) -> Segment {
        let start = Instant::now();
        loop {
            if let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/dev/shm/{name}"))
            {
                let s = Segment { file };
                // Layout version (@8) is stored last by the creator.
                if s.u32(8) != 0 {
                    return s;
                }
            }
            assert!(start.elapsed() < LIMIT, "ring {name} never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn u32(&self, off: u64) -> u32 {
        let mut b = [0; 4];
        self.file.read_exact_at(&mut b, off).unwrap();
        u32::from_ne_bytes(b)
    }

    fn u64(&self, off: u64) -> u64 {
        let mut b = [0; 8];
        self.file.read_exact_at(&mut b, off).unwrap();
        u64::from_ne_bytes(b)
    }

    fn set_u64(&self, off: u64, v: u64) {
        self.file.write_all_at(&v.to_ne_bytes(), off).unwrap();
    }

    fn slots(&self) -> u64 {
        self.u32(40) as u64
    }

    fn max_groups(&self) -> u64 {
        self.u32(88) as u64
    }

    /// Offset of the claim word of group `g`, slot `s`.
    fn claim(&self, g: u64, s: u64) -> u64 {
        self.u64(112) + (g * self.slots() + s) * 8
    }

    /// Offsets of consumer `c`'s return-queue cells (u64 each).
    fn return_cells(&self, c: u64) -> impl Iterator<Item = u64> {
        let cap = self.u32(76) as u64;
        let first = self.u64(144) + c * cap * 8;
        (0..cap).map(move |i| first + i * 8)
    }

    /// Offset of the frames: the end of the control region.
    fn frames(&self) -> u64 {
        self.u64(152)
    }

    /// Waits for a claim word in state READING (3); returns its offset.
    fn reading_claim(&self) -> u64 {
        let start = Instant::now();
        loop {
            for g in 0..self.max_groups() {
                for s in 0..self.slots() {
                    let off = self.claim(g, s);
                    if self.u64(off) >> 56 == 3 {
                        return off;
                    }
                }
            }
            assert!(start.elapsed() < LIMIT, "no frame is being read");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Sets the owner byte of a READING claim word to `owner`, a consumer
/// index that does not exist, while the consumer holds that frame.
fn claim_owned_by_nobody(tag: &str, owner: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let input = inputs(tmp.path(), 20);
    let name = ring(tag);
    let c = consumer(&name, "1000");
    let p = producer(&name, &input);
    let seg = Segment::open(&name);
    let off = seg.reading_claim();
    let word = seg.u64(off);
    let forged = (word & !(0xff << 48)) | (owner << 48);
    seg.set_u64(off, forged);
    let pout = wait_with_timeout(p, LIMIT);
    let cout = wait_with_timeout(c, LIMIT);
    let perr = stderr(&pout);
    assert_eq!(pout.status.code(), Some(1), "producer:\n{perr}");
    assert!(
        perr.contains(&format!("ring \"{name}\" is corrupt")) && perr.contains("claim word"),
        "producer:\n{perr}"
    );
    assert_eq!(cout.status.code(), Some(1), "consumer:\n{}", stderr(&cout));
    assert!(
        stderr(&cout).contains("the producer failed: ring corrupt"),
        "consumer:\n{}",
        stderr(&cout)
    );
    assert!(!Path::new(&format!("/dev/shm/{name}")).exists());
}

#[test]
fn a_claim_word_naming_a_consumer_index_out_of_range_ends_both_with_exit_1() {
    claim_owned_by_nobody("corrupt-owner63", 63);
}

#[test]
fn a_claim_word_naming_an_unused_consumer_entry_ends_both_with_exit_1() {
    claim_owned_by_nobody("corrupt-owner5", 5);
}

#[test]
fn a_corrupt_return_queue_ends_both_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let input = inputs(tmp.path(), 20);
    let name = ring("corrupt-retcells");
    let c = consumer(&name, "1000");
    let p = producer(&name, &input);
    let seg = Segment::open(&name);
    // Consumer 0 holds a frame for a second; meanwhile every cell of its
    // return queue is scribbled over with a stamp no position has. Its
    // hand-back rewrites one of them; the producer finds the rest.
    seg.reading_claim();
    for cell in seg.return_cells(0) {
        seg.set_u64(cell, u64::MAX);
    }
    let pout = wait_with_timeout(p, LIMIT);
    let cout = wait_with_timeout(c, LIMIT);
    let perr = stderr(&pout);
    let cerr = stderr(&cout);
    assert_eq!(pout.status.code(), Some(1), "producer:\n{perr}");
    assert!(
        perr.contains(&format!("ring \"{name}\" is corrupt: return queue")),
        "producer:\n{perr}"
    );
    assert_eq!(cout.status.code(), Some(1), "consumer:\n{cerr}");
    assert!(
        cerr.contains("is corrupt") || cerr.contains("the producer failed: ring corrupt"),
        "consumer:\n{cerr}"
    );
}

/// Exit codes README documents.
const DOCUMENTED: [i32; 6] = [0, 1, 3, 4, 5, 130];

#[test]
fn random_words_of_the_control_region_never_hang_or_crash() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let input = inputs(tmp.path(), 40);
    let mut rng = common::Lcg(0x5eed_0012_0004);
    for trial in 0..8 {
        let name = ring(&format!("corrupt-random{trial}"));
        let c = consumer(&name, "5");
        let p = producer(&name, &input);
        let seg = Segment::open(&name);
        std::thread::sleep(Duration::from_millis(rng.next(100)));
        let word = rng.next(seg.frames() / 8) * 8;
        let value = (rng.next(1 << 32) << 32) | rng.next(1 << 32);
        seg.set_u64(word, value);
        let cout = wait_with_timeout(c, LIMIT);
        // A producer whose only consumer left waits for another (by
        // design); it must then stop on SIGTERM.
        let start = Instant::now();
        let mut p = p;
        while p.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if p.try_wait().unwrap().is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let pout = wait_with_timeout(p, LIMIT);
        for (who, out) in [("producer", &pout), ("consumer", &cout)] {
            let code = out.status.code();
            assert!(
                code.is_some_and(|c| DOCUMENTED.contains(&c)),
                "trial {trial} (word @{word}, value {value:#x}): {who} ended with {:?} (signal {:?}):\n{}",
                code,
                out.status.signal(),
                stderr(out)
            );
            assert!(
                !stderr(out).contains("panicked"),
                "trial {trial}: {who} panicked:\n{}",
                stderr(out)
            );
        }
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
}

#[test]
fn consumers_of_a_producer_whose_input_failed_take_its_frames_then_exit_1() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let name = ring("failed-input");
    let c = command(CONSUMER, &name, &["--output", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut p = command(PRODUCER, &name, &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Three whole raw frames, then a stream that ends inside the fourth.
    let frame = (common::SIDE * common::SIDE * 3) as usize;
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(&vec![7u8; frame * 3 + 100]).unwrap();
    drop(stdin);
    let pout = wait_with_timeout(p, LIMIT);
    let cout = wait_with_timeout(c, LIMIT);
    let (perr, cerr) = (stderr(&pout), stderr(&cout));
    assert_eq!(pout.status.code(), Some(1), "producer:\n{perr}");
    assert!(perr.contains("ended inside a frame"), "producer:\n{perr}");
    assert_eq!(cout.status.code(), Some(1), "consumer:\n{cerr}");
    assert!(
        cerr.contains("the producer failed: its input failed"),
        "consumer:\n{cerr}"
    );
    // What was published was taken and written first.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3, "{cerr}");
}
