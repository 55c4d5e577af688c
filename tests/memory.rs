//! Decode memory is bounded for the whole producer
//! (`producer.decode_memory_mb`), whatever the number of decoder threads.
//!
//! The producer's peak RSS is read with getrusage(RUSAGE_CHILDREN) once it
//! has been waited for: the largest peak of this test binary's waited-for
//! children, so the tests here spawn nothing bigger than the producer.

mod common;
use common::{stderr, wait_with_timeout};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");
const CONSUMER: &str = env!("CARGO_BIN_EXE_framering-consumer");

fn ring(tag: &str) -> String {
    format!("framering-mem-{tag}-{}", std::process::id())
}

fn command(bin: &str, ring: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(["--config", "/dev/null", "--ring", ring, "--quiet"])
        .args(["--height", "48", "--width", "64", "--channels", "3"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// An all-zero RGB PNG of `side`×`side` (compresses to well under 1 MB).
fn zero_png(path: &Path, side: u32) {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let pixels = vec![0u8; side as usize * side as usize * 3];
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    PngEncoder::new_with_quality(file, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
}

/// Runs a producer over `dir` with `extra` flags into a `--output null`
/// consumer; returns the producer's output and stats JSON.
fn produce(tag: &str, dir: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let name = ring(tag);
    let stats = dir.join(format!("{tag}.json"));
    let c = command(CONSUMER, &name, &["--output", "null"])
        .spawn()
        .unwrap();
    let mut args = vec![
        "--input",
        dir.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let p = command(PRODUCER, &name, &args).spawn().unwrap();
    let pout = wait_with_timeout(p, Duration::from_secs(120));
    assert!(pout.status.success(), "{}", stderr(&pout));
    let cout = wait_with_timeout(c, Duration::from_secs(30));
    assert!(cout.status.success(), "{}", stderr(&cout));
    let json = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    (pout, json)
}

/// Four 8000×8000 PNGs (183 MiB each decoded) with four decoder threads and
/// a 256 MiB budget: decoded one at a time, the producer's peak RSS stays
/// within the budget plus a margin (without a shared budget all four decode
/// at once: ~750 MiB).
#[test]
fn four_decoder_threads_share_one_decode_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    zero_png(&dir.join("big0.png"), 8000);
    for i in 1..4 {
        std::fs::copy(dir.join("big0.png"), dir.join(format!("big{i}.png"))).unwrap();
    }
    let budget_mib = 256;
    let (_, json) = produce(
        "budget",
        &dir,
        &[
            "--decode-threads",
            "4",
            "--decode-memory-mb",
            &budget_mib.to_string(),
        ],
    );
    assert_eq!(json["frames"], 4, "{json}");
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    // ru_maxrss is in KiB on Linux.
    let peak_mib = usage.max_rss() / 1024;
    let margin_mib = 64;
    eprintln!("peak RSS of the producer: {peak_mib} MiB (budget {budget_mib} MiB)");
    assert!(
        peak_mib < budget_mib + margin_mib,
        "peak RSS {peak_mib} MiB with a {budget_mib} MiB decode budget"
    );
}

/// An image whose decoding could never fit in the budget is skipped as
/// `too_large` (and does not wait forever); the others are published.
#[test]
fn an_image_larger_than_the_decode_budget_is_skipped_as_too_large() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    zero_png(&dir.join("a-big.png"), 6000); // 103 MiB decoded
    zero_png(&dir.join("b-small.png"), 640);
    let (pout, json) = produce("toolarge", &dir, &["--decode-memory-mb", "64"]);
    assert_eq!(json["frames"], 1, "{json}");
    assert_eq!(json["skipped"]["too_large"], 1, "{json}");
    let err = stderr(&pout);
    assert!(err.contains("a-big.png"), "{err}");
    assert!(err.contains("decode_memory_mb"), "{err}");
}
