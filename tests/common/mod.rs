//! Helpers shared by the process-killing tests (`kill_stress`, `soak`).
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
