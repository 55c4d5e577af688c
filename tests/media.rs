//! Inputs, with the real binaries: JPEGs a build cannot decode, producers
//! blocked reading their input (stdin, a stalled ffmpeg) stopped by a
//! signal, y4m streams on stdin checked against the ring's shape.

mod common;
use common::{signal, stderr, wait_for_state, wait_published, wait_with_timeout, StderrLog};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");

fn ring(tag: &str) -> String {
    format!("framering-md-{tag}-{}", std::process::id())
}

/// A binary with `--config /dev/null`, the ring name, a `h`×`w`×`c` shape.
fn command(bin: &str, ring: &str, (h, w, c): (u32, u32, u32), extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["--config", "/dev/null", "--ring", ring])
        .args(["--height", &h.to_string(), "--width", &w.to_string()])
        .args(["--channels", &c.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// libjpeg-turbo's arithmetic-coded and 12-bit test images are valid JPEGs:
/// skipped as `unsupported` (not `corrupt`), the log saying what would
/// decode them; their Huffman-coded 8-bit twin is published.
/// Runs a consumer (with `consumer_args`) and a producer over the folder
/// `dir` on ring `name`; both must succeed. The producer's stats JSON and
/// its stderr.
fn run_folder(
    name: &str,
    shape: (u32, u32, u32),
    dir: &Path,
    stats: &Path,
    consumer_args: &[&str],
) -> (serde_json::Value, String) {
    let c = command(CONSUMER, name, shape, consumer_args)
        .spawn()
        .unwrap();
    let p = command(
        PRODUCER,
        name,
        shape,
        &[
            "--input",
            dir.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let pout = wait_with_timeout(p, Duration::from_secs(30));
    let err = stderr(&pout);
    assert!(pout.status.success(), "{err}");
    let cout = wait_with_timeout(c, Duration::from_secs(30));
    assert!(cout.status.success(), "{}", stderr(&cout));
    (json(stats), err)
}

#[test]
fn valid_jpegs_this_build_cannot_decode_are_skipped_as_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    for n in ["testorig.jpg", "testimgari.jpg", "testorig12.jpg"] {
        std::fs::copy(data(n), dir.join(n)).unwrap();
    }
    let name = ring("unsupported");
    let shape = (149, 227, 3);
    let stats = tmp.path().join("p.json");
    let (j, err) = run_folder(&name, shape, &dir, &stats, &["--output", "null"]);
    let turbo = cfg!(feature = "turbojpeg");
    // With libjpeg-turbo the arithmetic-coded one decodes too.
    let (frames, unsupported) = if turbo { (2, 1) } else { (1, 2) };
    assert_eq!(j["frames"], frames, "{j}\n{err}");
    assert_eq!(j["skipped"]["unsupported"], unsupported, "{j}\n{err}");
    assert!(j["skipped"].get("corrupt").is_none(), "{j}");
    assert!(err.contains("testorig12.jpg"), "{err}");
    assert!(err.contains("12-bit JPEG"), "{err}");
    if !turbo {
        assert!(err.contains("arithmetic-coded JPEG"), "{err}");
        assert!(err.contains("--features turbojpeg"), "{err}");
    }
}

/// A FIFO held open for writing by the test (so that its reader never sees
/// an end) and never written to unless the test says so.
fn idle_fifo(path: &Path) -> std::fs::File {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Read+write: opening does not wait for a reader, and a reader opening
    // it later does not wait for a writer.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// A stop signal must end a producer within this, whatever it is doing.
/// Measured ~50-100 ms; the bound leaves room for a loaded 2-core machine.
const STOP_LIMIT: Duration = Duration::from_secs(2);

/// A producer blocked reading raw frames from stdin (a FIFO nobody writes
/// to) stops on SIGTERM and on SIGINT: exit 0 when nothing it published is
/// left unconsumed, 130 when it had published frames nobody took
/// (`--stop-timeout 0`); while blocked, its progress line says it waits for
/// input; no ring is left behind.
#[test]
fn a_producer_blocked_reading_stdin_stops_on_sigterm_and_sigint() {
    use nix::sys::signal::Signal;
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let shape = (24, 32, 3);
    let frame = vec![7u8; 24 * 32 * 3];
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        for frames in [0u64, 2] {
            let tag = format!("stdin-{}-{frames}", sig as i32);
            let name = ring(&tag);
            let fifo = tmp.path().join(&tag);
            let mut writer = idle_fifo(&fifo);
            let reader = std::fs::File::open(&fifo).unwrap();
            let mut p = command(
                PRODUCER,
                &name,
                shape,
                &[
                    "--input",
                    "-",
                    "--slots",
                    "4",
                    "--stop-timeout",
                    "0",
                    // Declared: frames are published without a consumer.
                    "--groups",
                    "default",
                ],
            )
            .stdin(reader)
            .spawn()
            .unwrap();
            for _ in 0..frames {
                writer.write_all(&frame).unwrap();
            }
            wait_published(&name, frames);
            let mut log = StderrLog::capture(&mut p);
            // Blocked reading stdin (the ring says so after 0.5 s of it);
            // in one case until its progress line (every 2 s) says so too.
            let progress = sig == Signal::SIGTERM && frames == 2;
            wait_for_state(&name, "waiting for its input", |s| {
                s.producer.input == framering::ring::InputState::Waiting
            });
            if progress {
                log.wait_for("waiting for input on stdin", Duration::from_secs(30));
            }
            signal(&p, sig);
            let t = Instant::now();
            let out = wait_with_timeout(p, Duration::from_secs(10));
            let took = t.elapsed();
            let err = log.text();
            assert!(took < STOP_LIMIT, "{tag}: took {took:?}\n{err}");
            let code = if frames == 0 { 0 } else { 130 };
            assert_eq!(out.status.code(), Some(code), "{tag}: {err}");
            if frames > 0 {
                assert!(
                    err.contains(&format!("abandoned {frames} published frames")),
                    "{tag}: {err}"
                );
            }
            if progress {
                assert!(err.contains("waiting for input on stdin"), "{tag}: {err}");
            }
            assert!(
                !Path::new("/dev/shm").join(&name).exists(),
                "{tag}: ring left behind"
            );
            drop(writer);
        }
    }
}

/// The pids of a process's children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
}

/// A producer whose ffmpeg produces nothing (it reads a FIFO nobody writes
/// to) stops on SIGTERM and SIGINT within the bound, kills its ffmpeg, and
/// leaves no ring behind; while blocked its progress line says it waits for
/// ffmpeg.
#[test]
fn a_producer_whose_ffmpeg_stalls_stops_on_a_signal_and_kills_ffmpeg() {
    use nix::sys::signal::Signal;
    let tmp = tempfile::tempdir().unwrap();
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let tag = format!("ffstall-{}", sig as i32);
        let name = ring(&tag);
        let fifo = tmp.path().join(format!("{tag}.y4m"));
        let writer = idle_fifo(&fifo);
        let mut p = command(
            PRODUCER,
            &name,
            (24, 32, 3),
            &[
                "--input",
                fifo.to_str().unwrap(),
                "--stop-timeout",
                "0",
                // Declared: the producer reads without waiting for a consumer.
                "--groups",
                "default",
            ],
        )
        .spawn()
        .unwrap();
        let start = Instant::now();
        let ffmpeg = loop {
            if let Some(&c) = children(p.id()).first() {
                break c;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no ffmpeg child");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut log = StderrLog::capture(&mut p);
        // Blocked reading ffmpeg's output (the ring says so after 0.5 s of
        // it); with SIGTERM until its progress line (every 2 s) says so too.
        let progress = sig == Signal::SIGTERM;
        wait_for_state(&name, "waiting for its input", |s| {
            s.producer.input == framering::ring::InputState::Waiting
        });
        if progress {
            log.wait_for("waiting for ffmpeg", Duration::from_secs(30));
        }
        signal(&p, sig);
        let t = Instant::now();
        let out = wait_with_timeout(p, Duration::from_secs(10));
        let took = t.elapsed();
        let err = log.text();
        assert!(took < STOP_LIMIT, "{tag}: took {took:?}\n{err}");
        assert_eq!(out.status.code(), Some(0), "{tag}: {err}");
        if progress {
            assert!(err.contains("waiting for ffmpeg"), "{tag}: {err}");
        }
        assert!(!running(ffmpeg), "{tag}: ffmpeg {ffmpeg} still runs");
        assert!(
            !Path::new("/dev/shm").join(&name).exists(),
            "{tag}: ring left behind"
        );
        drop(writer);
    }
}

/// A y4m stream of `frames` testsrc frames, `w`×`h`, in `pix_fmt`.
fn y4m(w: u32, h: u32, frames: u32, pix_fmt: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={w}x{h}:rate=25"))
        .args(["-frames:v", &frames.to_string(), "-pix_fmt", pix_fmt])
        .args(["-f", "yuv4mpegpipe", "-"])
        .output()
        .expect("ffmpeg is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ffmpeg's own decoding of a y4m stream to raw `pix_fmt` frames.
fn ffmpeg_decode(y4m: &[u8], pix_fmt: &str) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "yuv4mpegpipe"])
        .args(["-i", "-", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let bytes = y4m.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes).unwrap());
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Runs a producer on `input` (its stdin) into a consumer writing raw
/// frames to stdout: (producer, consumer) outputs.
fn through_stdin(name: &str, shape: (u32, u32, u32), input: Vec<u8>) -> (Output, Output) {
    use std::io::Write;
    let c = command(
        CONSUMER,
        name,
        shape,
        &["--output", "-", "--wait-timeout", "5"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut p = command(
        PRODUCER,
        name,
        shape,
        &["--input", "-", "--drain-timeout", "20"],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    // A producer that refuses the stream closes its end: EPIPE is fine.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || wait_with_timeout(c, Duration::from_secs(30)));
    let pout = wait_with_timeout(p, Duration::from_secs(30));
    feeder.join().unwrap();
    (pout, reader.join().unwrap())
}

/// A y4m stream on stdin whose frames are not of the ring's size is refused
/// before anything is published (exit 2, both sizes named); bare raw bytes
/// of that stream would have been published as garbage.
#[test]
fn a_y4m_stream_of_another_size_on_stdin_is_refused_before_publishing() {
    let stream = y4m(16, 16, 10, "yuv444p");
    let name = ring("y4m-size");
    let (p, c) = through_stdin(&name, (24, 32, 3), stream);
    let err = stderr(&p);
    assert_eq!(p.status.code(), Some(2), "{err}");
    assert!(err.contains("16x16") && err.contains("32x24"), "{err}");
    assert!(c.stdout.is_empty(), "{} bytes published", c.stdout.len());
    assert!(!Path::new("/dev/shm").join(&name).exists());
}

/// A y4m stream of the ring's size is converted to the ring's pixels:
/// 4:4:4 into RGB within a level or two of ffmpeg's own conversion, mono
/// into gray exactly; every frame, in order.
#[test]
fn a_y4m_stream_of_the_rings_size_on_stdin_is_converted_to_its_pixels() {
    let (w, h, n) = (32, 24, 12);
    for (pix_fmt, channels, ring_fmt) in [("yuv444p", 3, "rgb24"), ("gray", 1, "gray")] {
        let stream = y4m(w, h, n, pix_fmt);
        let expect = ffmpeg_decode(&stream, ring_fmt);
        assert_eq!(expect.len(), (w * h * channels * n) as usize);
        let name = ring(&format!("y4m-{pix_fmt}"));
        let (p, c) = through_stdin(&name, (h, w, channels), stream);
        assert!(p.status.success(), "{}", stderr(&p));
        assert!(c.status.success(), "{}", stderr(&c));
        assert_eq!(c.stdout.len(), expect.len(), "{pix_fmt}: every frame");
        let max = c
            .stdout
            .iter()
            .zip(&expect)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let tolerance = if channels == 1 { 0 } else { 2 };
        assert!(max <= tolerance, "{pix_fmt}: max diff {max}");
    }
}

/// The producer's summary says where the time went, per frame: read,
/// decode, convert/resize, publish (text and JSON); convert is 0 when the
/// files decode straight into the slot and not when they are resized; a
/// skipped input counts in the decode stages; the default build says what
/// libjpeg-turbo would give.
#[test]
fn the_producer_summary_times_each_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let jpeg = std::fs::read(data("testorig.jpg")).unwrap();
    for n in ["a.jpg", "b.jpg"] {
        std::fs::write(dir.join(n), &jpeg).unwrap();
    }
    std::fs::write(dir.join("c.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    // testorig.jpg is 227x149: its own size, then half of it.
    for (tag, shape, resized) in [("same", (149, 227, 3), false), ("half", (75, 113, 3), true)] {
        let name = ring(&format!("stages-{tag}"));
        let stats = tmp.path().join(format!("{tag}.json"));
        let (j, err) = run_folder(&name, shape, &dir, &stats, &["--output", "null", "--quiet"]);
        assert_eq!(j["frames"], 2, "{j}");
        let t = &j["stages"];
        assert_eq!(t["frames"], 3, "2 decoded, 1 skipped: {j}");
        for k in ["read_ms", "decode_ms", "publish_ms"] {
            assert!(t[k].as_f64().unwrap() > 0.0, "{k}: {j}");
        }
        // Resizing is timed as convert; at the ring's own size only the
        // first image, decoded ahead before its slot existed, is copied in
        // (counted as convert too), so the time is there but below decode.
        let (convert, decode) = (
            t["convert_ms"].as_f64().unwrap(),
            t["decode_ms"].as_f64().unwrap(),
        );
        if resized {
            assert!(convert > 0.0, "convert_ms: {j}");
        } else {
            assert!(convert < decode, "convert_ms: {j}");
        }
        assert!(err.contains("per frame: read "), "{err}");
        assert!(err.contains("convert/resize"), "{err}");
        let hint = "a build with --features turbojpeg";
        assert_eq!(err.contains(hint), !cfg!(feature = "turbojpeg"), "{err}");
        assert_eq!(t["hint"].is_string(), !cfg!(feature = "turbojpeg"), "{j}");
    }
}
