//! The baselines of `benches/peers/bridge.sh`: the same payloads as the
//! bridge (H×W×C bytes, one message per frame) over a plain zenoh
//! publisher/subscriber with the bridge's own zenoh settings, and over raw
//! TCP. Each receiver reads every byte and prints one JSON line:
//! `{"mode": …, "frames": …, "seconds": …, "fps": …, "gbit_per_s": …}`.
//!
//! ```text
//! zenoh_peer zenoh-sub --listen tcp/127.0.0.1:7447 --frames 2000 &
//! zenoh_peer zenoh-pub --connect tcp/127.0.0.1:7447 --frames 2000
//! zenoh_peer tcp-recv --addr 127.0.0.1:7448 --frames 2000 &
//! zenoh_peer tcp-send --addr 127.0.0.1:7448 --frames 2000
//! ```

use clap::{Parser, ValueEnum};
use framering::app::config::BridgeConfig;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    ZenohPub,
    ZenohSub,
    TcpSend,
    TcpRecv,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    /// Frames to send / receive.
    #[arg(long, default_value_t = 2000)]
    frames: u64,
    #[arg(long, default_value_t = 720)]
    height: usize,
    #[arg(long, default_value_t = 1080)]
    width: usize,
    #[arg(long, default_value_t = 3)]
    channels: usize,
    /// zenoh: the key.
    #[arg(long, default_value = "framering/bench-plain")]
    key: String,
    /// zenoh: endpoint to connect to.
    #[arg(long)]
    connect: Vec<String>,
    /// zenoh: endpoint to listen on.
    #[arg(long)]
    listen: Vec<String>,
    /// tcp: HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7448")]
    addr: String,
}

fn report(mode: &str, frames: u64, bytes: u64, start: Instant, sum: u64) {
    let s = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\": \"{mode}\", \"frames\": {frames}, \"seconds\": {s:.3}, \"fps\": {:.1}, \"gbit_per_s\": {:.3}, \"checksum\": {sum}}}",
        frames as f64 / s,
        bytes as f64 * 8.0 / s / 1e9
    );
}

/// Reads every byte, as the bridge's consumer does (`--output null`).
fn touch(sum: &mut u64, b: &[u8]) {
    let mut s = 0u64;
    for c in b.chunks_exact(8) {
        s = s.wrapping_add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    }
    *sum = sum.wrapping_add(s);
}

fn frame(n: usize, i: u64) -> Vec<u8> {
    (0..n).map(|j| (j as u64 ^ i) as u8).collect()
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let n = a.height * a.width * a.channels;
    let cfg = BridgeConfig {
        connect: a.connect.clone(),
        listen: a.listen.clone(),
        multicast_scouting: false,
        key: a.key.clone(),
        ..BridgeConfig::default()
    };
    match a.mode {
        Mode::ZenohPub => {
            let session = framering::app::bridge::open_session(&cfg)?;
            let publisher = session
                .declare_publisher(a.key.clone())
                .congestion_control(CongestionControl::Block)
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            while !publisher
                .matching_status()
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .matching()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Eight distinct frames, sent by reference (no copy per put).
            let frames: Vec<bytes::Bytes> = (0..8).map(|i| frame(n, i).into()).collect();
            for i in 0..a.frames {
                publisher
                    .put(frames[(i % 8) as usize].clone())
                    .wait()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            // Let the last frames leave before the session closes.
            std::thread::sleep(Duration::from_secs(1));
        }
        Mode::ZenohSub => {
            let session = framering::app::bridge::open_session(&cfg)?;
            let sub = session
                .declare_subscriber(a.key.clone())
                .with(zenoh::handlers::FifoChannel::new(cfg.rx_queue as usize))
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut sum = 0;
            let mut start = Instant::now();
            for i in 0..a.frames {
                let s = sub.recv().map_err(|e| anyhow::anyhow!("{e}"))?;
                if i == 0 {
                    start = Instant::now();
                }
                for part in s.payload().slices() {
                    touch(&mut sum, part);
                }
            }
            // The first frame starts the clock.
            report("zenoh", a.frames - 1, (a.frames - 1) * n as u64, start, sum);
        }
        Mode::TcpSend => {
            let frames: Vec<Vec<u8>> = (0..8).map(|i| frame(n, i)).collect();
            let mut s = loop {
                match std::net::TcpStream::connect(&a.addr) {
                    Ok(s) => break s,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            for i in 0..a.frames {
                s.write_all(&frames[(i % 8) as usize])?;
            }
        }
        Mode::TcpRecv => {
            let l = std::net::TcpListener::bind(&a.addr)?;
            let (mut s, _) = l.accept()?;
            let mut buf = vec![0u8; n];
            let mut sum = 0;
            let mut start = Instant::now();
            for i in 0..a.frames {
                s.read_exact(&mut buf)?;
                if i == 0 {
                    start = Instant::now();
                }
                touch(&mut sum, &buf);
            }
            report("tcp", a.frames - 1, (a.frames - 1) * n as u64, start, sum);
        }
    }
    Ok(())
}
