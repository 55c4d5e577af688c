//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Side of the small square test frames.
pub const SIDE: u32 = 16;

/// A binary of the crate with `--config /dev/null`, the ring name and a
/// `SIDE`×`SIDE`×3 shape; output silenced.
pub fn command(bin: &str, ring: &str) -> Command {
    let s = SIDE.to_string();
    let mut c = Command::new(bin);
    c.args([
        "--config",
        "/dev/null",
        "--ring",
        ring,
        "--height",
        &s,
        "--width",
        &s,
    ]);
    c.args(["--channels", "3"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Writes `n` distinct `SIDE`×`SIDE` PNGs into `dir`; returns their pixels.
pub fn small_inputs(dir: &Path, n: u32) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let img = image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
                image::Rgb([i as u8, (x * 16) as u8, (y * 16 + i) as u8])
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
            img.into_raw()
        })
        .collect()
}

/// A small deterministic generator (test jitter needs no dependency).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Waits for `child` to exit, at most `limit` (then kills it and panics with
/// its stderr); returns its output.
pub fn wait_with_timeout(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "process did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A finished process's stderr as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends `sig` to `child`.
pub fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Waits (at most 60 s) for ring `name` to exist.
pub fn wait_for_ring(name: &str) {
    let start = std::time::Instant::now();
    while framering::ring::inspect::RingView::open(name).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no ring {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until the ring `name` exists and has published at least `n` frames.
pub fn wait_published(name: &str, n: u64) {
    let start = std::time::Instant::now();
    loop {
        let published = framering::ring::inspect::RingView::open(name)
            .map(|v| v.snapshot().producer.published)
            .unwrap_or(0);
        if published >= n {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "producer published nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Runs ffmpeg (quiet, overwriting) with `args`; panics with its message if
/// it fails.
pub fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
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

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child's stderr, read by a thread as it comes, so that a test can wait
/// for a line the process logs when it reaches a state instead of sleeping.
pub struct StderrLog {
    text: std::sync::Arc<(std::sync::Mutex<String>, std::sync::Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl StderrLog {
    /// Takes `child`'s stderr (spawned with `Stdio::piped()`).
    pub fn capture(child: &mut std::process::Child) -> StderrLog {
        use std::io::Read;
        let mut from = child.stderr.take().expect("stderr piped");
        let text = std::sync::Arc::new((std::sync::Mutex::new(String::new()), Default::default()));
        let to = text.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut chunk) {
                let (lock, cv): &(std::sync::Mutex<String>, std::sync::Condvar) = &to;
                lock.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
                cv.notify_all();
            }
        });
        StderrLog {
            text,
            reader: Some(reader),
        }
    }

    /// Waits until the process has written `needle` to stderr; panics with
    /// what it wrote if it has not within `limit`.
    pub fn wait_for(&self, needle: &str, limit: std::time::Duration) {
        let (lock, cv) = &*self.text;
        let deadline = std::time::Instant::now() + limit;
        let mut text = lock.lock().unwrap();
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} on stderr within {limit:?}; stderr so far:\n{text}"
            );
            text = cv.wait_timeout(text, left).unwrap().0;
        }
    }

    /// Everything written to stderr (all of it once the process has exited
    /// and its stderr is closed).
    pub fn text(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.text.0.lock().unwrap().clone()
    }
}

/// Waits (at most 60 s) until `ready` holds for a snapshot of ring `name`;
/// panics saying `what` was awaited.
pub fn wait_for_state(
    name: &str,
    what: &str,
    ready: impl Fn(&framering::ring::inspect::RingStatus) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        if let Ok(view) = framering::ring::inspect::RingView::open(name) {
            if ready(&view.snapshot()) {
                return;
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "ring {name}: not {what} within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
