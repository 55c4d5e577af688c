//! A consumer of your own, on the `framering-ring` library: attaches to a
//! running ring by name (adopting its frame shape), prints one line per
//! frame, and exits 0 at the end of the stream.
//!
//! ```sh
//! target/release/framering-producer --ring demo --keep &   # any producer
//! cargo run --release --example consumer -- demo            # seq=0 mean=97.41 …
//! ```
//!
//! Options: `--group NAME` joins another group (every group gets every
//! frame), `--wait SECONDS` waits that long for the ring to appear (default 30).

use framering::ring::{Consumer, Take};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut ring, mut group, mut wait) = (None, "default".to_string(), 30.0);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--group" => group = args.next().unwrap_or_default(),
            "--wait" => wait = args.next().and_then(|s| s.parse().ok()).unwrap_or(-1.0),
            _ if ring.is_none() && !a.starts_with('-') => ring = Some(a),
            _ => ring = None,
        }
    }
    let Some(ring) = ring.filter(|_| wait >= 0.0) else {
        eprintln!("usage: consumer RING [--group NAME] [--wait SECONDS]");
        return ExitCode::from(2);
    };
    match run(&ring, &group, Duration::from_secs_f64(wait)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(ring: &str, group: &str, wait: Duration) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let consumer = Consumer::builder(ring)
        .group(group)
        .wait_for_ring(wait)
        .attach()?;
    eprintln!(
        "attached to {ring}: {} frames, group {group}",
        consumer.shape()
    );
    loop {
        match consumer.take(Duration::from_secs(1)) {
            Ok(Take::Frame(frame)) => {
                let px = frame.pixels();
                let mean = px.iter().map(|&b| b as u64).sum::<u64>() as f64 / px.len() as f64;
                println!("seq={} mean={mean:.2}", frame.seq());
            } // the frame drops here: its slot goes back to the producer
            Ok(Take::EndOfStream) => return Ok(ExitCode::SUCCESS),
            Ok(Take::ProducerGone { pid }) => {
                eprintln!("the producer (pid {pid}) died before ending the stream");
                return Ok(ExitCode::from(4));
            }
            Ok(Take::ProducerFailed { reason }) => {
                eprintln!("the producer failed: {reason}");
                return Ok(ExitCode::from(1));
            }
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
