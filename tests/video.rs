//! Video pipelines with the real binaries and real ffmpeg: video in and out,
//! consumer groups, drop-oldest backpressure, raw frames on stdin.
//!
//! ffmpeg must be installed (`.ci/run` installs it); without it these tests
//! fail rather than pass vacuously.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");

fn ring(tag: &str) -> String {
    format!("framering-vt-{tag}-{}", std::process::id())
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A testsrc video of `frames` frames, `w`×`h`, lossless (every frame exact).
fn test_video(dir: &Path, frames: u32, w: u32, h: u32) -> PathBuf {
    let p = dir.join("src.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={w}x{h}:rate=25"),
        "-frames:v",
        &frames.to_string(),
        "-c:v",
        "ffv1",
        p.to_str().unwrap(),
    ]);
    p
}

/// Decodes a video to raw RGB frames of `w`×`h`.
fn raw_frames(video: &Path, w: u32, h: u32) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(video)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = (w * h * 3) as usize;
    assert_eq!(out.stdout.len() % n, 0);
    out.stdout.chunks(n).map(|c| c.to_vec()).collect()
}

fn command(bin: &str, ring: &str, w: u32, h: u32, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["--config", "/dev/null", "--ring", ring, "--quiet"])
        .args(["--height", &h.to_string(), "--width", &w.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("timed out: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Sequence numbers of the frames a directory consumer wrote.
fn seqs(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.split('.').next()?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn ppm_pixels(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
        .sum::<u64>() as f64
        / a.len() as f64
}

#[test]
fn a_video_through_the_ring_into_an_encoded_file_keeps_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (320, 240, 250);
    let src = test_video(tmp.path(), n, w, h);
    let name = ring("encode");
    let out = tmp.path().join("out.mp4");
    let c = command(CONSUMER, &name, w, h, &["--output", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let p = command(PRODUCER, &name, w, h, &["--input", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    let c = wait_with_timeout(c, Duration::from_secs(60));
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(
        stderr(&c).contains(&format!("consumer: {n} frames")),
        "{}",
        stderr(&c)
    );

    let source = raw_frames(&src, w, h);
    let encoded = raw_frames(&out, w, h);
    assert_eq!(source.len(), n as usize);
    assert_eq!(encoded.len(), n as usize, "frame count of the encoded file");
    for k in [0, 1, 100, n as usize - 1] {
        let d = mean_abs_diff(&source[k], &encoded[k]);
        assert!(
            d < 4.0,
            "frame {k}: mean abs difference {d} (codec loss only)"
        );
    }
    // And not trivially: different frames differ by more than the codec loss.
    assert!(
        mean_abs_diff(&source[0], &encoded[100]) > 2.0 * mean_abs_diff(&source[100], &encoded[100])
    );
}

#[test]
fn two_groups_of_two_consumers_each_write_every_frame_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 48, 300);
    let src = test_video(tmp.path(), n, w, h);
    let reference = raw_frames(&src, w, h);
    let name = ring("groups");
    let dirs: Vec<(String, PathBuf)> = ["a", "a", "b", "b"]
        .iter()
        .enumerate()
        .map(|(i, g)| (g.to_string(), tmp.path().join(format!("{g}{i}"))))
        .collect();
    let consumers: Vec<Child> = dirs
        .iter()
        .map(|(g, d)| {
            command(
                CONSUMER,
                &name,
                w,
                h,
                &["--group", g, "--format", "ppm", "--output"],
            )
            .arg(d)
            .spawn()
            .unwrap()
        })
        .collect();
    let stats = tmp.path().join("p.json");
    let p = command(
        PRODUCER,
        &name,
        w,
        h,
        &[
            "--input",
            src.to_str().unwrap(),
            "--groups",
            "a,b",
            "--slots",
            "6",
        ],
    )
    .arg("--stats-json")
    .arg(&stats)
    .spawn()
    .unwrap();
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    for c in consumers {
        let out = wait_with_timeout(c, Duration::from_secs(30));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(json(&stats)["frames"], n);
    assert_eq!(json(&stats)["dropped"], 0);
    for group in ["a", "b"] {
        let mut all = vec![];
        for (g, d) in dirs.iter().filter(|(g, _)| g == group) {
            let s = seqs(d);
            assert!(
                !s.is_empty(),
                "consumer of group {g} got nothing: not sharing"
            );
            all.extend(s);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n as u64).collect::<Vec<_>>(),
            "group {group}: every seq exactly once"
        );
    }
    // The pixels are the video's frames, in order.
    for (_, d) in &dirs {
        for seq in seqs(d).into_iter().step_by(37) {
            let px = ppm_pixels(&d.join(format!("{seq:010}.ppm")));
            assert_eq!(
                px,
                reference[seq as usize],
                "frame {seq} in {}",
                d.display()
            );
        }
    }
}

/// Raw frame `k` of a `w`×`h`×3 stream: every byte depends on `k` and the
/// position, so a frame overwritten by another one can be told apart.
fn pattern(k: u64, w: u32, h: u32) -> Vec<u8> {
    (0..(w * h * 3) as u64)
        .map(|i| (i.wrapping_mul(31) ^ k.wrapping_mul(0x9e37_79b9) ^ (k >> 8)) as u8)
        .collect()
}

/// Writes raw frames `pattern(0..n)` to the child's stdin from a thread.
fn feed(p: &mut Child, n: u64, w: u32, h: u32) -> std::thread::JoinHandle<()> {
    let mut stdin = p.stdin.take().unwrap();
    std::thread::spawn(move || {
        for k in 0..n {
            stdin.write_all(&pattern(k, w, h)).unwrap();
        }
    })
}

#[test]
fn drop_oldest_keeps_a_live_pace_with_a_slow_consumer_and_never_overwrites_a_frame_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n, fps) = (64, 48, 600u64, 300.0);
    let name = ring("drop");
    let out = tmp.path().join("slow");
    let cstats = tmp.path().join("c.json");
    // The slow consumer holds every frame 20 ms: about 50 fps against 300.
    let c = command(
        CONSUMER,
        &name,
        w,
        h,
        &[
            "--format",
            "ppm",
            "--hold-ms",
            "20",
            "--output",
            out.to_str().unwrap(),
        ],
    )
    .arg("--stats-json")
    .arg(&cstats)
    .spawn()
    .unwrap();
    let pstats = tmp.path().join("p.json");
    let mut p = command(
        PRODUCER,
        &name,
        w,
        h,
        &[
            "--input",
            "-",
            "--backpressure",
            "drop_oldest",
            "--slots",
            "4",
        ],
    )
    .args(["--fps-limit", &fps.to_string()])
    .arg("--stats-json")
    .arg(&pstats)
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let writer = feed(&mut p, n, w, h);
    let p = wait_with_timeout(p, Duration::from_secs(60));
    writer.join().unwrap();
    assert!(p.status.success(), "{}", stderr(&p));
    let c = wait_with_timeout(c, Duration::from_secs(30));
    assert!(c.status.success(), "{}", stderr(&c));

    let ps = json(&pstats);
    let cs = json(&cstats);
    assert_eq!(ps["frames"], n);
    // The producer kept its pace (generously: CI machines are noisy)...
    let pace = ps["fps"].as_f64().unwrap();
    assert!(
        pace > 0.6 * fps && pace < 1.2 * fps,
        "producer pace {pace} fps for a limit of {fps}"
    );
    // ...so frames were dropped, and counted: taken + dropped = published.
    let taken = cs["frames"].as_u64().unwrap();
    let dropped = ps["dropped"].as_u64().unwrap();
    assert!(
        dropped > n / 2,
        "a 50 fps reader of a 300 fps source drops most: {dropped}"
    );
    assert_eq!(taken + dropped, n, "every frame either taken or dropped");
    eprintln!("drop_oldest: producer {pace:.1} fps (limit {fps}), consumer took {taken}, dropped {dropped}");
    assert_eq!(ps["groups"]["default"], dropped);
    assert_eq!(cs["dropped"], dropped);
    assert!(stderr(&p).contains("dropped"), "{}", stderr(&p));
    // Every frame written is the frame of its sequence number, whole.
    let written = seqs(&out);
    assert_eq!(written.len() as u64, taken);
    assert_eq!(written.iter().collect::<BTreeSet<_>>().len(), written.len());
    for seq in written {
        let px = ppm_pixels(&out.join(format!("{seq:010}.ppm")));
        assert!(
            px == pattern(seq, w, h),
            "frame {seq} was overwritten while being read"
        );
    }
}

#[test]
fn raw_frames_on_stdin_and_raw_frames_to_stdout_round_trip() {
    let (w, h, n) = (32, 24, 50u64);
    let name = ring("stdio");
    let c = command(CONSUMER, &name, w, h, &["--output", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut p = command(PRODUCER, &name, w, h, &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are bounded: feed and drain them concurrently.
    let writer = feed(&mut p, n, w, h);
    let reader = std::thread::spawn(move || c.wait_with_output().unwrap());
    let p = wait_with_timeout(p, Duration::from_secs(30));
    writer.join().unwrap();
    assert!(p.status.success(), "{}", stderr(&p));
    let c = reader.join().unwrap();
    assert!(c.status.success(), "{}", stderr(&c));
    let expect: Vec<u8> = (0..n).flat_map(|k| pattern(k, w, h)).collect();
    assert!(
        c.stdout == expect,
        "stdout holds every frame, in order, byte for byte"
    );
}

#[test]
fn a_missing_ffmpeg_or_an_unreadable_video_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let name = ring("errors");
    // A file that exists (ffmpeg would judge it), with no ffmpeg to do so.
    let clip = tmp.path().join("clip.mp4");
    std::fs::write(&clip, b"not really a video").unwrap();
    let out = command(
        PRODUCER,
        &name,
        32,
        24,
        &[
            "--input",
            clip.to_str().unwrap(),
            "--ffmpeg",
            "/no/such/ffmpeg",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("apt-get install ffmpeg"),
        "{}",
        stderr(&out)
    );

    let missing = tmp.path().join("missing.mp4");
    let out = command(
        PRODUCER,
        &name,
        32,
        24,
        &["--input", missing.to_str().unwrap()],
    )
    .output()
    .unwrap();
    // A missing input file is a bad input path, said before ffmpeg runs.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // A file ffmpeg cannot read is ffmpeg's failure (exit 1), its own
    // message kept.
    let out = command(
        PRODUCER,
        &name,
        32,
        24,
        &["--input", clip.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ffmpeg failed"), "{}", stderr(&out));
    assert!(
        !Path::new("/dev/shm").join(&name).exists(),
        "the ring was removed"
    );
}
