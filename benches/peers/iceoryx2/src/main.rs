//! iceoryx2 publish-subscribe, the peer of `framering bench`: the same frames
//! (H x W x C bytes), the same producer work (write every byte, then the
//! sequence number and publish time in the first 16 bytes) and the same
//! consumer work (none / one byte per 4 KiB page / XOR of every 64-bit word),
//! between two processes.
//!
//! Loaned slice samples (`loan_slice_uninit`): the publisher writes straight
//! into iceoryx2's shared memory, the subscriber reads in place. Flow control
//! is lossless like framering's `block`: no safe overflow, publisher
//! `RetryUntilDelivered`. Wake-ups: `--wait event` (an iceoryx2 event service:
//! the publisher notifies after every send, an empty subscriber waits on its
//! listener) or `--wait spin` (the subscriber busy-polls `receive`).
//!
//!   iceoryx2-peer [--seconds 4] [--height 720 --width 1080 --channels 3]
//!                 [--wait event|spin] [--work none|stride|full] [--rate FPS]
//!                 [--buffer 4] [--subscribers 1]
//!
//! With K subscribers each gets every frame (broadcast).
//! Prints one JSON line per subscriber: fps, GB/s, latency p50/p99/p99.9 in
//! microseconds.
use iceoryx2::prelude::*;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Args {
    seconds: f64,
    h: usize,
    w: usize,
    c: usize,
    wait: String,
    work: String,
    rate: f64,
    buffer: usize,
    subscribers: usize,
    service: String,
    role: String,
}

fn parse() -> Args {
    let mut a = Args {
        seconds: 4.0,
        h: 720,
        w: 1080,
        c: 3,
        wait: "event".into(),
        work: "stride".into(),
        rate: 0.0,
        buffer: 4,
        subscribers: 1,
        service: format!("framering-peer/{}", std::process::id()),
        role: "run".into(),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--seconds" => a.seconds = val.parse().expect("--seconds"),
            "--height" => a.h = val.parse().expect("--height"),
            "--width" => a.w = val.parse().expect("--width"),
            "--channels" => a.c = val.parse().expect("--channels"),
            "--wait" => a.wait = val,
            "--work" => a.work = val,
            "--rate" => a.rate = val.parse().expect("--rate"),
            "--buffer" => a.buffer = val.parse().expect("--buffer"),
            "--subscribers" => a.subscribers = val.parse().expect("--subscribers"),
            "--service" => a.service = val,
            "--role" => a.role = val,
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn mono_ns() -> u64 {
    // CLOCK_MONOTONIC is shared by all processes of the host.
    let mut ts = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    extern "C" {
        fn clock_gettime(clk: i32, ts: *mut [i64; 2]) -> i32;
    }
    // SAFETY: clock_gettime writes a struct timespec (two 64-bit fields on
    // x86_64 / aarch64 Linux) to a valid pointer; CLOCK_MONOTONIC = 1.
    unsafe {
        clock_gettime(1, ts.as_mut_ptr());
        let [s, ns] = ts.assume_init();
        s as u64 * 1_000_000_000 + ns as u64
    }
}

type Pubsub = iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>;
type EventSvc = iceoryx2::service::port_factory::event::PortFactory<ipc::Service>;

fn services(node: &Node<ipc::Service>, a: &Args) -> Result<(Pubsub, EventSvc), Box<dyn std::error::Error>> {
    let name: ServiceName = a.service.as_str().try_into()?;
    let ps = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(a.buffer)
        .subscriber_max_borrowed_samples(2)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(a.subscribers)
        .open_or_create()?;
    let ev_name: ServiceName = format!("{}/ev", a.service).as_str().try_into()?;
    let ev = node.service_builder(&ev_name).event().open_or_create()?;
    Ok((ps, ev))
}

fn subscriber(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (ps, ev) = services(&node, a)?;
    let sub = ps.subscriber_builder().buffer_size(a.buffer).create()?;
    let listener = ev.listener_builder().create()?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 24);
    let (mut frames, mut sink, mut bytes) = (0u64, 0u64, 0usize);
    let mut start = None;
    let mut last = Instant::now();
    'outer: loop {
        while let Some(s) = sub.receive()? {
            let d = s.payload();
            if d.len() < 16 {
                break 'outer; // end marker
            }
            let now = mono_ns();
            if start.is_none() {
                start = Some(Instant::now());
            }
            match a.work.as_str() {
                "stride" => {
                    for i in (0..d.len()).step_by(4096) {
                        sink = sink.wrapping_add(d[i] as u64);
                    }
                }
                "full" => {
                    let mut acc = [0u64; 4];
                    let mut ch = d.chunks_exact(32);
                    for c in &mut ch {
                        for (k, w) in c.chunks_exact(8).enumerate() {
                            acc[k] ^= u64::from_ne_bytes(w.try_into().unwrap());
                        }
                    }
                    sink ^= acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ ch.remainder().len() as u64;
                }
                _ => {}
            }
            let sent = u64::from_le_bytes(d[8..16].try_into().unwrap());
            if lat.len() < lat.capacity() {
                lat.push(now.saturating_sub(sent));
            }
            bytes = d.len();
            drop(s);
            frames += 1;
            if frames % 64 == 0 {
                last = Instant::now();
            }
        }
        if a.wait == "event" {
            listener.timed_wait(|_| {}, Duration::from_millis(100))?;
        } else {
            std::hint::spin_loop();
        }
    }
    last = last.max(Instant::now());
    std::hint::black_box(sink);
    let secs = start.map_or(0.0, |s| last.duration_since(s).as_secs_f64()).max(1e-9);
    lat.sort_unstable();
    let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1e3;
    println!(
        "{{\"peer\": \"iceoryx2\", \"wait\": \"{}\", \"work\": \"{}\", \"frames\": {}, \"fps\": {:.1}, \"gb_per_s\": {:.2}, \"latency_us\": [{:.2}, {:.2}, {:.2}]}}",
        a.wait,
        a.work,
        frames,
        frames as f64 / secs,
        frames as f64 * bytes as f64 / secs / 1e9,
        q(0.5),
        q(0.99),
        q(0.999)
    );
    Ok(())
}

fn publisher(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = a.h * a.w * a.c;
    assert!(bytes >= 16, "frames need at least 16 bytes");
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..a.subscribers {
        let mut child = Command::new(&exe)
            .args(std::env::args().skip(1))
            .args(["--role", "sub", "--service", &a.service])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(format!("subscriber did not start: {line:?}").into());
        }
        children.push((child, out));
    }
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (ps, ev) = services(&node, a)?;
    let publisher = ps
        .publisher_builder()
        .initial_max_slice_len(bytes)
        .max_loaned_samples(2)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    let notifier = ev.notifier_builder().create()?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let period = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let mut seq = 0u64;
    loop {
        if let Some(p) = period {
            let due = start + p.mul_f64(seq as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if (seq % 64 == 0 || period.is_some()) && Instant::now() >= end {
            break;
        }
        let mut s = publisher.loan_slice_uninit(bytes)?;
        let p = s.payload_mut();
        // SAFETY: `p` is `bytes` valid, writable (uninitialised) bytes.
        unsafe { std::ptr::write_bytes(p.as_mut_ptr() as *mut u8, seq as u8, bytes) };
        // SAFETY: every byte was written just above.
        let mut s = unsafe { s.assume_init() };
        let d = s.payload_mut();
        d[..8].copy_from_slice(&seq.to_le_bytes());
        d[8..16].copy_from_slice(&mono_ns().to_le_bytes());
        s.send()?;
        if a.wait == "event" {
            notifier.notify()?;
        }
        seq += 1;
    }
    let s = publisher.loan_slice_uninit(1)?;
    let s = s.write_from_fn(|_| 0u8);
    s.send()?;
    notifier.notify()?;
    for (mut child, mut out) in children {
        let mut report = String::new();
        out.read_line(&mut report)?;
        child.wait()?;
        print!("{report}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    set_log_level(LogLevel::Error);
    let a = parse();
    if a.role == "sub" {
        subscriber(&a)
    } else {
        publisher(&a)
    }
}
