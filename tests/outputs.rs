//! An output that fails never loses a frame (issue 12 §2): the real
//! binaries, a declared (lossless) group, a consumer whose output fails
//! mid-run, then a healthy consumer of the same group. Every frame must be
//! written exactly once across both, with its own pixels; the failing
//! consumer exits 1 naming its output and the OS error, writes its
//! `--stats-json` and leaves no temporary file.
//!
//! The disk-full and read-only cases mount a tmpfs (root only); they are
//! skipped with a message where `mount` is not permitted.

mod common;
use common::{stderr, wait_with_timeout};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const H: u32 = 48;
const W: u32 = 64;
const FRAME: usize = (H * W * 3) as usize;
/// The declared group every test uses: it keeps its frames while no
/// consumer is attached, whatever the policy for ad-hoc groups.
const GROUP: &str = "rec";

fn ring(tag: &str) -> String {
    format!("framering-out-{tag}-{}", std::process::id())
}

/// Frame `k`: gray (R = G = B, so that a YUV round trip is nearly exact);
/// its first 8 rows hold `4k` (the frame's number, readable from a lossy
/// copy), the rest a gradient that differs from frame to frame.
fn pattern(k: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(FRAME);
    for y in 0..H as u64 {
        for x in 0..W as u64 {
            let g = if y < 8 {
                (k * 4) as u8
            } else {
                ((x * 3 + y * 5 + k * 7) % 256) as u8
            };
            v.extend_from_slice(&[g, g, g]);
        }
    }
    v
}

fn command(bin: &str, ring: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    let (h, w) = (H.to_string(), W.to_string());
    c.args(["--config", "/dev/null", "--ring", ring])
        .args(["--height", &h, "--width", &w, "--channels", "3"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A producer of `n` raw frames `pattern(0..n)` fed on its stdin, into the
/// declared group only.
fn start_producer(name: &str, n: u64) -> (Child, std::thread::JoinHandle<()>) {
    let mut p = command(
        PRODUCER,
        name,
        &[
            "--slots",
            "6",
            "--groups",
            GROUP,
            "--input",
            "-",
            "--drain-timeout",
            "60",
        ],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for k in 0..n {
            if stdin.write_all(&pattern(k)).is_err() {
                return;
            }
        }
    });
    (p, feeder)
}

fn consumer(name: &str, output: &str, extra: &[&str]) -> Command {
    let mut c = command(CONSUMER, name, &["--group", GROUP, "--output", output]);
    c.args(["--format", "ppm", "--wait-timeout", "30"])
        .args(extra);
    c
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// seq -> pixels of every frame file in `dirs`; panics on a duplicate or a
/// temporary file.
fn frames_in(dirs: &[&Path]) -> BTreeMap<u64, Vec<u8>> {
    let mut all = BTreeMap::new();
    for d in dirs {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            assert!(!name.starts_with('.'), "temporary file left behind: {name}");
            let seq: u64 = name.split('.').next().unwrap().parse().unwrap();
            let pixels = image::open(&p).unwrap().to_rgb8().into_raw();
            assert!(
                all.insert(seq, pixels).is_none(),
                "frame {seq} written twice"
            );
        }
    }
    all
}

/// Every frame `0..n` exactly once in `frames`, each with its own pixels.
fn assert_every_frame_once(frames: &BTreeMap<u64, Vec<u8>>, n: u64) {
    let seqs: Vec<u64> = frames.keys().copied().collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "every frame exactly once");
    for (&k, pixels) in frames {
        assert!(
            *pixels == pattern(k),
            "frame {k} has another frame's pixels"
        );
    }
}

/// A tmpfs mounted at a directory for the test's duration.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (and a message) where mounting is not permitted.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipping: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Tmpfs(dir.into()))
    }

    /// Remounts it read-only (retrying while a file is open for writing).
    fn remount_ro(&self) {
        let start = Instant::now();
        while !Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            assert!(start.elapsed() < Duration::from_secs(10), "remount,ro");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_for_files(dir: &Path, n: usize) {
    let start = Instant::now();
    while std::fs::read_dir(dir).map_or(0, |d| d.count()) < n {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The failing consumer ended as it must: exit 1, its output and `os_error`
/// named, its stats written with the frames it handed back.
/// Runs a consumer of ring `name` into `output` (with `extra` flags) that
/// must fail: exit 1 naming the output and `os_error`, its stats written.
fn run_failing_consumer(name: &str, output: &str, extra: &[&str], stats: &Path, os_error: &str) {
    let out = wait_with_timeout(
        consumer(name, output, extra)
            .arg("--stats-json")
            .arg(stats)
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    assert_failed(&out, output, os_error, stats);
}

fn assert_failed(out: &Output, output: &str, os_error: &str, stats: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(output), "names the output: {err}");
    assert!(err.contains(os_error), "names the OS error: {err}");
    let s = json(stats);
    assert!(s["given_back"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert!(
        s["output_error"].as_str().unwrap().contains(os_error),
        "{s}"
    );
}

/// Runs the healthy consumer into `dir` to the end of the stream, and the
/// producer to its end; both must succeed.
fn finish_with_healthy_consumer(
    name: &str,
    dir: &Path,
    producer: (Child, std::thread::JoinHandle<()>),
) -> serde_json::Value {
    let stats = dir.with_extension("json");
    let c = consumer(
        name,
        dir.to_str().unwrap(),
        &["--stats-json", stats.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    let (p, feeder) = producer;
    let pout = wait_with_timeout(p, Duration::from_secs(60));
    feeder.join().unwrap();
    assert!(pout.status.success(), "producer: {}", stderr(&pout));
    let cout = wait_with_timeout(c, Duration::from_secs(30));
    assert!(cout.status.success(), "healthy consumer: {}", stderr(&cout));
    json(&stats)
}

#[test]
fn a_full_disk_hands_the_frame_back_and_the_next_consumer_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    // About 5 frame files (3 pages each) fit.
    let Some(_fs) = Tmpfs::mount(&full, "64k") else {
        return;
    };
    let (name, n) = (ring("enospc"), 40);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    run_failing_consumer(
        &name,
        full.to_str().unwrap(),
        &[],
        &stats,
        "No space left on device",
    );
    let healthy = tmp.path().join("healthy");
    let s = finish_with_healthy_consumer(&name, &healthy, producer);
    assert!(s["redelivered"].as_u64().unwrap() >= 1, "{s}");
    assert_every_frame_once(&frames_in(&[&full, &healthy]), n);
}

#[test]
fn a_directory_moved_away_mid_run_hands_the_frame_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let moved = tmp.path().join("moved");
    let (name, n) = (ring("moved"), 40);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    let c = consumer(
        &name,
        dir.to_str().unwrap(),
        &["--stats-json", stats.to_str().unwrap(), "--hold-ms", "20"],
    )
    .spawn()
    .unwrap();
    wait_for_files(&dir, 4);
    std::fs::rename(&dir, &moved).unwrap();
    let out = wait_with_timeout(c, Duration::from_secs(30));
    assert_failed(
        &out,
        dir.to_str().unwrap(),
        "No such file or directory",
        &stats,
    );
    let healthy = tmp.path().join("healthy");
    finish_with_healthy_consumer(&name, &healthy, producer);
    assert_every_frame_once(&frames_in(&[&moved, &healthy]), n);
}

#[test]
fn a_read_only_remount_mid_run_hands_the_frame_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    let Some(fs) = Tmpfs::mount(&dir, "16m") else {
        return;
    };
    let (name, n) = (ring("ro"), 40);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    let c = consumer(
        &name,
        dir.to_str().unwrap(),
        &["--stats-json", stats.to_str().unwrap(), "--hold-ms", "20"],
    )
    .spawn()
    .unwrap();
    wait_for_files(&dir, 4);
    fs.remount_ro();
    let out = wait_with_timeout(c, Duration::from_secs(30));
    assert_failed(&out, dir.to_str().unwrap(), "Read-only file system", &stats);
    let healthy = tmp.path().join("healthy");
    finish_with_healthy_consumer(&name, &healthy, producer);
    assert_every_frame_once(&frames_in(&[&dir, &healthy]), n);
}

#[test]
fn a_pipe_closed_early_hands_back_every_frame_its_reader_did_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (name, n) = (ring("epipe"), 40);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    let mut c = consumer(&name, "-", &["--stats-json", stats.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader takes two and a half frames, then goes away (as
    // `head -c` does).
    let mut pipe = c.stdout.take().unwrap();
    let mut got = vec![0u8; FRAME * 5 / 2];
    pipe.read_exact(&mut got).unwrap();
    drop(pipe);
    let out = wait_with_timeout(c, Duration::from_secs(30));
    assert_failed(&out, "stdout", "Broken pipe", &stats);
    let mut frames = BTreeMap::new();
    for (k, whole) in got.chunks_exact(FRAME).enumerate() {
        frames.insert(k as u64, whole.to_vec());
    }
    let healthy = tmp.path().join("healthy");
    finish_with_healthy_consumer(&name, &healthy, producer);
    for (seq, pixels) in frames_in(&[&healthy]) {
        assert!(
            frames.insert(seq, pixels).is_none(),
            "frame {seq} read from the pipe and written again"
        );
    }
    assert_every_frame_once(&frames, n);
}

#[test]
fn outputs_that_cannot_be_written_are_refused_before_any_frame_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let (name, n) = (ring("refused"), 12);
    let producer = start_producer(&name, n);
    let check = |out: Output, what: &str| {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(what), "{err}");
    };
    // A video file in a directory that does not exist.
    let out = consumer(&name, "/nonexistent/dir/x.mp4", &[])
        .output()
        .unwrap();
    check(out, "/nonexistent/dir");
    // Standard output whose reader has gone.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = consumer(&name, "-", &[])
        .stdout(Stdio::from(write_end))
        .output()
        .unwrap();
    check(out, "standard output cannot be written");
    // A video file and an image directory on a read-only file system.
    let ro = tmp.path().join("ro");
    if let Some(fs) = Tmpfs::mount(&ro, "1m") {
        fs.remount_ro();
        let video = ro.join("x.y4m");
        let out = consumer(&name, video.to_str().unwrap(), &[])
            .output()
            .unwrap();
        check(out, "Read-only file system");
        let out = consumer(&name, ro.join("frames").to_str().unwrap(), &[])
            .output()
            .unwrap();
        check(out, "Read-only file system");
    }
    // None of them took a frame: the next consumer gets every one, none
    // delivered again.
    let healthy = tmp.path().join("healthy");
    let s = finish_with_healthy_consumer(&name, &healthy, producer);
    assert_eq!(s["redelivered"], 0, "{s}");
    assert_every_frame_once(&frames_in(&[&healthy]), n);
}

/// The frames of a `.y4m` file, as RGB (through ffmpeg).
fn y4m_frames(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len() % FRAME, 0);
    out.stdout.chunks_exact(FRAME).map(<[u8]>::to_vec).collect()
}

#[test]
fn a_y4m_video_on_a_disk_that_fills_loses_no_frame() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("skipping: no ffmpeg");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    // About 7 frames of yuv444p fit.
    let Some(_fs) = Tmpfs::mount(&full, "64k") else {
        return;
    };
    let (name, n) = (ring("y4m"), 40);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    let video = full.join("rec.y4m");
    run_failing_consumer(
        &name,
        video.to_str().unwrap(),
        &[],
        &stats,
        "No space left on device",
    );
    let healthy = tmp.path().join("healthy");
    finish_with_healthy_consumer(&name, &healthy, producer);
    // The video holds whole frames only (cut after the last one), each a
    // frame of the stream, close to its pixels (YUV is lossy).
    let mut frames = frames_in(&[&healthy]);
    let in_video = y4m_frames(&video);
    assert!(!in_video.is_empty(), "some frames fit on the disk");
    for rgb in in_video {
        let k = ((rgb[..(8 * W * 3) as usize]
            .iter()
            .map(|&b| b as f64)
            .sum::<f64>()
            / (8 * W * 3) as f64)
            / 4.0)
            .round() as u64;
        let want = pattern(k);
        let diff = rgb
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs() as f64)
            .sum::<f64>()
            / FRAME as f64;
        assert!(diff < 2.0, "frame {k} in the video differs by {diff}");
        assert!(
            frames.insert(k, want).is_none(),
            "frame {k} in the video and written again"
        );
    }
    assert_every_frame_once(&frames, n);
}

#[test]
fn an_encoder_that_fails_at_its_first_frame_loses_none() {
    // An "ffmpeg" that runs, then fails once the first frame arrives, as a
    // real one does when it cannot open its output or encoder (it opens
    // them only then): the consumer has taken frames meanwhile.
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("ffmpeg");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$1\" = -version ] && exit 0\nhead -c {FRAME} >/dev/null\necho 'simulated encoder failure' >&2\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (name, n) = (ring("encoder"), 30);
    let producer = start_producer(&name, n);
    let stats = tmp.path().join("failing.json");
    let video = tmp.path().join("rec.mp4");
    run_failing_consumer(
        &name,
        video.to_str().unwrap(),
        &["--ffmpeg", fake.to_str().unwrap()],
        &stats,
        "simulated encoder failure",
    );
    let healthy = tmp.path().join("healthy");
    let s = finish_with_healthy_consumer(&name, &healthy, producer);
    assert!(s["redelivered"].as_u64().unwrap() >= 1, "{s}");
    assert_every_frame_once(&frames_in(&[&healthy]), n);
}
