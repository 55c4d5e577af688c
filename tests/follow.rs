//! The ring follows its input (issue 22 §3): a producer given no shape takes
//! its input's; a video consumer writes the source's frame rate; outputs,
//! flags, quiet runs and summaries as documented. Real binaries, real files,
//! real ffmpeg.

mod common;
use common::{ffmpeg, stderr, wait_with_timeout};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Generous: a cold, loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

fn ring(tag: &str) -> String {
    format!("framering-follow-{tag}-{}", std::process::id())
}

/// A lossless testsrc video of `frames` frames, `w`×`h`, at `rate` fps.
fn video(dir: &Path, name: &str, frames: u32, (w, h): (u32, u32), rate: u32) -> PathBuf {
    let p = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={w}x{h}:rate={rate}"),
        "-frames:v",
        &frames.to_string(),
        "-c:v",
        "ffv1",
        p.to_str().unwrap(),
    ]);
    p
}

/// A producer as a user runs it: no shape on its command line; its config
/// is `config` (the shipped `config.toml` when run from the repository).
fn producer(name: &str, config: &str, args: &[&str]) -> Command {
    let mut c = Command::new(PRODUCER);
    c.current_dir(REPO)
        .args(["--config", config, "--ring", name])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A consumer of ring `name` writing to `output` (no shape: it adopts the
/// ring's).
fn consumer(name: &str, output: &Path, args: &[&str]) -> Child {
    Command::new(CONSUMER)
        .args([
            "--config",
            "/dev/null",
            "--ring",
            name,
            "--wait-timeout",
            "60",
        ])
        .arg("--output")
        .arg(output)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for both; asserts both succeeded.
fn finish(p: Child, c: Child) -> (Output, Output) {
    let po = wait_with_timeout(p, LIMIT);
    let co = wait_with_timeout(c, LIMIT);
    assert!(po.status.success(), "producer: {}", stderr(&po));
    assert!(co.status.success(), "consumer: {}", stderr(&co));
    (po, co)
}

/// The `(width, height)` of every image in `dir`, in name order.
fn sizes(dir: &Path) -> Vec<(u32, u32)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| image::image_dimensions(f).unwrap())
        .collect()
}

/// A producer whose configuration gives no frame size (the shipped
/// `config.toml`, or none) creates its ring with its first input's size:
/// a video's, the first image's (later images of another size are fitted
/// into it), a y4m stream's. Raw frames on stdin still need a size.
#[test]
fn a_producer_given_no_shape_takes_its_inputs_size() {
    let tmp = tempfile::tempdir().unwrap();
    // A video, with the shipped config.toml (run from the repository) and
    // with no config at all.
    let src = video(tmp.path(), "in.mkv", 6, (64, 48), 25);
    for config in ["config.toml", "/dev/null"] {
        let name = ring("video");
        let out = tmp.path().join(format!("video-{}", config.len()));
        let c = consumer(&name, &out, &["--format", "ppm"]);
        let p = producer(&name, config, &["--input", src.to_str().unwrap()])
            .spawn()
            .unwrap();
        let (po, _) = finish(p, c);
        assert_eq!(sizes(&out), vec![(64, 48); 6], "{config}: {}", stderr(&po));
        assert!(
            stderr(&po).contains("the ring takes the video's size, 64x48"),
            "{}",
            stderr(&po)
        );
    }

    // Images of two sizes: the first one's is the ring's; the second is
    // fitted (letterboxed) into it.
    let dir = tmp.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]))
        .save(dir.join("a.png"))
        .unwrap();
    image::RgbImage::from_pixel(20, 20, image::Rgb([10, 200, 10]))
        .save(dir.join("b.png"))
        .unwrap();
    let name = ring("images");
    let out = tmp.path().join("images-out");
    let c = consumer(&name, &out, &["--format", "png"]);
    let p = producer(&name, "config.toml", &["--input", dir.to_str().unwrap()])
        .spawn()
        .unwrap();
    finish(p, c);
    assert_eq!(sizes(&out), vec![(40, 30); 2]);

    // A y4m stream on stdin.
    let name = ring("y4m");
    let out = tmp.path().join("y4m-out");
    let c = consumer(&name, &out, &["--format", "ppm"]);
    let mut p = producer(&name, "/dev/null", &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let y4m = y4m_stream(32, 24, 3, "25:1");
    p.stdin.take().unwrap().write_all(&y4m).unwrap();
    finish(p, c);
    assert_eq!(sizes(&out), vec![(32, 24); 3]);

    // Bare raw frames carry no size: a usage error naming the flags.
    let mut p = producer(&ring("raw"), "/dev/null", &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(&[0u8; 4096]).unwrap();
    let out = wait_with_timeout(p, LIMIT);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("raw frames carry no size") && stderr(&out).contains("--height"),
        "{}",
        stderr(&out)
    );
}

/// A y4m stream (C444) of `n` frames of `w`×`h` at frame rate `rate`
/// (`num:den`).
fn y4m_stream(w: usize, h: usize, n: usize, rate: &str) -> Vec<u8> {
    let mut s = format!("YUV4MPEG2 W{w} H{h} F{rate} Ip A1:1 C444\n").into_bytes();
    for k in 0..n {
        s.extend_from_slice(b"FRAME\n");
        s.extend(vec![40 + 20 * k as u8; w * h]);
        s.extend(vec![128u8; 2 * w * h]);
    }
    s
}

/// ffprobe's `r_frame_rate` and frame count of a video file.
fn rate_and_frames(path: &Path) -> (String, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args(["-show_entries", "stream=r_frame_rate,nb_read_frames"])
        .args(["-of", "default=nw=1"])
        .arg(path)
        .output()
        .expect("ffprobe is installed with ffmpeg");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {text:?}"))
            .to_string()
    };
    (
        field("r_frame_rate"),
        field("nb_read_frames").parse().unwrap(),
    )
}

/// A consumer writing video takes the source's frame rate from the ring (a
/// 30 fps video stays 30 fps, not 25, and keeps its duration; a y4m
/// stream's rate too), unless `--video-fps` is given.
#[test]
fn a_video_consumer_writes_the_sources_frame_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let src = video(tmp.path(), "in.mkv", 30, (32, 24), 30);
    for (tag, extra, want) in [
        ("src", &[][..], "30/1"),
        ("given", &["--video-fps", "10"][..], "10/1"),
    ] {
        let name = ring(&format!("rate-{tag}"));
        for out in ["out.mp4", "out.y4m"] {
            let out = tmp.path().join(format!("{tag}-{out}"));
            let c = consumer(&name, &out, extra);
            let p = producer(&name, "/dev/null", &["--input", src.to_str().unwrap()])
                .spawn()
                .unwrap();
            finish(p, c);
            assert_eq!(
                rate_and_frames(&out),
                (want.to_string(), 30),
                "{}",
                out.display()
            );
        }
    }
    // A y4m stream's rate (its F tag).
    let name = ring("rate-y4m");
    let out = tmp.path().join("y4m.mp4");
    let c = consumer(&name, &out, &[]);
    let mut p = producer(&name, "/dev/null", &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin
        .take()
        .unwrap()
        .write_all(&y4m_stream(32, 24, 5, "15:1"))
        .unwrap();
    finish(p, c);
    assert_eq!(rate_and_frames(&out), ("15/1".to_string(), 5));
}

/// An output with an extension that is no video container is a usage error
/// (exit 2) found before the ring is even looked for, not a directory of
/// image files named like a video.
#[test]
fn an_output_with_an_unknown_extension_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("foo.mp5");
    let c = consumer(&ring("mp5"), &out, &[]);
    let o = wait_with_timeout(c, LIMIT);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(".mp5 is not a video container"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "foo.mp5 was created");
}

/// A quiet run that goes well prints nothing: no log lines, no summary.
#[test]
fn quiet_runs_print_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let name = ring("quiet");
    let c = consumer(&name, Path::new("null"), &["-q"]);
    let assets = Path::new(REPO).join("assets");
    let p = producer(
        &name,
        "config.toml",
        &["-q", "--input", assets.to_str().unwrap()],
    )
    .spawn()
    .unwrap();
    let (po, co) = finish(p, c);
    assert_eq!(stderr(&po), "", "producer -q");
    assert_eq!(stderr(&co), "", "consumer -q");
    drop(tmp);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The producer's summary tells apart the time it waited for a first
/// consumer (its rate does not count it) and the frames a group had queued
/// when its last consumer left (released, not "dropped 0 frames (group
/// default 7)").
#[test]
fn the_producer_summary_tells_the_wait_and_the_released_frames_apart() {
    use nix::sys::signal::Signal;
    let tmp = tempfile::tempdir().unwrap();
    let name = ring("summary");
    let stats = tmp.path().join("p.json");
    let assets = Path::new(REPO).join("assets");
    let p = producer(&name, "/dev/null", &["--input", assets.to_str().unwrap()])
        .args(["--height", "36", "--width", "48", "--loop", "100000"])
        .arg("--stats-json")
        .arg(&stats)
        .spawn()
        .unwrap();
    // The producer waits for a first consumer at least this long (its ring
    // must exist first).
    let start = std::time::Instant::now();
    common::wait_for_ring(&name);
    let waited = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    // A slow consumer: the producer keeps its group's queue full.
    let c = consumer(&name, Path::new("null"), &["--hold-ms", "20"]);
    common::wait_published(&name, 20);
    let waited = waited.elapsed().as_secs_f64();
    common::signal(&c, Signal::SIGTERM);
    let co = wait_with_timeout(c, LIMIT);
    assert!(co.status.success(), "{}", stderr(&co));
    common::signal(&p, Signal::SIGTERM);
    let po = wait_with_timeout(p, LIMIT);
    let err = stderr(&po);
    let s = json(&stats);
    let released = s["released"]["default"].as_u64().unwrap_or(0);
    assert!(released > 0, "{s}\n{err}");
    assert_eq!(s["groups"]["default"], released, "{s}");
    assert!(!err.contains("dropped 0 frames"), "{err}");
    assert!(
        err.contains(&format!(
            "released {released} queued frames unread when their group's last consumer left (group default {released})"
        )),
        "{err}"
    );
    let w = s["waited_secs"].as_f64().unwrap();
    assert!(
        w >= 1.4 && w <= waited + 1.0,
        "waited {w} s, {waited} s measured: {s}"
    );
    assert!(err.contains("(after waiting "), "{err}");
    // The rate is over the time after the wait.
    let (frames, secs) = (
        s["frames"].as_f64().unwrap(),
        s["seconds"].as_f64().unwrap(),
    );
    assert!((s["fps"].as_f64().unwrap() - frames / secs).abs() < 1e-6 * frames / secs);
    assert!(secs < start.elapsed().as_secs_f64() - w + 0.5, "{s}");
}

/// `framering-consumer --help` lists only what a consumer uses; a flag only
/// the producer takes is refused with a message (exit 2), not ignored.
#[test]
fn a_consumer_lists_and_takes_only_its_own_flags() {
    let help = |bin: &str| {
        let o = Command::new(bin).arg("--help").output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (ph, ch) = (help(PRODUCER), help(CONSUMER));
    for flag in [
        "--slots",
        "--mode",
        "--max-consumers",
        "--max-groups",
        "--max-queued",
        "--user-meta-bytes",
    ] {
        assert!(ph.contains(flag), "producer --help lacks {flag}");
        assert!(!ch.contains(flag), "consumer --help lists {flag}:\n{ch}");
        let o = wait_with_timeout(
            consumer(&ring("flags"), Path::new("null"), &[flag, "3"]),
            LIMIT,
        );
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(flag) && stderr(&o).contains("only the producer takes it"),
            "{flag}: {}",
            stderr(&o)
        );
    }
    for flag in [
        "--output",
        "--group",
        "--height",
        "--dtype",
        "--video-fps",
        "--quiet",
    ] {
        assert!(ch.contains(flag), "consumer --help lacks {flag}");
    }
}

/// A build without the `bridge` feature answers `framering bridge …` with
/// how to get it (exit 2), not "unrecognized subcommand".
#[cfg(not(feature = "bridge"))]
#[test]
fn a_build_without_the_bridge_says_how_to_get_it() {
    let admin = env!("CARGO_BIN_EXE_framering");
    for args in [
        &["bridge"][..],
        &["bridge", "recv", "--key", "k", "--ring", "r"],
    ] {
        let o = Command::new(admin).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("cargo build --release --features bridge")
                && !err.contains("unrecognized"),
            "{args:?}: {err}"
        );
    }
}

/// The documented Python test command works in the documented venv
/// (docs/python.md): the venv it creates gets every package `python/tests`
/// imports that is not in the standard library (found by a real `python3`)
/// nor `framering`.
#[test]
fn the_documented_venv_has_what_the_python_tests_import() {
    let readme = std::fs::read_to_string(Path::new(REPO).join("docs/python.md")).unwrap();
    assert!(
        readme.contains("../.venv/bin/python -m pytest"),
        "the documented Python test command runs in .venv"
    );
    let mut installed: Vec<String> = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".venv/bin/pip install "))
        .flat_map(|rest| rest.split('#').next().unwrap_or("").split_whitespace())
        .map(str::to_string)
        .collect();
    // ./python brings its dependencies (pyproject.toml).
    assert!(installed.iter().any(|p| p == "./python"), "{installed:?}");
    let pyproject: toml::Table =
        std::fs::read_to_string(Path::new(REPO).join("python/pyproject.toml"))
            .unwrap()
            .parse()
            .unwrap();
    for dep in pyproject["project"]["dependencies"].as_array().unwrap() {
        let dep = dep.as_str().unwrap();
        let name = dep
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .next();
        installed.push(name.unwrap().to_string());
    }
    let stdlib = Command::new("python3")
        .args([
            "-c",
            "import sys; print(' '.join(sorted(sys.stdlib_module_names)))",
        ])
        .output()
        .expect("python3 is installed");
    let stdlib = String::from_utf8_lossy(&stdlib.stdout).into_owned();
    let stdlib: Vec<&str> = stdlib.split_whitespace().collect();
    let tests = Path::new(REPO).join("python/tests");
    let mut local: Vec<String> = vec!["framering".into()];
    let mut modules = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&tests).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "py") {
            local.push(path.file_stem().unwrap().to_string_lossy().into_owned());
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let line = line.trim();
                let names = if let Some(rest) = line.strip_prefix("import ") {
                    rest.split(',')
                        .map(|n| n.split_whitespace().next().unwrap_or(""))
                        .collect()
                } else if let Some(rest) = line.strip_prefix("from ") {
                    vec![rest.split_whitespace().next().unwrap_or("")]
                } else {
                    vec![]
                };
                for n in names {
                    modules.insert(n.split('.').next().unwrap().to_string());
                }
            }
        }
    }
    for m in modules {
        if m.is_empty() || stdlib.contains(&m.as_str()) || local.contains(&m) {
            continue;
        }
        // The pip name of a module whose name differs.
        let package = match m.as_str() {
            "PIL" => "pillow",
            "mcap_protobuf" => "mcap-protobuf-support",
            "mcap_ros2" => "mcap-ros2-support",
            "foxglove_schemas_protobuf" => "foxglove-schemas-protobuf",
            other => other,
        };
        assert!(
            installed.iter().any(|p| p.eq_ignore_ascii_case(package)),
            "python/tests import {m}, which the venv of docs/python.md lacks (pip install {package}); it installs {installed:?}"
        );
    }
}

/// `framering status NAME` with `args`: its output.
fn status(name: &str, args: &[&str]) -> String {
    let st = Command::new(env!("CARGO_BIN_EXE_framering"))
        .args(["status", name, "--interval", "0.05"])
        .args(args)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", stderr(&st));
    String::from_utf8_lossy(&st.stdout).into_owned()
}

/// A busy consumer (4 frames a second, each held 250 ms, so that a frame
/// is always queued and it never waits) refreshes its heartbeat within
/// about a second, not only every 64 frames (16 s at 4 fps).
#[test]
fn a_busy_consumer_keeps_its_heartbeat_fresh() {
    use nix::sys::signal::Signal;
    let name = ring("heartbeat");
    let assets = Path::new(REPO).join("assets");
    let p = producer(&name, "/dev/null", &["--input", assets.to_str().unwrap()])
        .args([
            "--height", "16", "--width", "16", "--loop", "1000", "--slots", "8",
        ])
        .args(["--stop-timeout", "0"])
        .spawn()
        .unwrap();
    let c = consumer(&name, Path::new("null"), &["--hold-ms", "250"]);
    // At least 20 frames taken (8 slots): the consumer attached at least
    // ~5 s ago and has been busy since.
    common::wait_published(&name, 28);
    let s: serde_json::Value = serde_json::from_str(&status(&name, &["--json"])).unwrap();
    let age = s["consumers"][0]["heartbeat_age_s"].as_f64().unwrap();
    assert!(age < 2.0, "heartbeat {age} s old: {s}");
    common::signal(&c, Signal::SIGTERM);
    wait_with_timeout(c, LIMIT);
    common::signal(&p, Signal::SIGTERM);
    wait_with_timeout(p, LIMIT);
}

/// A y4m stream cut short inside a frame is reported as cut short (exit 1),
/// not as frames "not of the ring's shape" (its header gave their size).
#[test]
fn a_truncated_y4m_stream_is_reported_as_cut_short() {
    let name = ring("cut");
    let tmp = tempfile::tempdir().unwrap();
    let c = consumer(&name, &tmp.path().join("out"), &["--format", "ppm"]);
    let mut p = producer(&name, "/dev/null", &["--input", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut y4m = y4m_stream(32, 24, 2, "25:1");
    y4m.truncate(y4m.len() - 1000);
    p.stdin.take().unwrap().write_all(&y4m).unwrap();
    let po = wait_with_timeout(p, LIMIT);
    let err = stderr(&po);
    assert_eq!(po.status.code(), Some(1), "{err}");
    assert!(err.contains("the y4m stream was cut short"), "{err}");
    assert!(!err.contains("not of the ring's shape"), "{err}");
    wait_with_timeout(c, LIMIT);
}

/// `status`'s top line counts each slot once (in its least advanced group's
/// state) and its group lines count each group's slots: with several groups
/// the top line says so, so that "0 returned" above and "1 returned" in a
/// group line do not read as a contradiction.
#[test]
fn status_says_how_its_slot_counts_differ_from_its_group_counts() {
    use nix::sys::signal::Signal;
    let name = ring("status");
    let assets = Path::new(REPO).join("assets");
    // Two declared groups: frames are published with no consumer.
    let p = producer(&name, "/dev/null", &["--input", assets.to_str().unwrap()])
        .args([
            "--height",
            "16",
            "--width",
            "16",
            "--groups",
            "a,b",
            "--stop-timeout",
            "0",
        ])
        .spawn()
        .unwrap();
    common::wait_published(&name, 1);
    let text = status(&name, &[]);
    let top = text.lines().find(|l| l.starts_with("slots: ")).unwrap();
    assert!(
        top.contains("(each slot once, in its least advanced group's state)"),
        "{text}"
    );
    for g in ["a", "b"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("group {g} ")))
            .unwrap();
        assert!(line.contains("its slots: "), "{text}");
    }
    common::signal(&p, Signal::SIGTERM);
    wait_with_timeout(p, LIMIT);
}
