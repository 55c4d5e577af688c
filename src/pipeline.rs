//! The producer and consumer programs, as library functions: the binaries
//! parse flags into a [`Config`] and call these.

use crate::clock::monotonic_ns;
use crate::config::{Config, ShapePolicy, SourceKind};
use crate::decode::{DecodeError, Decoded, Decoder, FrameShape};
use crate::pool::{Consumer, FrameMeta, PoolError, Producer, RingOptions, Take, WriteSlot};
use crate::signals;
use crate::sink::Sink;
use crate::source::list_inputs;
use crate::stats::{Progress, Stats, Summary};
use anyhow::Context;
use crossbeam::channel::{bounded, RecvTimeoutError};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publication pacing for `producer.fps_limit`: frame `n` is published no
/// earlier than `start + n / fps`. A producer that falls behind does not
/// burst to catch up by more than one frame.
#[derive(Debug)]
pub struct Pacer {
    period: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// `fps` of 0 means no limit.
    pub fn new(fps: f64) -> Pacer {
        Pacer {
            period: (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps)),
            next: None,
        }
    }

    /// Sleeps until the next frame is due.
    pub fn wait(&mut self) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        let due = *self.next.get_or_insert(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // Late by more than a period: restart the schedule from now.
        let base = if now > due + period { now } else { due };
        self.next = Some(base + period);
    }
}

/// What the producer reads, once `producer.source = "auto"` is resolved.
fn source_kind(cfg: &Config) -> SourceKind {
    match cfg.producer.source {
        SourceKind::Auto if cfg.producer.input == "-" => SourceKind::Raw,
        SourceKind::Auto if crate::video::looks_like_video(&cfg.producer.input) => {
            SourceKind::Video
        }
        SourceKind::Auto => SourceKind::Images,
        k => k,
    }
}

/// How a run reports while it goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Progress display.
    pub progress: Progress,
    /// Prometheus metrics to keep up to date (and serve).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// How often progress is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

fn shape_of(cfg: &Config) -> FrameShape {
    FrameShape {
        height: cfg.ring.height,
        width: cfg.ring.width,
        channels: cfg.ring.channels,
    }
}

fn ring_options(cfg: &Config) -> anyhow::Result<RingOptions> {
    Ok(RingOptions {
        mode: cfg.mode()?,
        wait: cfg.wait(),
        backpressure: cfg.ring.backpressure.policy(),
        max_queued: cfg.ring.max_queued,
        groups: cfg.ring.groups.clone(),
        group: cfg.consumer.group.clone(),
        latest: cfg.consumer.latest,
    })
}

struct Job {
    index: u64,
    slot: WriteSlot,
}

struct Done {
    index: u64,
    slot: WriteSlot,
    result: Result<Decoded, DecodeError>,
}

/// What a producer run did.
#[derive(Debug)]
pub struct ProducerReport {
    /// Counters and rates.
    pub summary: Summary,
    /// Whether every published frame was consumed before exit.
    pub drained: bool,
}

/// Runs a producer: decodes the inputs into the ring in order, signals end
/// of stream, waits for the consumers, removes the ring (unless `keep`).
pub fn run_producer(cfg: &Config, run: &RunOptions) -> anyhow::Result<ProducerReport> {
    cfg.validate()?;
    cfg.validate_space()?;
    let kind = source_kind(cfg);
    if kind != SourceKind::Images {
        return run_stream_producer(cfg, kind, run);
    }
    if cfg.producer.realtime {
        tracing::warn!("producer.realtime applies to video input; use producer.fps_limit to pace images");
    }
    let inputs = list_inputs(&cfg.producer.input, cfg.producer.recursive)?;
    if inputs.is_empty() {
        tracing::warn!(input = %cfg.producer.input, "the input holds no files");
    }
    let inputs: Arc<Vec<PathBuf>> = Arc::new(inputs);
    let n = inputs.len() as u64;
    let total = n * cfg.producer.loops as u64;
    let shape = shape_of(cfg);
    let mut producer = create_producer(cfg)?;
    tracing::info!(
        ring = %cfg.ring.name,
        slots = cfg.ring.slots,
        shape = %format!("{}x{}x{}", shape.height, shape.width, shape.channels),
        inputs = n,
        loops = cfg.producer.loops,
        "producer started"
    );
    // Rates are those of publication; the drain below is not counted.
    let result = produce(cfg, &mut producer, inputs, total, shape, run).map(|s| {
        s.finish_progress();
        s.summary()
    });
    let drained = end_stream(cfg, &mut producer, result.is_ok())?;
    let mut summary = result?;
    finish_summary(&mut summary, &producer);
    Ok(ProducerReport { summary, drained })
}

fn create_producer(cfg: &Config) -> anyhow::Result<Producer> {
    Producer::create(&cfg.ring.name, cfg.shape(), &ring_options(cfg)?)
        .with_context(|| format!("cannot create ring {:?}", cfg.ring.name))
}

/// Ends the stream; after a run that went well, waits for the consumers to
/// finish (returns whether they did). Removes the ring unless `keep`.
fn end_stream(cfg: &Config, producer: &mut Producer, ok: bool) -> anyhow::Result<bool> {
    producer.finish();
    let drain_timeout = (cfg.producer.drain_timeout_secs > 0.0)
        .then(|| Duration::from_secs_f64(cfg.producer.drain_timeout_secs));
    let drained = if ok {
        drain(producer, drain_timeout)?
    } else {
        false
    };
    if !cfg.producer.keep {
        if let Err(e) = producer.unlink() {
            tracing::warn!(error = %e, "could not remove the ring");
        }
    }
    Ok(drained)
}

fn finish_summary(summary: &mut Summary, producer: &Producer) {
    summary.redelivered = producer.redelivered();
    summary.dropped = producer.dropped();
    summary.groups = producer
        .group_reports()
        .into_iter()
        .map(|g| (g.name, g.dropped))
        .collect();
}

/// A producer over a stream of frames: video decoded by ffmpeg, or raw
/// frames. Each frame is read from the pipe straight into a free slot.
fn run_stream_producer(
    cfg: &Config,
    kind: SourceKind,
    run: &RunOptions,
) -> anyhow::Result<ProducerReport> {
    let shape = shape_of(cfg);
    let input = &cfg.producer.input;
    let mut ffmpeg = None;
    let mut raw = None;
    match kind {
        SourceKind::Video => {
            if cfg.producer.shape_policy == ShapePolicy::Reject {
                return Err(crate::config::ConfigError::Invalid {
                    key: "producer.shape_policy",
                    message: "\"reject\" cannot be used with video input: choose fit, fill or stretch".into(),
                }
                .into());
            }
            ffmpeg = Some(crate::video::FfmpegInput::spawn(
                &cfg.producer.ffmpeg,
                input,
                shape,
                cfg.producer.shape_policy,
                cfg.producer.realtime,
            )?);
        }
        _ => raw = Some(crate::video::RawInput::open(input)?),
    }
    let mut producer = create_producer(cfg)?;
    tracing::info!(
        ring = %cfg.ring.name,
        slots = cfg.ring.slots,
        shape = %format!("{}x{}x{}", shape.height, shape.width, shape.channels),
        input = %input,
        source = ?kind,
        "producer started"
    );
    let mut stats = Stats::new("producer", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    let mut pacer = Pacer::new(cfg.producer.fps_limit);
    let name = input.as_bytes();
    let outcome: anyhow::Result<()> = (|| {
        loop {
            if signals::stop_requested() {
                tracing::info!("stop requested: ending the stream");
                return Ok(());
            }
            let Some(mut slot) = producer.acquire(Duration::from_millis(100))? else {
                stats.tick_now();
                continue;
            };
            let got = match (&mut ffmpeg, &mut raw) {
                (Some(f), _) => f.read_frame(slot.data_mut()),
                (_, Some(r)) => r.read_frame(slot.data_mut()),
                _ => unreachable!("one source is open"),
            };
            match got {
                Ok(true) => {}
                Ok(false) => {
                    producer.discard(slot);
                    return Ok(());
                }
                Err(e) => {
                    producer.discard(slot);
                    return Err(e.into());
                }
            }
            pacer.wait();
            let bytes = slot.data().len();
            producer.publish(
                slot,
                &FrameMeta {
                    src_width: shape.width,
                    src_height: shape.height,
                    name,
                },
            )?;
            stats.frame(bytes, None);
            stats.set_dropped(producer.dropped());
            stats.set_slots_in_use(producer.segment().geometry().slots as usize - producer.free_slots());
            stats.tick();
        }
    })();
    let stopped = signals::stop_requested();
    let mut outcome = outcome;
    if let Some(mut f) = ffmpeg {
        if stopped || outcome.is_err() {
            f.kill();
        }
        let finished = f.finish(stopped || outcome.is_err());
        if outcome.is_ok() {
            if let Err(e) = finished {
                if stats.summary().frames == 0 {
                    outcome = Err(e.into());
                } else {
                    tracing::warn!(error = %e, "ffmpeg ended with an error; the frames it produced were published");
                }
            }
        }
    }
    stats.finish_progress();
    let mut summary = stats.summary();
    let drained = end_stream(cfg, &mut producer, outcome.is_ok())?;
    outcome?;
    finish_summary(&mut summary, &producer);
    Ok(ProducerReport { summary, drained })
}

fn drain(producer: &mut Producer, timeout: Option<Duration>) -> anyhow::Result<bool> {
    // A second signal while draining gives up waiting.
    let slice = Duration::from_millis(200);
    let start = std::time::Instant::now();
    loop {
        if producer.drain(Some(slice))? {
            return Ok(true);
        }
        if signals::received() >= 2 || timeout.is_some_and(|t| start.elapsed() >= t) {
            tracing::warn!(
                outstanding = producer.segment().geometry().slots as usize - producer.free_slots(),
                "stopped waiting for consumers; some frames were not consumed"
            );
            return Ok(false);
        }
    }
}

fn produce(
    cfg: &Config,
    producer: &mut Producer,
    inputs: Arc<Vec<PathBuf>>,
    total: u64,
    shape: FrameShape,
    run: &RunOptions,
) -> anyhow::Result<Stats> {
    let n = inputs.len() as u64;
    let mut stats = Stats::new("producer", PROGRESS_EVERY, run.progress, Some(total))
        .with_metrics(run.metrics.clone());
    let mut pacer = Pacer::new(cfg.producer.fps_limit);
    if n == 0 {
        return Ok(stats);
    }
    let threads = match cfg.producer.decode_threads {
        0 => std::thread::available_parallelism().map_or(1, |p| p.get()),
        t => t as usize,
    };
    tracing::debug!(
        threads,
        jpeg_decoder = ?cfg.producer.jpeg_decoder.resolve(),
        "decoding images"
    );
    let frame_bytes = shape.bytes() as u64;
    let use_cache = cfg.producer.loops > 1
        && cfg.producer.loop_cache_mb > 0
        && n * frame_bytes <= cfg.producer.loop_cache_mb << 20;
    // With a replay cache only the first pass is decoded.
    let decode_total = if use_cache { n } else { total };
    // Per input: its decoded frame, or why it was skipped.
    let mut cache: Vec<Result<(Vec<u8>, Decoded), &'static str>> = Vec::new();
    if use_cache {
        cache.resize_with(n as usize, || Err("unreadable"));
    }

    let max_in_flight = (threads * 2).min(cfg.ring.slots as usize).max(1);
    let (job_tx, job_rx) = bounded::<Job>(max_in_flight);
    let (done_tx, done_rx) = bounded::<Done>(max_in_flight);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (job_rx, done_tx, inputs) = (job_rx.clone(), done_tx.clone(), inputs.clone());
            let policy = cfg.producer.shape_policy;
            let jpeg = cfg.producer.jpeg_decoder;
            std::thread::spawn(move || {
                let mut decoder = Decoder::new(shape, policy).with_jpeg_decoder(jpeg);
                for mut job in job_rx {
                    let path = &inputs[(job.index % inputs.len() as u64) as usize];
                    let result = decoder.decode_file(path, job.slot.data_mut());
                    let done = Done {
                        index: job.index,
                        slot: job.slot,
                        result,
                    };
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(job_rx);
    drop(done_tx);

    // Results come back in any order; publish strictly in input order.
    let mut reorder: Vec<Option<Done>> = (0..max_in_flight).map(|_| None).collect();
    let (mut next_input, mut next_publish, mut in_flight) = (0u64, 0u64, 0usize);
    let mut dispatch_end = decode_total;
    let outcome: anyhow::Result<()> = (|| {
        loop {
            if signals::stop_requested() && dispatch_end > next_input {
                tracing::info!("stop requested: publishing the frames already decoding, then ending the stream");
                dispatch_end = next_input;
            }
            while let Some(done) = reorder[(next_publish % max_in_flight as u64) as usize].take() {
                in_flight -= 1;
                next_publish += 1;
                let i = (done.index % n) as usize;
                let path = &inputs[i];
                match done.result {
                    Ok(d) => {
                        if use_cache && done.index < n {
                            cache[i] = Ok((done.slot.data().to_vec(), d));
                        }
                        publish(producer, done.slot, d, path, &mut stats, &mut pacer)?;
                    }
                    Err(e) => {
                        tracing::warn!(input = %path.display(), reason = e.reason.as_str(), "skipping input: {}", e.detail);
                        stats.skip(e.reason.as_str());
                        producer.note_skipped();
                        if use_cache && done.index < n {
                            cache[i] = Err(e.reason.as_str());
                        }
                        producer.discard(done.slot);
                        stats.set_slots_in_use(
                            producer.segment().geometry().slots as usize - producer.free_slots(),
                        );
                    }
                }
                stats.tick();
            }
            if next_publish >= dispatch_end {
                break;
            }
            if next_input < dispatch_end && in_flight < max_in_flight {
                let wait = if in_flight == 0 {
                    Duration::from_millis(100)
                } else {
                    Duration::ZERO
                };
                if let Some(slot) = producer.acquire(wait)? {
                    job_tx
                        .send(Job {
                            index: next_input,
                            slot,
                        })
                        .map_err(|_| anyhow::anyhow!("decoder threads stopped"))?;
                    next_input += 1;
                    in_flight += 1;
                    continue;
                }
                if in_flight == 0 {
                    stats.tick_now();
                    continue;
                }
            }
            match done_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(done) => {
                    let k = (done.index % max_in_flight as u64) as usize;
                    reorder[k] = Some(done);
                }
                Err(RecvTimeoutError::Timeout) => stats.tick_now(),
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("decoder threads stopped"),
            }
        }
        Ok(())
    })();
    drop(job_tx);
    for w in workers {
        let _ = w.join();
    }
    // Slots still held by unfinished jobs go back to the pool.
    for done in reorder.into_iter().flatten().chain(done_rx.try_iter()) {
        producer.discard(done.slot);
    }
    outcome?;

    if use_cache && !signals::stop_requested() {
        replay(producer, &inputs, &cache, total - n, &mut stats, &mut pacer)?;
    }
    Ok(stats)
}

fn replay(
    producer: &mut Producer,
    inputs: &[PathBuf],
    cache: &[Result<(Vec<u8>, Decoded), &'static str>],
    frames: u64,
    stats: &mut Stats,
    pacer: &mut Pacer,
) -> anyhow::Result<()> {
    let n = inputs.len() as u64;
    for k in 0..frames {
        if signals::stop_requested() {
            break;
        }
        let i = (k % n) as usize;
        let (pixels, d) = match &cache[i] {
            Ok(frame) => frame,
            Err(reason) => {
                stats.skip(reason);
                producer.note_skipped();
                continue;
            }
        };
        let mut slot = loop {
            if let Some(s) = producer.acquire(Duration::from_millis(100))? {
                break s;
            }
            stats.tick_now();
            if signals::stop_requested() {
                return Ok(());
            }
        };
        slot.data_mut().copy_from_slice(pixels);
        publish(producer, slot, *d, &inputs[i], stats, pacer)?;
        stats.tick();
    }
    Ok(())
}

fn publish(
    producer: &mut Producer,
    slot: WriteSlot,
    d: Decoded,
    path: &std::path::Path,
    stats: &mut Stats,
    pacer: &mut Pacer,
) -> Result<u64, PoolError> {
    pacer.wait();
    let bytes = slot.data().len();
    let seq = producer.publish(
        slot,
        &FrameMeta {
            src_width: d.width,
            src_height: d.height,
            name: path.as_os_str().as_bytes(),
        },
    )?;
    stats.frame(bytes, None);
    stats.set_dropped(producer.dropped());
    stats.set_slots_in_use(producer.segment().geometry().slots as usize - producer.free_slots());
    Ok(seq)
}

/// How a consumer run ended.
#[derive(Debug)]
pub enum ConsumerEnd {
    /// End of stream, every frame consumed.
    EndOfStream,
    /// Stopped by a signal.
    Stopped,
    /// The producer died; every frame it published was consumed.
    ProducerGone {
        /// Its pid.
        pid: u32,
    },
}

/// What a consumer run did.
#[derive(Debug)]
pub struct ConsumerReport {
    /// Counters, rates, latency.
    pub summary: Summary,
    /// How it ended.
    pub end: ConsumerEnd,
    /// Checksum of every byte read (`--output null`).
    pub checksum: Option<u64>,
}

/// Runs a consumer: attaches to the ring (waiting for it), writes every
/// frame it takes to the output, returns at end of stream.
pub fn run_consumer(
    cfg: &Config,
    check_shape: bool,
    run: &RunOptions,
) -> anyhow::Result<ConsumerReport> {
    cfg.validate()?;
    let shape = shape_of(cfg);
    let expect = check_shape.then_some((shape.height, shape.width, shape.channels));
    let consumer = Consumer::attach_wait(
        &cfg.ring.name,
        expect,
        &ring_options(cfg)?,
        Duration::from_secs_f64(cfg.consumer.wait_timeout_secs),
    )
    .with_context(|| format!("cannot attach to ring {:?}", cfg.ring.name))?;
    let g = *consumer.segment().geometry();
    let shape = FrameShape {
        height: g.height,
        width: g.width,
        channels: g.channels,
    };
    tracing::info!(ring = %cfg.ring.name, consumer = consumer.index(), "consumer attached");
    let out = &cfg.consumer.output;
    let mut sink = if crate::video::is_video_output(out) {
        Sink::open_video(&cfg.producer.ffmpeg, out, shape, cfg.consumer.video_fps)?
    } else {
        Sink::open(out, cfg.consumer.format, cfg.consumer.jpeg_quality)?
    };
    let mut stats =
        Stats::new("consumer", PROGRESS_EVERY, run.progress, None).with_metrics(run.metrics.clone());
    let mut started = false;
    let hold = Duration::from_secs_f64(cfg.consumer.hold_ms / 1e3);
    let end = loop {
        if signals::stop_requested() {
            break ConsumerEnd::Stopped;
        }
        match consumer.take(Duration::from_millis(250))? {
            Take::Frame(frame) => {
                if !started {
                    started = true;
                    stats.restart_clock();
                }
                stats.set_slots_in_use(1);
                let info = *frame.info();
                let latency = monotonic_ns().saturating_sub(info.publish_ns);
                sink.write(info.seq, frame.data(), shape)
                    .with_context(|| format!("frame {}", info.seq))?;
                if hold > Duration::ZERO {
                    std::thread::sleep(hold);
                }
                drop(frame);
                stats.set_slots_in_use(0);
                stats.frame(shape.bytes(), Some(latency));
                if info.redeliveries > 0 {
                    stats.redelivery();
                }
                stats.set_dropped(consumer.group_dropped());
                stats.tick();
            }
            Take::Timeout => stats.tick_now(),
            Take::EndOfStream => break ConsumerEnd::EndOfStream,
            Take::ProducerGone { pid } => break ConsumerEnd::ProducerGone { pid },
        }
    };
    sink.finish()
        .with_context(|| format!("finishing output {out}"))?;
    stats.set_dropped(consumer.group_dropped());
    stats.finish_progress();
    let mut summary = stats.summary();
    summary
        .groups
        .insert(consumer.group_name().to_string(), summary.dropped);
    summary.latest_skipped = consumer.skipped();
    Ok(ConsumerReport {
        summary,
        end,
        checksum: sink.checksum(),
    })
}
