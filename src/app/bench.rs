//! `framering bench`: a producer and K consumer processes moving synthetic
//! frames through a real ring, with the same ring code the binaries use, and
//! one table of what they measured.
//!
//! The parent process spawns every role as a child (`framering bench-role`),
//! passing the [`BenchSpec`] as JSON; each child prints one [`RoleReport`] as
//! JSON on stdout when it is done. Consumers start first; the producer waits
//! until all of them joined before it starts its clock.

use framering_ring::limits::{MAX_CONSUMERS, MAX_GROUPS};
use framering_ring::{Backpressure, Consumer, FrameMeta, FrameShape, Producer, Take, WaitStrategy};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A wait that may run out of time (the run goes on): only its other errors
/// count.
fn unless_timeout(r: Result<(), framering_ring::WaitError>) -> anyhow::Result<()> {
    match r {
        Err(e) if !e.is_timeout() => Err(e.into()),
        _ => Ok(()),
    }
}

/// What the producer does to each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProducerWork {
    /// Write every byte (memset).
    Write,
    /// Copy every byte from a set of source frames larger than the CPU
    /// caches (what a decoder's output costs at best).
    Copy,
    /// Touch only the first bytes (the sequence number): hand-off cost alone.
    None,
}

/// What a consumer does with each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerWork {
    /// Nothing.
    None,
    /// Read one byte per 4 KiB page.
    Stride,
    /// Read every byte (XOR of its 64-bit words).
    Full,
}

/// Wait strategy of every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchWait {
    /// Busy-wait.
    Spin,
    /// Spin briefly, then futex.
    SpinThenFutex,
    /// Futex at once.
    Futex,
}

impl BenchWait {
    fn strategy(self) -> WaitStrategy {
        match self {
            BenchWait::Spin => WaitStrategy::SPIN,
            BenchWait::SpinThenFutex => WaitStrategy::SPIN_THEN_FUTEX,
            BenchWait::Futex => WaitStrategy::FUTEX,
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct BenchSpec {
    /// Frame height.
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    /// Frame width.
    #[arg(long, default_value_t = 1080)]
    pub width: u32,
    /// Channels.
    #[arg(long, default_value_t = 3)]
    pub channels: u32,
    /// Slots in the ring.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Stop after this many frames (0: run for --seconds).
    #[arg(long, default_value_t = 0)]
    pub frames: u64,
    /// Seconds to run when --frames is 0.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Consumer processes.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Consumer groups (consumers are dealt round-robin; every group gets
    /// every frame).
    #[arg(long, default_value_t = 1)]
    pub groups: u32,
    /// Producer work per frame.
    #[arg(long, value_enum, default_value_t = ProducerWork::Write)]
    pub producer_work: ProducerWork,
    /// Consumer work per frame.
    #[arg(long, value_enum, default_value_t = ConsumerWork::Stride)]
    pub consumer_work: ConsumerWork,
    /// How idle processes wait.
    #[arg(long, value_enum, default_value_t = BenchWait::SpinThenFutex)]
    pub wait: BenchWait,
    /// Most frames queued ahead of the consumers (0: 2 to 8 frames, as many as fit in 8 MiB).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub max_queued: u32,
    /// Drop the oldest untaken frame instead of waiting for a slot.
    #[arg(long)]
    pub drop_oldest: bool,
    /// Publish at most this many frames per second (0: as fast as
    /// possible); with a rate the latency is that of a waking consumer.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Ring name (default: framering-bench-PID).
    #[arg(long)]
    pub ring: Option<String>,
}

/// What one process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleReport {
    /// `producer` or `consumer N (group G)`.
    pub role: String,
    /// Frames published or taken.
    pub frames: u64,
    /// Seconds from the first to the last frame.
    pub seconds: f64,
    /// Frames per second.
    pub fps: f64,
    /// Frame bytes per second, in GB/s (10⁹).
    pub gb_per_s: f64,
    /// Publish→take latency percentiles in µs (consumers).
    pub latency_us: Option<[f64; 3]>,
    /// User + system CPU seconds of the whole process.
    pub cpu_s: f64,
    /// Frames dropped (producer: in total; consumer: by its group).
    pub dropped: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    /// The configuration.
    pub spec: BenchSpec,
    /// Producer first, then the consumers.
    pub roles: Vec<RoleReport>,
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

impl BenchSpec {
    fn producer(&self) -> Result<Producer, framering_ring::CreateError> {
        Producer::builder(&self.ring_name())
            .shape(FrameShape::new(self.height, self.width, self.channels))
            .slots(self.slots)
            .max_consumers(self.consumers.clamp(1, MAX_CONSUMERS))
            .max_groups(self.groups.clamp(1, MAX_GROUPS))
            .groups((0..self.groups).map(|g| format!("g{g}")))
            .backpressure(if self.drop_oldest {
                Backpressure::DropOldest
            } else {
                Backpressure::Block
            })
            .max_queued(self.max_queued)
            .wait(self.wait.strategy())
            .create()
    }

    fn consumer(&self, group: u32) -> Result<Consumer, framering_ring::AttachError> {
        Consumer::builder(&self.ring_name())
            .group(&format!("g{group}"))
            .wait(self.wait.strategy())
            .wait_for_ring(Duration::from_secs(30))
            .attach()
    }

    /// The ring name used.
    pub fn ring_name(&self) -> String {
        self.ring
            .clone()
            .unwrap_or_else(|| format!("framering-bench-{}", std::process::id()))
    }
}

/// Reads every byte: XOR of the frame's 64-bit words (the same work as
/// numpy's `bitwise_xor.reduce` in the Python peers; vectorised).
fn xor_words(d: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = d.chunks_exact(32);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a ^= u64::from_ne_bytes(w.try_into().expect("8 bytes"));
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |a, &b| a.rotate_left(8) ^ b as u64);
    acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ tail
}

/// The producer role.
pub fn run_producer(spec: &BenchSpec) -> anyhow::Result<RoleReport> {
    let p = spec.producer()?;
    let bytes = p.shape().bytes();
    // Source frames for `copy`: at least 128 MiB, larger than any CPU cache.
    let sources: Vec<Vec<u8>> = if spec.producer_work == ProducerWork::Copy {
        let n = ((128usize << 20) / bytes.max(1)).clamp(2, 4096);
        (0..n).map(|i| vec![(i * 37) as u8; bytes]).collect()
    } else {
        vec![]
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.consumers() < spec.consumers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} consumers joined within 30 s",
            p.consumers(),
            spec.consumers
        );
        unless_timeout(p.wait_for_groups(spec.groups, Duration::from_millis(20)))?;
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let end = (spec.frames == 0).then(|| start + Duration::from_secs_f64(spec.seconds));
    let period = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    let mut seq = 0u64;
    let mut last = start;
    loop {
        if spec.frames > 0 && seq >= spec.frames {
            break;
        }
        if let Some(period) = period {
            let due = start + period.mul_f64(seq as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // Check the clock only every 64 frames: it is not free.
        if seq % 64 == 0 || period.is_some() {
            last = Instant::now();
            if end.is_some_and(|e| last >= e) {
                break;
            }
        }
        let mut slot = match p.loan(Duration::from_millis(100)) {
            Ok(slot) => slot,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e.into()),
        };
        let data = slot.pixels_mut();
        match spec.producer_work {
            ProducerWork::Write => data.fill(seq as u8),
            ProducerWork::Copy => data.copy_from_slice(&sources[seq as usize % sources.len()]),
            ProducerWork::None => {}
        }
        let n = data.len().min(8);
        data[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        slot.publish(
            &FrameMeta::new()
                .source(b"bench")
                .src_size(spec.width, spec.height),
        )?;
        seq += 1;
    }
    let seconds = last.max(Instant::now()).duration_since(start).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    p.finish();
    unless_timeout(p.drain(Duration::from_secs(30)))?;
    let _ = p.unlink();
    Ok(RoleReport {
        role: "producer".into(),
        frames: seq,
        seconds,
        fps: seq as f64 / seconds.max(1e-9),
        gb_per_s: seq as f64 * bytes as f64 / seconds.max(1e-9) / 1e9,
        latency_us: None,
        cpu_s: cpu,
        dropped: p.dropped(),
    })
}

/// A consumer role in group `group`.
pub fn run_consumer(spec: &BenchSpec, index: u32, group: u32) -> anyhow::Result<RoleReport> {
    let c = spec.consumer(group)?;
    let bytes = c.shape().bytes();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut frames = 0u64;
    let mut sink = 0u64;
    let mut start = None;
    let mut last = Instant::now();
    let mut cpu0 = cpu_seconds();
    loop {
        match c.take(Duration::from_secs(5)) {
            Ok(Take::Frame(f)) => {
                let now_ns = crate::app::clock::monotonic_ns();
                if start.is_none() {
                    start = Some(Instant::now());
                    cpu0 = cpu_seconds();
                }
                let d = f.pixels();
                match spec.consumer_work {
                    ConsumerWork::None => {}
                    ConsumerWork::Stride => {
                        for i in (0..d.len()).step_by(4096) {
                            sink = sink.wrapping_add(d[i] as u64);
                        }
                    }
                    ConsumerWork::Full => sink ^= xor_words(d),
                }
                let _ = hist.record(now_ns.saturating_sub(f.info().publish_ns).max(1));
                drop(f);
                frames += 1;
                if frames % 64 == 0 {
                    last = Instant::now();
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
            Ok(Take::EndOfStream | Take::ProducerGone { .. }) => break,
            Ok(Take::ProducerFailed { reason }) => {
                anyhow::bail!("the producer failed: {reason}")
            }
        }
    }
    last = last.max(Instant::now());
    std::hint::black_box(sink);
    let seconds = start.map_or(0.0, |s| last.duration_since(s).as_secs_f64());
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1e3;
    Ok(RoleReport {
        role: format!("consumer {index} (g{group})"),
        frames,
        seconds,
        fps: frames as f64 / seconds.max(1e-9),
        gb_per_s: frames as f64 * bytes as f64 / seconds.max(1e-9) / 1e9,
        latency_us: (frames > 0).then(|| [q(0.5), q(0.99), q(0.999)]),
        cpu_s: cpu_seconds() - cpu0,
        dropped: c.group_dropped(),
    })
}

impl BenchReport {
    /// The table.
    pub fn render(&self) -> String {
        let s = &self.spec;
        let mut out = format!(
            "framering bench: {}x{}x{} frames, {} slots, {} consumer(s) in {} group(s), producer {:?}, consumer {:?}, wait {:?}{}{}\n",
            s.height,
            s.width,
            s.channels,
            s.slots,
            s.consumers,
            s.groups,
            s.producer_work,
            s.consumer_work,
            s.wait,
            if s.drop_oldest { ", drop_oldest" } else { "" },
            if s.rate > 0.0 { format!(", rate {} fps", s.rate) } else { String::new() },
        );
        out += &format!(
            "{:<18} {:>10} {:>11} {:>7} {:>10} {:>10} {:>10} {:>7} {:>8}\n",
            "ROLE", "FRAMES", "FPS", "GB/s", "p50 us", "p99 us", "p99.9 us", "CPU s", "DROPPED"
        );
        for r in &self.roles {
            let l = |i: usize| r.latency_us.map_or("-".into(), |l| format!("{:.1}", l[i]));
            out += &format!(
                "{:<18} {:>10} {:>11.1} {:>7.2} {:>10} {:>10} {:>10} {:>7.2} {:>8}\n",
                r.role,
                r.frames,
                r.fps,
                r.gb_per_s,
                l(0),
                l(1),
                l(2),
                r.cpu_s,
                r.dropped
            );
        }
        out
    }
}

/// Which role a `bench-role` child plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The producer.
    Producer,
    /// A consumer.
    Consumer,
}

/// Runs the benchmark: spawns `exe bench-role …` for every consumer, then
/// the producer, and collects their reports.
pub fn run(spec: &BenchSpec, exe: &std::path::Path) -> anyhow::Result<BenchReport> {
    use anyhow::Context;
    use std::process::{Command, Stdio};
    let mut spec = spec.clone();
    spec.ring
        .get_or_insert_with(|| format!("framering-bench-{}", std::process::id()));
    anyhow::ensure!(spec.consumers >= 1, "--consumers must be at least 1");
    anyhow::ensure!(
        spec.groups >= 1 && spec.groups <= spec.consumers,
        "--groups must be between 1 and the number of consumers"
    );
    let json = serde_json::to_string(&spec)?;
    let spawn = |role: &str, index: u32, group: u32| {
        Command::new(exe)
            .args(["bench-role", "--role", role])
            .args(["--index", &index.to_string(), "--group", &group.to_string()])
            .args(["--spec", &json])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))
    };
    let consumers = (0..spec.consumers)
        .map(|i| spawn("consumer", i, i % spec.groups))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let producer = spawn("producer", 0, 0)?;
    let mut roles = vec![];
    for child in std::iter::once(producer).chain(consumers) {
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "a benchmark process failed ({})",
            out.status
        );
        roles.push(
            serde_json::from_slice::<RoleReport>(&out.stdout)
                .context("a benchmark process printed no report")?,
        );
    }
    Ok(BenchReport { spec, roles })
}

/// `framering bench`: runs the benchmark (this program, `exe`, started
/// once per role) and writes its report to `out`, as text or JSON.
pub fn run_command(
    spec: &BenchSpec,
    json: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i32> {
    let report = run(spec, &std::env::current_exe()?)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.render())?;
    }
    Ok(super::exit::OK)
}

/// One process of `framering bench` (the hidden `bench-role`): runs `role`
/// on the spec given as JSON and writes its report to `out` as one JSON
/// line.
pub fn run_role(
    role: Role,
    index: u32,
    group: u32,
    spec: &str,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i32> {
    let spec: BenchSpec = serde_json::from_str(spec)?;
    let report = match role {
        Role::Producer => run_producer(&spec)?,
        Role::Consumer => run_consumer(&spec, index, group)?,
    };
    writeln!(out, "{}", serde_json::to_string(&report)?)?;
    Ok(super::exit::OK)
}
