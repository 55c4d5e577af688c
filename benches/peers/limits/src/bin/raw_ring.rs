//! The floor of a frame hand-off between two processes, to compare
//! `framering bench` with on the same workloads: a bare single-producer,
//! single-consumer ring of N slots in one shared mapping — a published and a
//! consumed counter on their own cache lines, a timestamp per slot, nothing
//! else. No crash safety, no groups, no metadata, no validation of what is
//! read, slots in ring order, both sides spinning. What is left of the
//! hand-off then is the cache-line transfers any protocol needs: the
//! counter, the slot's stamp, and the bytes themselves.
//!
//!     raw_ring [--height H] [--width W] [--channels C] [--slots N]
//!              [--seconds S] [--producer-work write|none]
//!              [--consumer-work stride|none] [--rate FPS]
//!
//! The per-frame work is `framering bench`'s: `write` fills every byte of
//! the slot (then the sequence number into its first 8), `none` writes only
//! the sequence number; `stride` reads one byte every 4096. Latency is
//! measured as `framering bench` does: the producer reads CLOCK_MONOTONIC
//! just before it publishes, the consumer just after it sees the frame.
//! Prints one JSON line: frames per second (consumer side, first frame to
//! last) and latency percentiles (p50, p99) in microseconds.
use memmap2::MmapMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PUBLISHED: usize = 0;
const CONSUMED: usize = 128;
const DONE: usize = 256;
const RESULT: usize = 384; // frames, seconds (f64 bits), p50 ns, p99 ns
const STAMPS: usize = 4096; // one cache line per slot
const BUCKET_NS: u64 = 10;
const BUCKETS: usize = 100_000; // up to 1 ms; beyond counts in the last
/// How long either side waits for the other before it gives up.
const STALL: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Spec {
    height: usize,
    width: usize,
    channels: usize,
    slots: usize,
    seconds: f64,
    write: bool,
    stride: bool,
    rate: f64,
}

impl Spec {
    fn frame(&self) -> usize {
        self.height * self.width * self.channels
    }
    fn slot_stride(&self) -> usize {
        self.frame().div_ceil(4096) * 4096
    }
    fn data_offset(&self) -> usize {
        (STAMPS + 64 * self.slots).div_ceil(4096) * 4096
    }
    fn bytes(&self) -> usize {
        self.data_offset() + self.slots * self.slot_stride()
    }
    fn args(&self) -> Vec<String> {
        let work = |b: bool, yes: &str| {
            if b {
                yes.to_string()
            } else {
                "none".to_string()
            }
        };
        vec![
            "--height".into(),
            self.height.to_string(),
            "--width".into(),
            self.width.to_string(),
            "--channels".into(),
            self.channels.to_string(),
            "--slots".into(),
            self.slots.to_string(),
            "--seconds".into(),
            self.seconds.to_string(),
            "--producer-work".into(),
            work(self.write, "write"),
            "--consumer-work".into(),
            work(self.stride, "stride"),
            "--rate".into(),
            self.rate.to_string(),
        ]
    }
}

fn parse(args: &[String]) -> Spec {
    let mut s = Spec {
        height: 720,
        width: 1080,
        channels: 3,
        slots: 8,
        seconds: 3.0,
        write: true,
        stride: true,
        rate: 0.0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--height" => s.height = v.parse().unwrap(),
            "--width" => s.width = v.parse().unwrap(),
            "--channels" => s.channels = v.parse().unwrap(),
            "--slots" => s.slots = v.parse().unwrap(),
            "--seconds" => s.seconds = v.parse().unwrap(),
            "--producer-work" => s.write = v == "write",
            "--consumer-work" => s.stride = v == "stride",
            "--rate" => s.rate = v.parse().unwrap(),
            other => panic!("unknown option {other}"),
        }
    }
    s
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn map(path: &str, len: usize, create: bool) -> MmapMut {
    // SAFETY: only this program's two processes map the file: the producer
    // writes a slot only while the consumer's counter says it is free, the
    // consumer reads it only while the published counter says it is full.
    unsafe { limits_peer::map_shared(path, len as u64, create) }
}

fn word(map: &MmapMut, off: usize) -> &AtomicU64 {
    assert!(off + 8 <= map.len() && off.is_multiple_of(8));
    // SAFETY: in bounds and aligned (checked); any bits are a valid u64;
    // the reference lives no longer than `map`.
    unsafe { &*(map.as_ptr().add(off) as *const AtomicU64) }
}

fn producer(spec: &Spec, map: &mut MmapMut) {
    let base = map.as_mut_ptr();
    let len = map.len();
    let map = &*map;
    let (published, consumed, done) = (word(map, PUBLISHED), word(map, CONSUMED), word(map, DONE));
    let (frame, stride, data) = (spec.frame(), spec.slot_stride(), spec.data_offset());
    let period = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(spec.seconds);
    let mut seq = 0u64;
    let mut free_seen = 0u64; // consumed + slots, as last read
    loop {
        if let Some(p) = period {
            let due = start + p.mul_f64(seq as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        if (seq.is_multiple_of(64) || period.is_some()) && Instant::now() >= end {
            break;
        }
        let mut spins = 0u32;
        while seq >= free_seen {
            free_seen = consumed.load(Ordering::Acquire) + spec.slots as u64;
            if seq >= free_seen {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                // A consumer that died never frees a slot: give up.
                if spins.is_multiple_of(65_536) && Instant::now() > end + STALL {
                    panic!("the consumer took nothing for {STALL:?}");
                }
            }
        }
        let s = (seq % spec.slots as u64) as usize;
        let off = data + s * stride;
        assert!(off + frame <= len);
        // SAFETY: in bounds (checked), clear of the counter and stamp words
        // (the data starts past them), and the consumer does not read this
        // slot until the count below says so.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base.add(off), frame) };
        if spec.write {
            bytes.fill(seq as u8);
        }
        let n = frame.min(8);
        bytes[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        word(map, STAMPS + 64 * s).store(monotonic_ns(), Ordering::Relaxed);
        // Release: the bytes and the stamp before the count.
        published.store(seq + 1, Ordering::Release);
        seq += 1;
    }
    done.store(1, Ordering::Release);
}

fn consumer(spec: &Spec, map: &MmapMut) {
    let (published, consumed, done) = (word(map, PUBLISHED), word(map, CONSUMED), word(map, DONE));
    let (frame, stride, data) = (spec.frame(), spec.slot_stride(), spec.data_offset());
    let mut hist = vec![0u64; BUCKETS];
    let mut read = 0u64;
    let mut ready = 0u64; // published, as last read
    let mut sink = 0u64;
    let mut first: Option<Instant> = None;
    let (mut spins, mut idle_since) = (0u32, None::<Instant>);
    loop {
        while read >= ready {
            ready = published.load(Ordering::Acquire);
            if read >= ready {
                if done.load(Ordering::Acquire) == 1 && published.load(Ordering::Acquire) == read {
                    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
                    let q = |p: f64| {
                        let want = (read as f64 * p).ceil() as u64;
                        let mut acc = 0;
                        for (i, c) in hist.iter().enumerate() {
                            acc += c;
                            if acc >= want.max(1) {
                                return (i as u64 + 1) * BUCKET_NS;
                            }
                        }
                        BUCKETS as u64 * BUCKET_NS
                    };
                    std::hint::black_box(sink);
                    word(map, RESULT).store(read, Ordering::Relaxed);
                    word(map, RESULT + 8).store(secs.to_bits(), Ordering::Relaxed);
                    word(map, RESULT + 16).store(q(0.5), Ordering::Relaxed);
                    word(map, RESULT + 24).store(q(0.99), Ordering::Relaxed);
                    return;
                }
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                // A producer that died never publishes: give up (the
                // parent is the producer; an orphan would spin for ever).
                if spins % 65_536 == 0 {
                    let idle = *idle_since.get_or_insert_with(Instant::now);
                    if idle.elapsed() > STALL {
                        eprintln!("raw_ring consumer: nothing published for {STALL:?}");
                        std::process::exit(1);
                    }
                }
            }
        }
        idle_since = None;
        let now = monotonic_ns();
        first.get_or_insert_with(Instant::now);
        let s = (read % spec.slots as u64) as usize;
        let bytes = &map[data + s * stride..data + s * stride + frame];
        if spec.stride {
            for i in (0..frame).step_by(4096) {
                sink = sink.wrapping_add(bytes[i] as u64);
            }
        }
        let lat = now.saturating_sub(word(map, STAMPS + 64 * s).load(Ordering::Relaxed));
        hist[((lat / BUCKET_NS) as usize).min(BUCKETS - 1)] += 1;
        // Release: our reads of the slot before the producer's next writes.
        consumed.store(read + 1, Ordering::Release);
        read += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("consumer") {
        let spec = parse(&args[3..]);
        let m = map(&args[2], spec.bytes(), false);
        consumer(&spec, &m);
        return;
    }
    let spec = parse(&args[1..]);
    let path = format!("/dev/shm/framering-raw-ring-{}", std::process::id());
    let mut m = map(&path, spec.bytes(), true);
    // Touch every page first, as framering reserves its ring's memory.
    m.fill(0);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("consumer")
        .arg(&path)
        .args(spec.args())
        .spawn()
        .expect("consumer process");
    std::thread::sleep(Duration::from_millis(100));
    producer(&spec, &mut m);
    let ok = child.wait().unwrap().success();
    std::fs::remove_file(&path).unwrap();
    assert!(ok, "the consumer failed");
    let frames = word(&m, RESULT).load(Ordering::Relaxed);
    let secs = f64::from_bits(word(&m, RESULT + 8).load(Ordering::Relaxed));
    let (p50, p99) = (
        word(&m, RESULT + 16).load(Ordering::Relaxed) as f64 / 1e3,
        word(&m, RESULT + 24).load(Ordering::Relaxed) as f64 / 1e3,
    );
    println!(
        r#"{{"limit": "raw-ring", "slots": {}, "shape": [{}, {}, {}], "frames": {frames}, "fps": {:.1}, "latency_us": [{p50:.3}, {p99:.3}]}}"#,
        spec.slots,
        spec.height,
        spec.width,
        spec.channels,
        frames as f64 / secs.max(1e-9)
    );
}
