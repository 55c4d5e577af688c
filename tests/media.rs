//! Inputs, with the real binaries: JPEGs a build cannot decode, producers
//! blocked reading their input (stdin, a stalled ffmpeg) stopped by a
//! signal, y4m streams on stdin checked against the ring's shape.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "process did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    let c = command(CONSUMER, &name, shape, &["--output", "null"])
        .spawn()
        .unwrap();
    let p = command(
        PRODUCER,
        &name,
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
    let j = json(&stats);
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
