//! Video pipelines with the real binaries and real ffmpeg: video in and out,
//! consumer groups, drop-oldest backpressure, raw frames on stdin.
//!
//! ffmpeg must be installed (`.ci/run` installs it); without it these tests
//! fail rather than pass vacuously.

mod common;
use common::{ffmpeg, stderr, wait_with_timeout};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");

fn ring(tag: &str) -> String {
    format!("framering-vt-{tag}-{}", std::process::id())
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
    let cstats = tmp.path().join("c.json");
    let c = command(CONSUMER, &name, w, h, &["--output", out.to_str().unwrap()])
        .arg("--stats-json")
        .arg(&cstats)
        .spawn()
        .unwrap();
    let p = command(PRODUCER, &name, w, h, &["--input", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    let c = wait_with_timeout(c, Duration::from_secs(60));
    assert!(c.status.success(), "{}", stderr(&c));
    // (--quiet: the summary is in the JSON only.)
    assert_eq!(json(&cstats)["frames"], n, "{}", stderr(&c));

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
    // Frames published before the consumer's group existed count as the
    // producer's drops only; the rest as the group's too.
    assert!(ps["groups"]["default"].as_u64().unwrap() <= dropped);
    assert_eq!(cs["dropped"], ps["groups"]["default"]);
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

/// Spawns a directory consumer of `group` writing PPMs into `dir`.
fn ppm_consumer(name: &str, w: u32, h: u32, group: &str, dir: &Path, extra: &[&str]) -> Child {
    command(
        CONSUMER,
        name,
        w,
        h,
        &["--group", group, "--format", "ppm", "--output"],
    )
    .arg(dir)
    .args(extra)
    .spawn()
    .unwrap()
}

/// Checks that `dirs` together hold every frame of `reference` exactly once
/// (`exactly`) or at least once, each file with the reference's pixels.
fn assert_every_frame(dirs: &[&Path], reference: &[Vec<u8>], exactly: bool) {
    let mut all = vec![];
    for d in dirs {
        for seq in seqs(d) {
            let px = ppm_pixels(&d.join(format!("{seq:010}.ppm")));
            assert!(
                px == reference[seq as usize],
                "frame {seq} in {}",
                d.display()
            );
            all.push(seq);
        }
    }
    all.sort_unstable();
    if !exactly {
        all.dedup();
    }
    assert_eq!(all, (0..reference.len() as u64).collect::<Vec<_>>());
}

#[test]
fn two_ad_hoc_groups_on_a_video_each_get_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 48, 120);
    let src = test_video(tmp.path(), n, w, h);
    let reference = raw_frames(&src, w, h);
    // The producer starts first; nobody declared a group. It used to hold
    // every frame in an implicit "default" group and hang after 8 frames.
    let name = ring("adhoc2");
    let p = command(
        PRODUCER,
        &name,
        w,
        h,
        &["--input", src.to_str().unwrap(), "--wait-groups", "2"],
    )
    .spawn()
    .unwrap();
    common::wait_for_ring(&name);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let ca = ppm_consumer(&name, w, h, "a", &a, &[]);
    let cb = ppm_consumer(&name, w, h, "b", &b, &[]);
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    for c in [ca, cb] {
        let out = wait_with_timeout(c, Duration::from_secs(30));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_every_frame(&[&a], &reference, true);
    assert_every_frame(&[&b], &reference, true);

    // Without --wait-groups the second group joins a running stream: it
    // gets every frame from its first one on, and nothing hangs.
    let name = ring("adhoc2late");
    let (a, b) = (tmp.path().join("late-a"), tmp.path().join("late-b"));
    let ca = ppm_consumer(&name, w, h, "a", &a, &["--hold-ms", "5"]);
    let p = command(PRODUCER, &name, w, h, &["--input", src.to_str().unwrap()])
        .spawn()
        .unwrap();
    while seqs(&a).len() < 10 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cb = ppm_consumer(&name, w, h, "b", &b, &[]);
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    for c in [ca, cb] {
        let out = wait_with_timeout(c, Duration::from_secs(30));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_every_frame(&[&a], &reference, true);
    let late = seqs(&b);
    assert!(!late.is_empty() && late[0] > 0, "{late:?}");
    assert_eq!(late, (late[0]..n as u64).collect::<Vec<_>>());
}

#[test]
fn a_recorder_and_a_live_preview_share_a_ring_without_slowing_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 48, 400);
    let src = test_video(tmp.path(), n, w, h);
    let reference = raw_frames(&src, w, h);
    let name = ring("recpreview");
    let rec = tmp.path().join("rec");
    let recorder = ppm_consumer(&name, w, h, "rec", &rec, &[]);
    let preview_stats = tmp.path().join("preview.json");
    // 20 ms per frame: a preview that keeps up with 50 fps at most.
    let preview = command(
        CONSUMER,
        &name,
        w,
        h,
        &["--group", "preview", "--output", "null", "--hold-ms", "20"],
    )
    .arg("--stats-json")
    .arg(&preview_stats)
    .spawn()
    .unwrap();
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
            "rec,preview:live",
            "--fps-limit",
            "200",
            "--slots",
            "8",
        ],
    )
    .arg("--stats-json")
    .arg(&stats)
    .spawn()
    .unwrap();
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    for c in [recorder, preview] {
        let out = wait_with_timeout(c, Duration::from_secs(30));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // The recorder: every frame exactly once, every file's pixels right.
    assert_every_frame(&[&rec], &reference, true);
    let s = json(&stats);
    assert_eq!(s["frames"], n);
    assert_eq!(s["groups"]["rec"], 0, "{s}");
    // The producer kept its own pace (at most the limit), far above the
    // preview's 50 fps: the preview did not hold it back.
    let fps = s["fps"].as_f64().unwrap();
    assert!(fps <= 200.0 * 1.05, "fps limit exceeded: {fps}");
    assert!(fps >= 100.0, "the preview slowed the producer to {fps} fps");
    // The preview lost what it could not keep up with, counted: every
    // frame is either taken by it or counted as its drop.
    let dropped = s["groups"]["preview"].as_u64().unwrap();
    let taken = json(&preview_stats)["frames"].as_u64().unwrap();
    assert!(dropped > 0, "{s}");
    assert_eq!(
        taken + dropped,
        n as u64,
        "preview took {taken}, dropped {dropped}"
    );
}

#[test]
fn a_killed_consumer_restarted_within_the_linger_period_gets_its_groups_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 48, 150);
    let src = test_video(tmp.path(), n, w, h);
    let reference = raw_frames(&src, w, h);
    let name = ring("linger");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    let victim = ppm_consumer(&name, w, h, "rec", &first, &["--hold-ms", "5"]);
    let stats = tmp.path().join("p.json");
    let p = command(PRODUCER, &name, w, h, &["--input", src.to_str().unwrap()])
        .arg("--stats-json")
        .arg(&stats)
        .spawn()
        .unwrap();
    while seqs(&first).len() < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = victim.wait_with_output().unwrap();
    assert!(!out.status.success());
    // Its group lingers (the default 30 s): once the producer has seen the
    // death (`status` says so), a restart loses nothing.
    let start = std::time::Instant::now();
    loop {
        let status = Command::new(env!("CARGO_BIN_EXE_framering"))
            .args(["status", &name, "--interval", "0.1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&status.stdout);
        if text.contains("its last consumer died") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "status never said the group's last consumer died: {text}"
        );
    }
    let rescuer = ppm_consumer(&name, w, h, "rec", &second, &[]);
    let p = wait_with_timeout(p, Duration::from_secs(60));
    assert!(p.status.success(), "{}", stderr(&p));
    let out = wait_with_timeout(rescuer, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    // At least once: a frame the victim wrote but had not handed back when
    // it died is delivered again.
    assert_every_frame(&[&first, &second], &reference, false);
    assert_eq!(json(&stats)["dropped"], 0);
}
