//! Dtypes through the real binaries: 16-bit PNGs into a uint16 ring and out
//! as raw samples and 16-bit PNGs, float32 rings from 8-bit images, outputs
//! that cannot hold a float refused before any frame is taken, uint16 video
//! from ffmpeg with presentation timestamps, the dtype in `status`/`list`,
//! a bad `ring.dtype` named in the error.

mod common;
use common::{ffmpeg, stderr, wait_with_timeout};
use framering::ring::{Consumer, Dtype, Take};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");
const ADMIN: &str = env!("CARGO_BIN_EXE_framering");

fn ring(tag: &str) -> String {
    format!("framering-dt-{tag}-{}", std::process::id())
}

/// A binary with `--config /dev/null --quiet`, the ring name and `extra`;
/// stdout discarded, stderr kept.
fn command(bin: &str, ring: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["--config", "/dev/null", "--quiet", "--ring", ring])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

const LIMIT: Duration = Duration::from_secs(60);

/// Reads a child's piped stdout to its end on a thread (a consumer writing
/// raw frames keeps them until its pipe's reader has read them).
fn read_stdout(child: &mut Child) -> std::thread::JoinHandle<Vec<u8>> {
    let mut out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    })
}

/// Waits for a consumer whose stdout [`read_stdout`] reads.
fn wait_raw(child: Child, reader: std::thread::JoinHandle<Vec<u8>>) -> Output {
    let mut o = wait_with_timeout(child, LIMIT);
    o.stdout = reader.join().unwrap();
    o
}

/// A 16-bit RGB PNG (6 rows × 8 columns) whose samples go far above 255.
fn png16(dir: &Path) -> Vec<u16> {
    std::fs::create_dir_all(dir).unwrap();
    let img = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(8, 6, |x, y| {
        image::Rgb([
            (x * 8000 + y) as u16,
            (y * 10000 + 300) as u16,
            65535 - (x * 97 + y * 1013) as u16,
        ])
    });
    img.save(dir.join("deep.png")).unwrap();
    img.into_raw()
}

fn u16s(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn a_16_bit_png_through_a_uint16_ring_keeps_every_sample_raw_and_as_png() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = png16(&tmp.path().join("in"));
    assert!(samples.iter().any(|&v| v > 255));
    let name = ring("png16");
    let out = tmp.path().join("png");
    // Two declared groups: each gets the frame. The consumers give a shape
    // but no dtype: they adopt the ring's uint16.
    let shape = ["--height", "6", "--width", "8", "--channels", "3"];
    let mut raw = command(CONSUMER, &name, &shape)
        .args(["--group", "raw", "--output", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_stdout(&mut raw);
    let png = command(CONSUMER, &name, &shape)
        .args(["--group", "png", "--output", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let p = command(PRODUCER, &name, &shape)
        .args(["--dtype", "uint16", "--groups", "raw,png", "--input"])
        .arg(tmp.path().join("in"))
        .spawn()
        .unwrap();
    let po = wait_with_timeout(p, LIMIT);
    assert!(po.status.success(), "{}", stderr(&po));
    let ro = wait_raw(raw, reader);
    assert!(ro.status.success(), "{}", stderr(&ro));
    assert_eq!(u16s(&ro.stdout), samples);
    let go = wait_with_timeout(png, LIMIT);
    assert!(go.status.success(), "{}", stderr(&go));
    let back = image::open(out.join("0000000000.png")).unwrap();
    assert_eq!(back.color(), image::ColorType::Rgb16);
    assert_eq!(back.into_rgb16().into_raw(), samples);
}

#[test]
fn a_float32_ring_holds_an_8_bit_image_as_v_over_255() {
    let tmp = tempfile::tempdir().unwrap();
    let pixels = common::small_inputs(&tmp.path().join("in"), 1).remove(0);
    let name = ring("f32");
    let side = common::SIDE.to_string();
    let shape = ["--height", &side, "--width", &side, "--channels", "3"];
    let mut c = command(CONSUMER, &name, &["--output", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_stdout(&mut c);
    let p = command(PRODUCER, &name, &shape)
        .args(["--dtype", "float32", "--input"])
        .arg(tmp.path().join("in"))
        .spawn()
        .unwrap();
    let po = wait_with_timeout(p, LIMIT);
    assert!(po.status.success(), "{}", stderr(&po));
    let co = wait_raw(c, reader);
    assert!(co.status.success(), "{}", stderr(&co));
    let floats: Vec<f32> = co
        .stdout
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats.len(), pixels.len());
    for (f, v) in floats.iter().zip(&pixels) {
        assert!((f - *v as f32 / 255.0).abs() < 1e-6, "{f} for {v}");
    }
}

#[test]
fn a_float32_ring_into_image_files_is_refused_before_any_frame_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    common::small_inputs(&tmp.path().join("in"), 2);
    let name = ring("f32png");
    let side = common::SIDE.to_string();
    // The group is declared: its frames wait for whichever consumer comes
    // (an ad hoc group could end with the refused consumer, before the raw
    // one attaches, and its frames with it).
    let p = command(PRODUCER, &name, &["--height", &side, "--width", &side])
        .args(["--dtype", "float32", "--groups", "default", "--input"])
        .arg(tmp.path().join("in"))
        .spawn()
        .unwrap();
    let out = tmp.path().join("out");
    let c = command(CONSUMER, &name, &["--output", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let co = wait_with_timeout(c, LIMIT);
    let err = stderr(&co);
    assert_eq!(co.status.code(), Some(2), "{err}");
    assert!(
        err.contains("float32 frames cannot be written as image files")
            && err.contains("--output -"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // Nothing was lost: a raw consumer takes both frames.
    let mut c = command(CONSUMER, &name, &["--output", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = read_stdout(&mut c);
    let co = wait_raw(c, reader);
    assert!(co.status.success(), "{}", stderr(&co));
    assert_eq!(
        co.stdout.len(),
        2 * (common::SIDE * common::SIDE * 3 * 4) as usize
    );
    let po = wait_with_timeout(p, LIMIT);
    assert!(po.status.success(), "{}", stderr(&po));
}

#[test]
fn uint16_video_from_ffmpeg_carries_its_samples_and_presentation_times() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h, n) = (32u32, 24u32, 5usize);
    let video = tmp.path().join("src.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={w}x{h}:rate=25"),
        "-frames:v",
        &n.to_string(),
        "-c:v",
        "ffv1",
        video.to_str().unwrap(),
    ]);
    let reference = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&video)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb48le", "-"])
        .output()
        .unwrap();
    assert!(reference.status.success());
    let frame = (w * h * 3 * 2) as usize;
    assert_eq!(reference.stdout.len(), n * frame);

    let name = ring("video16");
    let (hs, ws) = (h.to_string(), w.to_string());
    let p = command(PRODUCER, &name, &["--height", &hs, "--width", &ws])
        .args(["--dtype", "uint16", "--input", video.to_str().unwrap()])
        .spawn()
        .unwrap();
    // A library consumer: it sees the dtype and the timestamps.
    let consumer = Consumer::builder(&name)
        .wait_for_ring(Duration::from_secs(30))
        .attach()
        .unwrap();
    assert_eq!(consumer.shape().dtype, Dtype::U16);
    let mut k = 0;
    loop {
        match consumer.take(Duration::from_secs(30)).unwrap() {
            Take::Frame(f) => {
                let info = *f.info();
                assert_eq!(
                    f.pixels(),
                    &reference.stdout[k * frame..(k + 1) * frame],
                    "frame {k}"
                );
                assert_eq!(info.pts_ns, Some(k as i64 * 40_000_000), "frame {k}");
                let now = framering::app::clock::realtime_ns();
                assert!(info.capture_ns <= now && now - info.capture_ns < 60_000_000_000);
                k += 1;
            }
            Take::EndOfStream => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(k, n);
    drop(consumer);
    let po = wait_with_timeout(p, LIMIT);
    assert!(po.status.success(), "{}", stderr(&po));

    // Video into a float32 ring is refused, saying what to do.
    let po = command(
        PRODUCER,
        &ring("video32"),
        &["--height", &hs, "--width", &ws],
    )
    .args(["--dtype", "float32", "--input", video.to_str().unwrap()])
    .output()
    .unwrap();
    let err = stderr(&po);
    assert_eq!(po.status.code(), Some(2), "{err}");
    assert!(err.contains("uint8 or uint16"), "{err}");
}

#[test]
fn status_and_list_show_the_dtype_and_list_survives_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    common::small_inputs(&tmp.path().join("in"), 1);
    let name = ring("status");
    // A lossless producer with no consumer waits: the ring stays up.
    let mut p = command(PRODUCER, &name, &["--dtype", "uint16"])
        .args(["--user-meta-bytes", "1000", "--input"])
        .arg(tmp.path().join("in"))
        .spawn()
        .unwrap();
    common::wait_for_ring(&name);
    let st = Command::new(ADMIN)
        .args(["status", &name, "--interval", "0.05"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "{}", stderr(&st));
    assert!(
        text.contains("slots of 16x16x3 uint16, 1000 bytes of user metadata each"),
        "{text}"
    );
    let js = Command::new(ADMIN)
        .args(["status", &name, "--json", "--interval", "0.05"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(
        (j["dtype"].as_str(), j["user_meta_bytes"].as_u64()),
        (Some("uint16"), Some(1000))
    );
    let list = Command::new(ADMIN).arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    let line = text.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(line.contains(" uint16 "), "{line}");
    assert!(text.lines().next().unwrap().contains("DTYPE"), "{text}");
    // A reader that is gone before the first line (`| head -0`): no panic,
    // exit 0.
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let gone = Command::new(ADMIN)
        .arg("list")
        .stdout(Stdio::from(w))
        .output()
        .unwrap();
    let err = stderr(&gone);
    assert!(gone.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    common::signal(&p, nix::sys::signal::Signal::SIGTERM);
    let _ = p.wait();
    let _ = p.kill();
}

#[test]
fn a_bad_dtype_in_a_config_file_names_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[ring]\ndtype = \"int8\"\n").unwrap();
    for bin in [PRODUCER, CONSUMER] {
        let o = Command::new(bin)
            .args(["--config", cfg.to_str().unwrap(), "--ring", &ring("badcfg")])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(
                "ring.dtype: unknown dtype \"int8\": expected one of uint8, uint16, float32"
            ),
            "{err}"
        );
    }
    // And on the command line.
    let o = Command::new(PRODUCER)
        .args(["--config", "/dev/null", "--dtype", "int8"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--dtype"), "{}", stderr(&o));
}
