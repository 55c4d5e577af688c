//! Recording into MCAP and replaying (issue 25): real binaries, real
//! rings, real files. A test's own producer (the ring library) publishes
//! known frames with metadata; `framering-consumer --output rec.mcap`
//! records them; `framering-producer --input rec.mcap` replays them into a
//! second ring that the test reads back. Files are also read with the
//! `mcap` crate's own reader (not framering's), and Python's readers check
//! them in python/tests/test_mcap.py.

mod common;
use common::{signal, stderr, wait_with_timeout};
use framering::ring::{Backpressure, Consumer, Dtype, FrameMeta, FrameShape, Producer, Take};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
/// Generous: a cold, loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);
/// Capture time of frame 0 (frames are 100 ms apart).
const BASE_NS: u64 = 1_700_000_000_000_000_000;
const PERIOD_NS: u64 = 100_000_000;
/// The source frame rate the test rings announce (as a video input does).
const RATE: (u32, u32) = (30000, 1001);

fn ring(tag: &str) -> String {
    format!("framering-mcap-{tag}-{}", std::process::id())
}

/// Frame `i`'s bytes: distinct per frame and per element; its first four
/// bytes are `i` (u32 LE), so a frame found in a file tells its index.
fn frame_bytes(shape: FrameShape, i: u64) -> Vec<u8> {
    let n = shape.elements();
    let mut v: Vec<u8> = match shape.dtype {
        Dtype::U8 => (0..n).map(|j| (j as u64 * 7 + i * 13) as u8).collect(),
        Dtype::U16 => (0..n)
            .flat_map(|j| ((j as u64 * 2999 + i * 7) as u16).to_le_bytes())
            .collect(),
        Dtype::F32 => (0..n)
            .flat_map(|j| (j as f32 * 0.5 - i as f32 * 1.25).to_le_bytes())
            .collect(),
    };
    v[..4].copy_from_slice(&(i as u32).to_le_bytes());
    v
}

/// What frame `i` is published with.
fn user_meta(i: u64) -> Vec<u8> {
    format!("{{\"i\":{i}}}").into_bytes()
}
fn pts(i: u64) -> Option<i64> {
    (i % 5 != 3).then_some(i as i64 * 40_000_000 - 80_000_000)
}

/// Publishes `n` frames of `shape` into a new ring `name` with `groups`
/// declared (lossless), then ends the stream and waits for them to be
/// consumed. Returns the count published so far (for a supervisor) and the
/// thread (which returns how many frames were redelivered).
fn publish(
    name: &str,
    shape: FrameShape,
    n: u64,
    groups: &[&str],
) -> (Arc<AtomicU64>, std::thread::JoinHandle<u64>) {
    let mut b = Producer::builder(name)
        .shape(shape)
        .slots(8)
        .max_consumers(8)
        .max_groups(4)
        .frame_rate(RATE.0, RATE.1);
    for g in groups {
        b = b.group(g, Backpressure::Block);
    }
    let p = b.create().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let published = count.clone();
    let t = std::thread::spawn(move || {
        for i in 0..n {
            let mut slot = loop {
                match p.loan(Duration::from_millis(100)) {
                    Ok(s) => break s,
                    Err(e) if e.is_timeout() => continue,
                    Err(e) => panic!("{e}"),
                }
            };
            slot.pixels_mut().copy_from_slice(&frame_bytes(shape, i));
            let meta = user_meta(i);
            let mut m = FrameMeta::new()
                .source(b"cam0")
                .src_size(shape.width * 2, shape.height * 2)
                .capture_ns(BASE_NS + i * PERIOD_NS)
                .user_meta(&meta);
            if let Some(pts) = pts(i) {
                m = m.pts_ns(pts);
            }
            slot.publish(&m).unwrap();
            published.store(i + 1, Ordering::SeqCst);
        }
        p.finish();
        p.drain(LIMIT).expect("the frames were consumed");
        let redelivered = p.redelivered();
        let _ = p.unlink();
        redelivered
    });
    (count, t)
}

fn consumer(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(CONSUMER);
    c.args(["--config", "/dev/null", "--ring", name, "-q"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn producer(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(PRODUCER);
    c.args(["--config", "/dev/null", "--ring", name])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_ok(c: &mut Command) -> String {
    let out = wait_with_timeout(c.spawn().unwrap(), LIMIT);
    let err = stderr(&out);
    assert!(out.status.success(), "{:?} failed: {err}", c.get_args());
    err
}

/// Records `n` frames of `shape` into `file` (consumer flags `args`).
fn record(tag: &str, shape: FrameShape, n: u64, file: &Path, args: &[&str]) {
    let name = ring(tag);
    let (_, t) = publish(&name, shape, n, &["rec"]);
    let mut c = consumer(
        &name,
        &["--group", "rec", "--output", file.to_str().unwrap()],
    );
    c.args(args);
    run_ok(&mut c);
    t.join().unwrap();
}

/// A frame read back from a ring.
#[derive(Debug)]
struct Back {
    pixels: Vec<u8>,
    source: Vec<u8>,
    capture_ns: u64,
    pts_ns: Option<i64>,
    user_meta: Vec<u8>,
    /// The ring's source frame rate, as its consumer sees it.
    frame_rate: Option<(u32, u32)>,
}

/// Takes every frame of ring `name` in group `group` until its end.
fn read_ring(name: &str, group: &str) -> (FrameShape, Vec<Back>) {
    let c = Consumer::builder(name)
        .group(group)
        .wait_for_ring(LIMIT)
        .any_dtype()
        .attach()
        .unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + LIMIT;
    loop {
        assert!(Instant::now() < until, "the replay did not end");
        match c.take(Duration::from_millis(100)) {
            Ok(Take::Frame(f)) => out.push(Back {
                pixels: f.pixels().to_vec(),
                source: f.info().source().to_vec(),
                capture_ns: f.info().capture_ns,
                pts_ns: f.info().pts_ns,
                user_meta: f.user_meta().to_vec(),
                frame_rate: c.frame_rate(),
            }),
            Ok(Take::EndOfStream) => break,
            Err(e) if e.is_timeout() => {}
            other => panic!("{other:?}"),
        }
    }
    (c.shape(), out)
}

/// Replays `file` (producer flags `args`) into a new ring whose group
/// `check` the test reads; returns the ring's shape, the frames and the
/// producer's stderr.
fn replay(tag: &str, file: &Path, args: &[&str]) -> (FrameShape, Vec<Back>, String) {
    let name = ring(tag);
    let mut p = producer(
        &name,
        &["--input", file.to_str().unwrap(), "--groups", "check"],
    );
    p.args(args);
    let child = p.spawn().unwrap();
    let (shape, frames) = read_ring(&name, "check");
    let out = wait_with_timeout(child, LIMIT);
    let err = stderr(&out);
    assert!(out.status.success(), "replay failed: {err}");
    (shape, frames, err)
}

/// Frame `i` as it was published, checked against what came back.
fn assert_frame(shape: FrameShape, i: u64, b: &Back) {
    assert_eq!(b.pixels, frame_bytes(shape, i), "frame {i}'s pixels");
    assert_eq!(b.source, b"cam0", "frame {i}'s source");
    assert_eq!(
        b.capture_ns,
        BASE_NS + i * PERIOD_NS,
        "frame {i}'s capture time"
    );
    assert_eq!(b.pts_ns, pts(i), "frame {i}'s pts");
    assert_eq!(b.user_meta, user_meta(i), "frame {i}'s user metadata");
    assert_eq!(
        b.frame_rate,
        Some(RATE),
        "the replay's ring has the recorded source's frame rate"
    );
}

#[test]
fn a_recording_replays_pixel_exact_with_its_metadata_for_every_dtype() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("u8", FrameShape::new(24, 32, 3), "none"),
        (
            "u16",
            FrameShape::new(20, 18, 1).with_dtype(Dtype::U16),
            "lz4",
        ),
        (
            "f32",
            FrameShape::new(10, 12, 3).with_dtype(Dtype::F32),
            "zstd",
        ),
    ];
    for (tag, shape, compression) in cases {
        let file = d.path().join(format!("{tag}.mcap"));
        record(tag, shape, 30, &file, &["--mcap-compression", compression]);
        // The ring follows the recording: its shape and element type.
        let (got, frames, _) = replay(&format!("{tag}-replay"), &file, &[]);
        assert_eq!(got, shape, "{tag}");
        assert_eq!(frames.len(), 30, "{tag}");
        for (i, b) in frames.iter().enumerate() {
            assert_frame(shape, i as u64, b);
        }
        // ...and to PNGs, for the element types PNG holds.
        if shape.dtype != Dtype::F32 {
            let name = ring(&format!("{tag}-png"));
            let pngs = d.path().join(format!("{tag}-png"));
            let p = producer(
                &name,
                &["--input", file.to_str().unwrap(), "--groups", "png", "-q"],
            )
            .spawn()
            .unwrap();
            run_ok(&mut consumer(
                &name,
                &[
                    "--group",
                    "png",
                    "--output",
                    pngs.to_str().unwrap(),
                    "--format",
                    "png",
                ],
            ));
            assert!(wait_with_timeout(p, LIMIT).status.success());
            for i in 0..30u64 {
                let img = image::open(pngs.join(format!("{i:010}.png"))).unwrap();
                let bytes: Vec<u8> = match shape.dtype {
                    Dtype::U16 => bytemuck::cast_slice(img.to_luma16().as_raw()).to_vec(),
                    _ => img.to_rgb8().into_raw(),
                };
                assert_eq!(bytes, frame_bytes(shape, i), "{tag} png {i}");
            }
        }
    }
}

/// The messages of `file` by topic, read with the `mcap` crate's own
/// streaming reader up to the first error (a file cut short): (sequence,
/// log time, publish time, data).
type Messages = BTreeMap<String, Vec<(u32, u64, u64, Vec<u8>)>>;

fn read_mcap(file: &Path) -> (Messages, bool) {
    let bytes = std::fs::read(file).unwrap();
    let mut out = Messages::new();
    let mut complete = true;
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        match m {
            Ok(m) => out.entry(m.channel.topic.clone()).or_default().push((
                m.sequence,
                m.log_time,
                m.publish_time,
                m.data.into_owned(),
            )),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    (out, complete)
}

#[test]
fn another_reader_finds_every_frame_with_its_times() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(8, 8, 4);
    let file = d.path().join("rec.mcap");
    let before = framering::app::clock::realtime_ns();
    record("times", shape, 20, &file, &[]);
    let after = framering::app::clock::realtime_ns();
    let (msgs, complete) = read_mcap(&file);
    assert!(complete);
    let topic = format!("/{}/image", ring("times"));
    let images = &msgs[&topic];
    assert_eq!(images.len(), 20);
    for (i, (seq, log, publish, data)) in images.iter().enumerate() {
        assert_eq!(*seq as usize, i);
        // Log time = capture time; publish time = the ring's publish time
        // (CLOCK_REALTIME).
        assert_eq!(*log, BASE_NS + i as u64 * PERIOD_NS);
        assert!(
            (before - 1_000_000_000..after).contains(publish),
            "{publish}"
        );
        // The pixels end the message (the data field is written last).
        assert!(data.ends_with(&frame_bytes(shape, i as u64)));
        assert!(data.windows(5).any(|w| w == b"rgba8"));
    }
    assert_eq!(msgs[&format!("/{}/frame_meta", ring("times"))].len(), 20);
    // The summary and index are there: chunks of at most 4 frames.
    let summary = mcap::Summary::read(&std::fs::read(&file).unwrap())
        .unwrap()
        .unwrap();
    assert!(
        summary.chunk_indexes.len() >= 5,
        "{}",
        summary.chunk_indexes.len()
    );
}

#[test]
fn an_existing_recording_is_refused_unless_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("rec.mcap");
    std::fs::write(&file, b"precious").unwrap();
    let name = ring("exists");
    let out = wait_with_timeout(
        consumer(
            &name,
            &["--output", file.to_str().unwrap(), "--wait-timeout", "60"],
        )
        .spawn()
        .unwrap(),
        LIMIT,
    );
    // Refused before waiting for any ring.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    record(
        "overwrite",
        FrameShape::new(4, 4, 1),
        3,
        &file,
        &["--overwrite"],
    );
    assert_eq!(read_mcap(&file).0.values().map(Vec::len).sum::<usize>(), 6);
}

#[test]
fn start_and_end_seek_without_reading_the_skipped_chunks() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(16, 16, 3);
    let file = d.path().join("rec.mcap");
    record("seek", shape, 40, &file, &[]);
    let (_, frames, _) = replay("seek-all", &file, &[]);
    assert_eq!(frames.len(), 40);
    // Frames are 100 ms apart: [2.0 s, 3.0 s) holds frames 20..30.
    let (_, frames, _) = replay("seek-range", &file, &["--start", "2.0", "--end", "3.0"]);
    let idx: Vec<u32> = frames
        .iter()
        .map(|b| u32::from_le_bytes(b.pixels[..4].try_into().unwrap()))
        .collect();
    assert_eq!(idx, (20..30).collect::<Vec<u32>>());
    for b in &frames {
        let i = u32::from_le_bytes(b.pixels[..4].try_into().unwrap());
        assert_frame(shape, i.into(), b);
    }
    // Wreck every chunk that ends before 2.0 s: a replay that read one
    // would fail; the seek does not.
    let mut bytes = std::fs::read(&file).unwrap();
    let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
    let cut = BASE_NS + 20 * PERIOD_NS;
    let mut wrecked = 0;
    for c in summary
        .chunk_indexes
        .iter()
        .filter(|c| c.message_end_time < cut)
    {
        let at = c.compressed_data_offset().unwrap() as usize;
        bytes[at..at + 9].fill(0xff);
        wrecked += 1;
    }
    assert!(wrecked >= 4, "{wrecked}");
    std::fs::write(&file, &bytes).unwrap();
    let (_, frames, _) = replay("seek-wrecked", &file, &["--start", "2.0", "--end", "3.0"]);
    assert_eq!(frames.len(), 10);
    let out = wait_with_timeout(
        producer(&ring("seek-fails"), &["--input", file.to_str().unwrap()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_file_cut_short_replays_up_to_its_last_complete_chunk() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(16, 16, 3);
    let file = d.path().join("rec.mcap");
    record("cut", shape, 40, &file, &[]);
    let bytes = std::fs::read(&file).unwrap();
    let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
    let mut chunks = summary.chunk_indexes.clone();
    chunks.sort_by_key(|c| c.chunk_start_offset);
    // Cut in the middle of the fourth chunk.
    let c = &chunks[3];
    let cut = (c.chunk_start_offset + c.chunk_length / 2) as usize;
    std::fs::write(&file, &bytes[..cut]).unwrap();
    let (_, frames, err) = replay("cut-replay", &file, &[]);
    // The frames of the complete chunks (and any whole frame of the cut
    // one, read up to the cut), as the `mcap` crate's reader finds them.
    let expected: u64 = {
        let (msgs, complete) = read_mcap(&file);
        assert!(!complete);
        msgs.get(&format!("/{}/image", ring("cut")))
            .map_or(0, |v| v.len() as u64)
    };
    assert!(expected >= 3, "{expected}");
    assert_eq!(frames.len() as u64, expected);
    for (i, b) in frames.iter().enumerate() {
        assert_frame(shape, i as u64, b);
    }
    assert!(err.contains("cut short"), "{err}");
}

#[test]
fn a_failing_disk_hands_the_frames_back_for_the_next_recorder() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(16, 16, 3);
    let full = d.path().join("full.mcap");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let name = ring("full");
    let (_, t) = publish(&name, shape, 30, &["rec"]);
    let out = wait_with_timeout(
        consumer(
            &name,
            &[
                "--group",
                "rec",
                "--output",
                full.to_str().unwrap(),
                "--overwrite",
            ],
        )
        .spawn()
        .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    let good = d.path().join("good.mcap");
    run_ok(&mut consumer(
        &name,
        &["--group", "rec", "--output", good.to_str().unwrap()],
    ));
    t.join().unwrap();
    let (msgs, complete) = read_mcap(&good);
    assert!(complete);
    let images = &msgs[&format!("/{name}/image")];
    // Every frame once; the one the failed recorder handed back comes when
    // the ring redelivers it (after the frames it had not taken).
    let mut seqs: Vec<u32> = images.iter().map(|m| m.0).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..30).collect::<Vec<u32>>(), "every frame, once");
}

/// A recorder SIGKILLed 5 times during a 1,000-frame run and restarted by
/// its supervisor (each run into its own file): every frame is in at least
/// one file, and a frame in two is one the ring redelivered.
#[test]
fn a_recorder_killed_and_restarted_loses_no_frame() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(16, 16, 3);
    let name = ring("kill");
    const N: u64 = 1000;
    let (published, t) = publish(&name, shape, N, &["rec"]);
    let start = |k: u32| -> Child {
        let f = d.path().join(format!("rec-run{k}.mcap"));
        consumer(
            &name,
            &[
                "--group",
                "rec",
                "--output",
                f.to_str().unwrap(),
                "--hold-ms",
                "2",
            ],
        )
        .spawn()
        .unwrap()
    };
    for k in 0..5u32 {
        let mut c = start(k);
        let target = (k as u64 + 1) * 150;
        let until = Instant::now() + LIMIT;
        while published.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < until, "no progress to {target}");
            if let Ok(Some(s)) = c.try_wait() {
                panic!("the recorder exited early: {s}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        signal(&c, nix::sys::signal::Signal::SIGKILL);
        c.wait().unwrap();
    }
    let last = wait_with_timeout(start(5), LIMIT);
    assert!(last.status.success(), "{}", stderr(&last));
    let redelivered = t.join().unwrap();
    let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
    let mut cut_short = 0;
    for k in 0..6 {
        let (msgs, complete) = read_mcap(&d.path().join(format!("rec-run{k}.mcap")));
        cut_short += u32::from(!complete);
        for (seq, _, _, data) in msgs.get(&format!("/{name}/image")).into_iter().flatten() {
            assert!(
                data.ends_with(&frame_bytes(shape, *seq as u64)),
                "frame {seq}"
            );
            *seen.entry(*seq).or_default() += 1;
        }
    }
    assert_eq!(cut_short, 5, "the killed runs' files have no summary");
    let missing: Vec<u32> = (0..N as u32).filter(|s| !seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "frames in no file: {missing:?}");
    let duplicates: u64 = seen.values().map(|&n| u64::from(n - 1)).sum();
    assert!(
        duplicates <= redelivered,
        "{duplicates} frames recorded twice, {redelivered} redelivered"
    );
    assert!(redelivered > 0, "a killed recorder held frames");
}

#[test]
fn ros2_and_compressed_recordings_replay() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(12, 16, 3);
    for (tag, args) in [
        ("ros", &["--mcap-schema", "ros2"][..]),
        ("png", &["--format", "png"][..]),
        ("rospng", &["--mcap-schema", "ros2", "--format", "png"][..]),
    ] {
        let file = d.path().join(format!("{tag}.mcap"));
        record(tag, shape, 10, &file, args);
        let (got, frames, _) = replay(&format!("{tag}-replay"), &file, &[]);
        assert_eq!(got, shape, "{tag}");
        assert_eq!(frames.len(), 10, "{tag}");
        for (i, b) in frames.iter().enumerate() {
            assert_frame(shape, i as u64, b);
        }
    }
    // JPEG is lossy: the shape and the count come back.
    let file = d.path().join("jpeg.mcap");
    record("jpeg", shape, 5, &file, &["--format", "jpeg"]);
    let (got, frames, _) = replay("jpeg-replay", &file, &[]);
    assert_eq!((got, frames.len()), (shape, 5));
    // Float frames cannot be JPEG: refused before any frame is taken.
    let f = d.path().join("float.mcap");
    let name = ring("jpeg-float");
    let (_, t) = publish(&name, shape.with_dtype(Dtype::F32), 2, &["rec"]);
    let out = wait_with_timeout(
        consumer(
            &name,
            &[
                "--group",
                "rec",
                "--output",
                f.to_str().unwrap(),
                "--format",
                "jpeg",
            ],
        )
        .spawn()
        .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    run_ok(&mut consumer(
        &name,
        &["--group", "rec", "--output", "null"],
    ));
    t.join().unwrap();
}

#[test]
fn split_recordings_rotate_into_numbered_files() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(64, 64, 3);
    let file = d.path().join("rec.mcap");
    // 300 frames of 12 KiB: 3.5 MiB, in files of about 1 MiB.
    record("split", shape, 300, &file, &["--split-mb", "1"]);
    assert!(!file.exists(), "the name given is the files' stem");
    let mut seqs = Vec::new();
    let mut k = 1;
    loop {
        let f = d.path().join(format!("rec-{k:04}.mcap"));
        if !f.exists() {
            break;
        }
        let (msgs, complete) = read_mcap(&f);
        assert!(complete, "{}", f.display());
        seqs.extend(
            msgs[&format!("/{}/image", ring("split"))]
                .iter()
                .map(|m| m.0),
        );
        k += 1;
    }
    assert!(k > 3, "{} files", k - 1);
    assert_eq!(seqs, (0..300).collect::<Vec<u32>>());
    // A recording into those names again is refused.
    let out = wait_with_timeout(
        consumer(
            &ring("split2"),
            &["--output", file.to_str().unwrap(), "--split-mb", "1"],
        )
        .spawn()
        .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn realtime_replay_paces_by_the_recorded_times() {
    let d = tempfile::tempdir().unwrap();
    let shape = FrameShape::new(4, 4, 3);
    let file = d.path().join("rec.mcap");
    // 11 frames 100 ms apart: 1 s of recording.
    record("rt", shape, 11, &file, &[]);
    let t = Instant::now();
    let (_, frames, _) = replay("rt-replay", &file, &["--realtime"]);
    assert_eq!(frames.len(), 11);
    // Not a timing claim: the replay cannot be faster than the recording.
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    let (_, frames, _) = replay("loop", &file, &["--loop", "2"]);
    assert_eq!(frames.len(), 22);
}

#[test]
fn an_unknown_topic_or_encoding_is_refused_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("rec.mcap");
    record("topic", FrameShape::new(4, 4, 3), 2, &file, &[]);
    let out = wait_with_timeout(
        producer(
            &ring("topic-replay"),
            &["--input", file.to_str().unwrap(), "--mcap-topic", "/nope"],
        )
        .spawn()
        .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("/{}/image", ring("topic"))),
        "{}",
        stderr(&out)
    );
    // A foxglove.RawImage in an encoding a ring cannot hold.
    let odd = d.path().join("yuyv.mcap");
    write_yuyv(&odd);
    let out = wait_with_timeout(
        producer(&ring("yuyv"), &["--input", odd.to_str().unwrap()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"yuyv\""), "{}", stderr(&out));
}

/// A file with one `foxglove.RawImage` in `yuyv`, written with the `mcap`
/// crate and a hand-encoded message (width 2, height 1).
fn write_yuyv(path: &PathBuf) {
    let mut w = mcap::Writer::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ))
    .unwrap();
    let schema = w.add_schema("foxglove.RawImage", "protobuf", b"").unwrap();
    let ch = w
        .add_channel(schema, "/cam/image", "protobuf", &Default::default())
        .unwrap();
    // width=2 (fixed32), height=1, encoding "yuyv", step=4, data 4 bytes.
    let mut msg = vec![0x15, 2, 0, 0, 0, 0x1d, 1, 0, 0, 0, 0x22, 4];
    msg.extend_from_slice(b"yuyv");
    msg.extend_from_slice(&[0x2d, 4, 0, 0, 0, 0x32, 4, 1, 2, 3, 4]);
    w.write_to_known_channel(
        &mcap::records::MessageHeader {
            channel_id: ch,
            sequence: 0,
            log_time: 1,
            publish_time: 1,
        },
        &msg,
    )
    .unwrap();
    w.finish().unwrap();
}

/// An output or input with an extension neither binary knows names the
/// kinds it takes, MCAP recordings among them.
#[test]
fn an_unknown_extension_names_mcap_among_the_known_ones() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("rec.xyz");
    let out = wait_with_timeout(
        consumer(&ring("xyz-out"), &["--output", file.to_str().unwrap()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(".mcap"), "{}", stderr(&out));
    std::fs::write(&file, b"not an image").unwrap();
    let out = wait_with_timeout(
        producer(&ring("xyz-in"), &["--input", file.to_str().unwrap()])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(".mcap"), "{}", stderr(&out));
}
