//! The producer and consumer programs, as library functions: the binaries
//! parse flags into a [`Config`] and call these.

use super::config::{Config, SourceKind};
use super::stats::{Progress, Stats, Summary};
use crate::media::decode::{DecodeBudget, DecodeError, Decoded, Decoder, ShapePolicy};
use crate::media::sink::Sink;
use crate::media::source::list_inputs;
use crate::media::video::ReadFrame;
use crate::media::{Dtype, FrameShape};
use anyhow::Context;
use crossbeam::channel::{bounded, RecvTimeoutError};
use framering_ring::{
    monotonic_ns, realtime_ns, signals, AttachError, Backpressure, Consumer, FailReason, FrameMeta,
    LoanError, Producer, PublishError, RingCorrupt, Take, WriteSlot,
};
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

    /// Sleeps until the next frame is due; whether it paces at all (then
    /// the frame is released, "captured", now: a paced input plays a live
    /// source, whose frames are as old as their release, not their decode).
    pub fn wait(&mut self) -> bool {
        let Some(period) = self.period else {
            return false;
        };
        let now = Instant::now();
        let due = *self.next.get_or_insert(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        // Late by more than a period: restart the schedule from now.
        let base = if now > due + period { now } else { due };
        self.next = Some(base + period);
        true
    }
}

/// What the producer reads, once `producer.source = "auto"` is resolved.
fn source_kind(cfg: &Config) -> SourceKind {
    match cfg.producer.source {
        SourceKind::Auto if cfg.producer.input == "-" => SourceKind::Raw,
        SourceKind::Auto if crate::media::video::looks_like_video(&cfg.producer.input) => {
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
    pub metrics: Option<Arc<super::metrics::Metrics>>,
}

/// How often progress is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

struct Job<'p> {
    index: u64,
    slot: WriteSlot<'p>,
}

struct Done<'p> {
    index: u64,
    slot: WriteSlot<'p>,
    /// When it was decoded (CLOCK_REALTIME ns): its capture time.
    captured: u64,
    result: Result<Decoded, DecodeError>,
}

/// Loans a slot, `None` on timeout.
fn loan(producer: &Producer, timeout: Duration) -> anyhow::Result<Option<WriteSlot<'_>>> {
    match producer.loan(timeout) {
        Ok(slot) => Ok(Some(slot)),
        Err(e) if e.is_timeout() => Ok(None),
        Err(e) => Err(e.into()),
    }
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
    let kind = source_kind(cfg);
    if kind != SourceKind::Images {
        return run_stream_producer(cfg, kind, run);
    }
    if cfg.producer.realtime {
        tracing::warn!(
            "producer.realtime applies to video input; use producer.fps_limit to pace images"
        );
    }
    let inputs = list_inputs(&cfg.producer.input, cfg.producer.recursive)?;
    if inputs.is_empty() {
        tracing::warn!(input = %cfg.producer.input, "the input holds no files");
    }
    // Unless given, the ring's size is the first image's.
    let first = match cfg.frame_shape() {
        Some(_) => None,
        None => inputs
            .iter()
            .find_map(|p| crate::media::decode::image_size(p).map(|size| (size, p))),
    };
    let (sized, shape) = sized_ring(
        cfg,
        first.map(|(size, _)| size),
        &format!(
            "no image in {:?} has a size to give the ring",
            cfg.producer.input
        ),
    )?;
    let cfg = &sized;
    if let Some(((w, h), path)) = first {
        tracing::info!(image = %path.display(), "the ring takes the first image's size, {w}x{h}");
    }
    cfg.validate_space()?;
    let inputs: Arc<Vec<PathBuf>> = Arc::new(inputs);
    let n = inputs.len() as u64;
    let total = n * cfg.producer.loops as u64;
    let producer = create_producer(cfg, shape, None)?;
    tracing::info!(
        ring = %cfg.ring.name,
        slots = cfg.ring.slots,
        shape = %shape,
        inputs = n,
        loops = cfg.producer.loops,
        "producer started"
    );
    // Rates are those of publication; the drain below is not counted.
    let result = produce(cfg, &producer, inputs, total, shape, run).map(|s| {
        s.finish_progress();
        s.summary()
    });
    if let Err(e) = &result {
        producer.fail(fail_reason(e));
    }
    let drained = end_stream(cfg, &producer, result.is_ok())?;
    let mut summary = result?;
    finish_summary(&mut summary, &producer, drained);
    Ok(ProducerReport { summary, drained })
}

/// `cfg` with the ring's size given, and its frames' shape: the configured
/// one, else `input_size` (`(width, height)`) if the input told it; else an
/// error (exit 2) saying `why` the input did not.
fn sized_ring(
    cfg: &Config,
    input_size: Option<(u32, u32)>,
    why: &str,
) -> anyhow::Result<(Config, FrameShape)> {
    let sized = match (cfg.frame_shape(), input_size) {
        (Some(_), _) => cfg.clone(),
        (None, Some((w, h))) => cfg.with_size(w, h)?,
        (None, None) => {
            return Err(super::config::ConfigError::Invalid {
                key: "ring.height",
                message: format!(
                "{why}: give the ring's frame size, ring.height and ring.width (--height, --width)"
            ),
            }
            .into())
        }
    };
    let shape = sized.frame_shape().ok_or_else(|| {
        anyhow::anyhow!("internal error: a sized ring configuration without a shape")
    })?;
    Ok((sized, shape))
}

/// Creates the ring with frames of `shape` and the source's `frame_rate`
/// (when known), then waits for `producer.wait_groups`.
fn create_producer(
    cfg: &Config,
    shape: FrameShape,
    frame_rate: Option<(u64, u64)>,
) -> anyhow::Result<Producer> {
    let mut builder = ring_builder(cfg, shape, None)?;
    if let Some((num, den)) =
        frame_rate.and_then(|(n, d)| Some((u32::try_from(n).ok()?, u32::try_from(d).ok()?)))
    {
        builder = builder.frame_rate(num, den);
    }
    let producer = builder
        .create()
        .with_context(|| format!("cannot create ring {:?}", cfg.ring.name))?;
    wait_for_groups(cfg, &producer)?;
    Ok(producer)
}

/// Creates the ring of `cfg` with frames of `shape` (and `user_meta_bytes`
/// per frame, when given) instead of the configured ones: the bridge's
/// receiver, whose shape is the remote ring's.
#[cfg(feature = "bridge")]
pub(crate) fn create_ring_with(
    cfg: &Config,
    shape: framering_ring::FrameShape,
    user_meta_bytes: Option<u32>,
) -> anyhow::Result<Producer> {
    ring_builder(cfg, shape, user_meta_bytes)?
        .create()
        .with_context(|| format!("cannot create ring {:?}", cfg.ring.name))
}

/// The builder of `cfg`'s ring with frames of `shape`.
fn ring_builder(
    cfg: &Config,
    shape: framering_ring::FrameShape,
    user_meta_bytes: Option<u32>,
) -> anyhow::Result<framering_ring::ProducerBuilder> {
    let r = &cfg.ring;
    let mut builder = Producer::builder(&r.name)
        .shape(shape)
        .user_meta_bytes(user_meta_bytes.unwrap_or(r.user_meta_bytes))
        .slots(r.slots)
        .max_consumers(r.max_consumers)
        .max_groups(r.max_groups)
        .group_linger(Duration::from_secs_f64(r.group_linger_secs));
    for (name, policy) in cfg.declared_groups()? {
        builder = builder.group(&name, policy.unwrap_or(r.backpressure.policy()));
    }
    Ok(builder
        .backpressure(r.backpressure.policy())
        .max_queued(r.max_queued)
        .mode(cfg.mode()?)
        .wait(cfg.wait()))
}

/// `producer.wait_groups`: publishes nothing until that many groups have
/// joined (or a stop signal).
fn wait_for_groups(cfg: &Config, producer: &Producer) -> anyhow::Result<()> {
    let n = cfg.producer.wait_groups;
    if n == 0 {
        return Ok(());
    }
    tracing::info!(
        groups = n,
        "waiting for {n} consumer groups to join before publishing (producer.wait_groups)"
    );
    while !signals::stop_requested() {
        if producer.wait_for_groups(n, Duration::from_millis(50))? {
            break;
        }
    }
    Ok(())
}

/// Ends the stream; after a run that went well, waits for the consumers to
/// finish (returns whether they did): as long as it takes or
/// `producer.drain_timeout_secs`, and after a stop signal at most
/// `producer.stop_timeout_secs`. Removes the ring unless `keep`.
pub(crate) fn end_stream(cfg: &Config, producer: &Producer, ok: bool) -> anyhow::Result<bool> {
    producer.finish();
    let drain_timeout = (cfg.producer.drain_timeout_secs > 0.0)
        .then(|| Duration::from_secs_f64(cfg.producer.drain_timeout_secs));
    let stop_timeout = Duration::from_secs_f64(cfg.producer.stop_timeout_secs);
    // A drain that fails (a corrupt ring: marked failed) still removes it.
    let drained = if ok {
        drain(producer, drain_timeout, stop_timeout)
    } else {
        Ok(false)
    };
    if !cfg.producer.keep {
        if let Err(e) = producer.unlink() {
            tracing::warn!(error = %e, "could not remove the ring");
        }
    }
    drained
}

/// What a failed producer tells its consumers ([`Producer::fail`]).
fn fail_reason(e: &anyhow::Error) -> FailReason {
    for cause in e.chain() {
        if cause.is::<RingCorrupt>()
            || matches!(cause.downcast_ref(), Some(LoanError::Corrupt(_)))
            || matches!(cause.downcast_ref(), Some(PublishError::Corrupt(_)))
        {
            return FailReason::RingCorrupt;
        }
        if cause.is::<crate::media::video::VideoError>()
            || cause.is::<crate::media::source::SourceError>()
        {
            return FailReason::Input;
        }
    }
    FailReason::Other
}

pub(crate) fn finish_summary(summary: &mut Summary, producer: &Producer, drained: bool) {
    if !drained {
        summary.abandoned = outstanding(producer) as u64;
    }
    summary.redelivered = producer.redelivered();
    summary.dropped = producer.dropped();
    let reports = producer.group_reports();
    // A lossless group loses frames only when its last consumer leaves
    // (or its linger ends) with frames queued.
    summary.released = reports
        .iter()
        .filter(|g| g.dropped > 0 && g.policy == Backpressure::Block)
        .map(|g| (g.name.clone(), g.dropped))
        .collect();
    summary.groups = reports.into_iter().map(|g| (g.name, g.dropped)).collect();
}

/// A producer over a stream of frames: video decoded by ffmpeg, or raw
/// frames. Each frame is read from the pipe straight into a free slot.
fn run_stream_producer(
    cfg: &Config,
    kind: SourceKind,
    run: &RunOptions,
) -> anyhow::Result<ProducerReport> {
    let input = &cfg.producer.input;
    let mut ffmpeg = None;
    let mut raw = None;
    // The ring's frames: the configured shape, else the input's size.
    let (sized, shape, frame_rate) = match kind {
        SourceKind::Video => {
            if cfg.producer.shape_policy == ShapePolicy::Reject {
                return Err(super::config::ConfigError::Invalid {
                    key: "producer.shape_policy",
                    message:
                        "\"reject\" cannot be used with video input: choose fit, fill or stretch"
                            .into(),
                }
                .into());
            }
            // A local file that is not there is a bad input path (exit 2),
            // said before ffmpeg is started; URLs, protocols (`concat:`,
            // `file:`…), devices and image-sequence patterns are ffmpeg's to
            // judge.
            let protocol = input.split_once(':').is_some_and(|(p, _)| {
                p.len() > 1
                    && p.starts_with(|c: char| c.is_ascii_alphabetic())
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            });
            let local = !protocol && !input.contains('%') && input != "-";
            if local && std::fs::symlink_metadata(input).is_err() {
                return Err(crate::media::source::SourceError::NotFound(input.clone()).into());
            }
            crate::media::video::check_program(&cfg.producer.ffmpeg)?;
            let size_unset = cfg.frame_shape().is_none();
            let probe = crate::media::video::probe_video(&cfg.producer.ffmpeg, input, size_unset);
            let (sized, shape) = sized_ring(
                cfg,
                probe.size,
                &format!(
                    "ffprobe could not tell the size of {input:?} (a FIFO or stdin is not probed)"
                ),
            )?;
            if let (true, Some((w, h))) = (size_unset, probe.size) {
                tracing::info!("the ring takes the video's size, {w}x{h}");
            }
            ffmpeg = Some(crate::media::video::FfmpegInput::spawn(
                &cfg.producer.ffmpeg,
                input,
                shape,
                cfg.producer.shape_policy,
                cfg.producer.realtime,
                probe.frame_rate,
            )?);
            (sized, shape, probe.frame_rate)
        }
        // A configured size: the ring is created at once (consumers and
        // `status` see it while it waits for its input); a y4m stream's
        // size is checked at its first read, and its rate is not recorded.
        _ if cfg.frame_shape().is_some() => {
            raw = Some(crate::media::video::RawInput::open(input)?);
            let (sized, shape) = sized_ring(cfg, None, "")?;
            (sized, shape, None)
        }
        _ => {
            let r = raw.insert(crate::media::video::RawInput::open(input)?);
            // The stream's start tells whether it is y4m (with its size and
            // rate) before the ring is created; a stop while waiting for it
            // ends the run with nothing created.
            let mut said = false;
            let start = r.start(&mut |waited| {
                if waited >= Duration::from_millis(500) && !said {
                    tracing::info!(
                        "waiting for input on {} before creating the ring",
                        if input == "-" { "stdin" } else { input }
                    );
                    said = true;
                }
                signals::stop_requested()
            })?;
            let (size, rate) = match &start {
                crate::media::video::StreamStart::Stopped => {
                    tracing::info!("stop requested while waiting for input: no ring was created");
                    let stats = Stats::new("producer", PROGRESS_EVERY, Progress::Quiet, None);
                    return Ok(ProducerReport {
                        summary: stats.summary(),
                        drained: true,
                    });
                }
                crate::media::video::StreamStart::Y4m {
                    width,
                    height,
                    frame_rate,
                    ..
                } => (Some((*width, *height)), *frame_rate),
                crate::media::video::StreamStart::Raw => (None, None),
            };
            let (sized, shape) = sized_ring(cfg, size, "raw frames carry no size")?;
            r.check(shape)?;
            (sized, shape, rate)
        }
    };
    let cfg = &sized;
    cfg.validate_space()?;
    let producer = create_producer(cfg, shape, frame_rate)?;
    tracing::info!(
        ring = %cfg.ring.name,
        slots = cfg.ring.slots,
        shape = %shape,
        input = %input,
        source = ?kind,
        "producer started"
    );
    let mut stats = Stats::new("producer", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    let mut pacer = Pacer::new(cfg.producer.fps_limit);
    let name = input.as_bytes();
    // What a producer blocked reading its input waits for.
    let waiting_input = match &ffmpeg {
        Some(f) => format!("waiting for ffmpeg to decode a frame of {}", f.input()),
        None if input == "-" => "waiting for input on stdin".to_string(),
        None => format!("waiting for input on {input}"),
    };
    // Called while a read waits for data: says so once it has waited a
    // while (not between the frames of a live source), and stops the read
    // on a stop signal.
    let idle = |stats: &mut Stats, waited: Duration| {
        if waited >= Duration::from_millis(500) {
            stats.set_waiting(Some(waiting_input.clone()));
            producer.set_waiting_for_input(true);
            stats.tick_now();
        }
        signals::stop_requested()
    };
    let outcome: anyhow::Result<()> = (|| {
        loop {
            if signals::stop_requested() {
                tracing::info!("stop requested: ending the stream");
                return Ok(());
            }
            let Some(mut slot) = loan(&producer, Duration::from_millis(100))? else {
                // An input that failed is an error now, not when a consumer
                // comes (a producer with no consumer waits for the first).
                if let Some(e) = ffmpeg.as_mut().and_then(|f| f.failed()) {
                    return Err(e.into());
                }
                note_blocked(&mut stats, &producer);
                stats.tick_now();
                continue;
            };
            stats.set_waiting(None);
            let got = match (&mut ffmpeg, &mut raw) {
                (Some(f), _) => f.read_frame(slot.pixels_mut(), &mut |w| idle(&mut stats, w)),
                (_, Some(r)) => {
                    r.read_frame(slot.pixels_mut(), shape, &mut |w| idle(&mut stats, w))
                }
                _ => unreachable!("one source is open"),
            };
            stats.set_waiting(None);
            producer.set_waiting_for_input(false);
            // A slot not filled goes back to the pool when dropped.
            match got? {
                ReadFrame::Frame => {}
                ReadFrame::End => return Ok(()),
                ReadFrame::Stopped => {
                    tracing::info!("stop requested while waiting for input: ending the stream");
                    return Ok(());
                }
            }
            // Captured when read (or released by the pacer); video is
            // stamped with its presentation time when the source's frame
            // rate is known.
            let read = realtime_ns();
            let captured = if pacer.wait() { realtime_ns() } else { read };
            let mut meta = FrameMeta::new()
                .source(name)
                .src_size(shape.width, shape.height)
                .capture_ns(captured);
            if let Some(pts) = ffmpeg.as_ref().and_then(|f| f.last_pts_ns()) {
                meta = meta.pts_ns(pts);
            }
            let bytes = slot.pixels().len();
            slot.publish(&meta)?;
            stats.frame(bytes, None);
            stats.set_dropped(producer.dropped());
            stats.set_slots_in_use(producer.slots() as usize - producer.free_slots());
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
    if let Err(e) = &outcome {
        producer.fail(fail_reason(e));
    }
    let drained = end_stream(cfg, &producer, outcome.is_ok())?;
    outcome?;
    finish_summary(&mut summary, &producer, drained);
    Ok(ProducerReport { summary, drained })
}

/// Waits for the consumers to take every published frame: at most
/// `drain_timeout`, and at most `stop_timeout` from the first stop signal
/// (before or during the wait); a second signal gives up at once.
fn drain(
    producer: &Producer,
    drain_timeout: Option<Duration>,
    stop_timeout: Duration,
) -> anyhow::Result<bool> {
    let slice = Duration::from_millis(50);
    let start = std::time::Instant::now();
    let mut deadline = drain_timeout.map(|t| start + t);
    let mut stop_seen = false;
    let mut said = None;
    loop {
        if producer.drain(Some(slice))? {
            return Ok(true);
        }
        if signals::stop_requested() && !stop_seen {
            stop_seen = true;
            let stop = std::time::Instant::now() + stop_timeout;
            deadline = Some(deadline.map_or(stop, |d| d.min(stop)));
        }
        let now = std::time::Instant::now();
        if signals::received() >= 2 || deadline.is_some_and(|d| now >= d) {
            tracing::warn!(
                abandoned = outstanding(producer),
                "stopped waiting for consumers; frames not consumed are abandoned"
            );
            return Ok(false);
        }
        // Say what we wait for: at once after a stop signal, else after a
        // second; again whenever it changes.
        let waiting = waiting_for(
            producer,
            deadline.map(|d| d.saturating_duration_since(start)),
        );
        let due = stop_seen || start.elapsed() >= Duration::from_secs(1);
        if due && said.as_ref() != Some(&waiting) {
            tracing::info!("{waiting}");
            said = Some(waiting);
        }
    }
}

/// Frames published and not yet handed back by every group.
fn outstanding(producer: &Producer) -> usize {
    producer.slots() as usize - producer.free_slots()
}

/// Says why the producer has no free slot; a wait for a first consumer
/// (nothing published, no group yet) is not counted in its rates.
fn note_blocked(stats: &mut Stats, producer: &Producer) {
    let first = producer.published() == 0 && producer.subscribed_groups() == 0;
    stats.set_blocked(blocked_on(producer), first);
}

/// Why a producer has no free slot, in a sentence: the groups holding
/// frames, and whether anyone consumes them.
fn blocked_on(producer: &Producer) -> String {
    let groups: Vec<String> = producer
        .group_reports()
        .into_iter()
        .filter(|g| g.unconsumed > 0)
        .map(|g| match (g.consumers, g.lingering) {
            (0, Some(left)) => format!(
                "group {:?} has {} frames and no consumer (its last one died; kept {:.0} s more for a restart)",
                g.name,
                g.unconsumed,
                left.as_secs_f64()
            ),
            (0, None) => format!(
                "group {:?} has {} frames and no consumer",
                g.name, g.unconsumed
            ),
            (n, _) => format!(
                "group {:?} has {} frames and {n} consumer(s)",
                g.name, g.unconsumed
            ),
        })
        .collect();
    if groups.is_empty() {
        if producer.subscribed_groups() == 0 {
            "no consumer group yet: waiting for a first consumer to join".into()
        } else {
            "waiting for a free slot".into()
        }
    } else {
        groups.join("; ")
    }
}

/// What a draining producer waits for, in a sentence (`timeout`: when it
/// gives up, counted from the start of the wait).
fn waiting_for(producer: &Producer, timeout: Option<Duration>) -> String {
    let mut s = format!(
        "waiting for consumers to take {} published frame(s): {}",
        outstanding(producer),
        blocked_on(producer)
    );
    if let Some(t) = timeout {
        s += &format!(
            "; giving up {:.0} s after the end of the stream",
            t.as_secs_f64()
        );
    }
    if signals::stop_requested() {
        s += "; a second Ctrl-C/SIGTERM exits now";
    }
    s
}

fn produce(
    cfg: &Config,
    producer: &Producer,
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
    // One decode memory budget for every decoder thread.
    let budget = DecodeBudget::new(cfg.producer.decode_memory_mb << 20);
    // Decoder threads fill loaned slots in place; they live in a scope
    // because a slot borrows its producer.
    let outcome = std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<Job<'_>>(max_in_flight);
        let (done_tx, done_rx) = bounded::<Done<'_>>(max_in_flight);
        for _ in 0..threads {
            let (job_rx, done_tx, inputs) = (job_rx.clone(), done_tx.clone(), inputs.clone());
            let budget = budget.clone();
            let policy = cfg.producer.shape_policy;
            let jpeg = cfg.producer.jpeg_decoder;
            scope.spawn(move || {
                let mut decoder = Decoder::new(shape, policy)
                    .with_jpeg_decoder(jpeg)
                    .with_budget(budget);
                for mut job in job_rx {
                    let path = &inputs[(job.index % inputs.len() as u64) as usize];
                    let result = decoder.decode_file(path, job.slot.pixels_mut());
                    let done = Done {
                        index: job.index,
                        slot: job.slot,
                        captured: realtime_ns(),
                        result,
                    };
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(job_rx);
        drop(done_tx);

        // Results come back in any order; publish strictly in input order.
        let mut reorder: Vec<Option<Done<'_>>> = (0..max_in_flight).map(|_| None).collect();
        let (mut next_input, mut next_publish, mut in_flight) = (0u64, 0u64, 0usize);
        let mut dispatch_end = decode_total;
        let outcome: anyhow::Result<()> = (|| {
            loop {
                if signals::stop_requested() && dispatch_end > next_input {
                    tracing::info!("stop requested: publishing the frames already decoding, then ending the stream");
                    dispatch_end = next_input;
                }
                while let Some(done) =
                    reorder[(next_publish % max_in_flight as u64) as usize].take()
                {
                    in_flight -= 1;
                    next_publish += 1;
                    let i = (done.index % n) as usize;
                    let path = &inputs[i];
                    match done.result {
                        Ok(d) => {
                            if use_cache && done.index < n {
                                cache[i] = Ok((done.slot.pixels().to_vec(), d));
                            }
                            publish(
                                producer,
                                done.slot,
                                (d, done.captured),
                                path,
                                &mut stats,
                                &mut pacer,
                            )?;
                        }
                        Err(e) => {
                            tracing::warn!(input = %path.display(), reason = e.reason.as_str(), "skipping input: {}", e.detail);
                            stats.skip(e.reason.as_str());
                            producer.note_skipped();
                            if use_cache && done.index < n {
                                cache[i] = Err(e.reason.as_str());
                            }
                            // Dropping the slot hands it back unpublished.
                            drop(done.slot);
                            stats.set_slots_in_use(
                                producer.slots() as usize - producer.free_slots(),
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
                    if let Some(slot) = loan(producer, wait)? {
                        job_tx
                            .send(Job {
                                index: next_input,
                                slot,
                            })
                            .map_err(|_| anyhow::anyhow!("decoder threads stopped"))?;
                        next_input += 1;
                        in_flight += 1;
                        stats.set_waiting(None);
                        continue;
                    }
                    if in_flight == 0 {
                        note_blocked(&mut stats, producer);
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
        // The decoders stop once the job queue closes; slots of unfinished
        // jobs go back to the pool as they drop.
        drop(job_tx);
        drop(reorder);
        drop(done_rx);
        outcome
    });
    outcome?;

    if use_cache && !signals::stop_requested() {
        replay(producer, &inputs, &cache, total - n, &mut stats, &mut pacer)?;
    }
    Ok(stats)
}

fn replay(
    producer: &Producer,
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
            if let Some(s) = loan(producer, Duration::from_millis(100))? {
                stats.set_waiting(None);
                break s;
            }
            note_blocked(stats, producer);
            stats.tick_now();
            if signals::stop_requested() {
                return Ok(());
            }
        };
        slot.pixels_mut().copy_from_slice(pixels);
        publish(
            producer,
            slot,
            (*d, realtime_ns()),
            &inputs[i],
            stats,
            pacer,
        )?;
        stats.tick();
    }
    Ok(())
}

fn publish(
    producer: &Producer,
    slot: WriteSlot<'_>,
    (d, captured): (Decoded, u64),
    path: &std::path::Path,
    stats: &mut Stats,
    pacer: &mut Pacer,
) -> Result<u64, PublishError> {
    let captured = if pacer.wait() {
        realtime_ns()
    } else {
        captured
    };
    let bytes = slot.pixels().len();
    let seq = slot.publish(
        &FrameMeta::new()
            .source(path.as_os_str().as_bytes())
            .src_size(d.width, d.height)
            .capture_ns(captured),
    )?;
    stats.frame(bytes, None);
    stats.set_dropped(producer.dropped());
    stats.set_slots_in_use(producer.slots() as usize - producer.free_slots());
    Ok(seq)
}

/// The frame rate of a video output when neither `consumer.video_fps` nor
/// the ring gives one.
pub const DEFAULT_VIDEO_FPS: f64 = 25.0;

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
    /// The producer failed (it marked the ring failed); every frame it
    /// published that could be taken was consumed.
    ProducerFailed {
        /// Why, as it said.
        reason: FailReason,
    },
    /// The output failed: the frames not written were handed back
    /// unconsumed, for the group's next consumer.
    OutputFailed {
        /// Why (names the output and the OS error).
        error: anyhow::Error,
    },
}

/// Why a consumer's loop stopped early.
enum Failure {
    /// The output failed, with the frame being written if any.
    Output(anyhow::Error, Option<Box<framering_ring::Frame>>),
    /// The ring failed.
    Ring(anyhow::Error),
}

/// How long a consumer waits for its output to write a frame it holds
/// before handing it back anyway (a pipe's reader that reads in large
/// blocks may wait for more frames; after one such wait it no longer
/// waits).
const DURABLE_WAIT: Duration = Duration::from_secs(2);

/// A frame the output accepted, kept until it is written.
struct HeldFrame {
    frame: framering_ring::Frame,
    /// Its index among the frames the output accepted.
    index: u64,
    latency: u64,
    bytes: usize,
}

/// The frames a consumer keeps until its output has written them (see
/// [`Sink::durable`]), oldest first.
struct Held {
    frames: std::collections::VecDeque<HeldFrame>,
    max: usize,
    /// Still waiting for the output to catch up when `max` are held.
    patient: bool,
    /// Frames handed back before their output confirmed them.
    unconfirmed: u64,
}

impl Held {
    fn new(max: usize) -> Self {
        Held {
            frames: Default::default(),
            max,
            patient: true,
            unconfirmed: 0,
        }
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn push(&mut self, frame: framering_ring::Frame, index: u64, latency: u64, bytes: usize) {
        self.frames.push_back(HeldFrame {
            frame,
            index,
            latency,
            bytes,
        });
    }

    /// Hands the oldest frame back as consumed.
    fn consume_oldest(&mut self, stats: &mut Stats) {
        if let Some(h) = self.frames.pop_front() {
            let redelivered = h.frame.info().redeliveries > 0;
            drop(h.frame);
            stats.frame(h.bytes, Some(h.latency));
            if redelivered {
                stats.redelivery();
            }
        }
    }

    /// Hands back, as consumed, the frames the output has written.
    fn release_durable(&mut self, sink: &mut Sink, stats: &mut Stats) -> anyhow::Result<()> {
        let durable = sink.durable()?;
        while self.frames.front().is_some_and(|h| h.index < durable) {
            self.consume_oldest(stats);
        }
        Ok(())
    }

    /// Makes room to hold one more frame: waits (up to [`DURABLE_WAIT`])
    /// for the output to write the oldest, else hands it back anyway.
    fn make_room(&mut self, sink: &mut Sink, stats: &mut Stats) -> anyhow::Result<()> {
        self.release_durable(sink, stats)?;
        if self.frames.len() < self.max {
            return Ok(());
        }
        if self.patient {
            let until = Instant::now() + DURABLE_WAIT;
            while self.frames.len() >= self.max && Instant::now() < until {
                if signals::stop_requested() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
                self.release_durable(sink, stats)?;
            }
            if self.frames.len() >= self.max {
                self.patient = false;
                tracing::info!(
                    "the output did not write the frames it accepted within {} s; handing them back without waiting from now on",
                    DURABLE_WAIT.as_secs()
                );
            }
        }
        while self.frames.len() >= self.max {
            self.unconfirmed += 1;
            self.consume_oldest(stats);
        }
        Ok(())
    }

    /// The output finished: every frame held is written.
    fn release_all(&mut self, stats: &mut Stats) {
        while !self.frames.is_empty() {
            self.consume_oldest(stats);
        }
    }

    /// The output failed with its first `durable` frames written: hands
    /// those back as consumed and the others unconsumed. Returns how many
    /// went back unconsumed and how many consumed.
    fn give_back_after(&mut self, durable: u64, stats: &mut Stats) -> (u64, u64) {
        let (mut back, mut consumed) = (0, 0);
        while let Some(h) = self.frames.front() {
            if h.index < durable {
                self.consume_oldest(stats);
                consumed += 1;
            } else if let Some(h) = self.frames.pop_front() {
                h.frame.give_back();
                back += 1;
            }
        }
        (back, consumed)
    }
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

/// The frame shape a consumer insists on: the dimensions and element type
/// the user gave explicitly (on the command line). Those left `None` are
/// the ring's, so a consumer with none adopts whatever shape and dtype the
/// ring has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShapeDemand {
    /// Rows asked for.
    pub height: Option<u32>,
    /// Columns asked for.
    pub width: Option<u32>,
    /// Channels asked for.
    pub channels: Option<u32>,
    /// Element type asked for.
    pub dtype: Option<Dtype>,
}

impl ShapeDemand {
    /// The ring crate's form: 0 for a dimension left to the ring; `None`
    /// when nothing is asked.
    fn expected(&self) -> Option<FrameShape> {
        (*self != Self::default()).then(|| {
            FrameShape::new(
                self.height.unwrap_or(0),
                self.width.unwrap_or(0),
                self.channels.unwrap_or(0),
            )
            .with_dtype(self.dtype.unwrap_or_default())
        })
    }
}

/// Runs a consumer: attaches to the ring (waiting for it; adopting its
/// shape except for the dimensions `demand` insists on), writes every frame
/// it takes to the output, returns at end of stream.
pub fn run_consumer(
    cfg: &Config,
    demand: ShapeDemand,
    run: &RunOptions,
) -> anyhow::Result<ConsumerReport> {
    cfg.validate()?;
    // The output is checked before any frame is taken (a frame taken for an
    // output that cannot be written would be lost to the group).
    Sink::check(&cfg.consumer.output, &cfg.consumer.ffmpeg)?;
    let mut builder = Consumer::builder(&cfg.ring.name)
        .group(&cfg.consumer.group)
        .latest(cfg.consumer.latest)
        .wait(cfg.wait())
        .wait_for_ring(Duration::from_secs_f64(cfg.consumer.wait_timeout_secs))
        .stop_when(signals::stop_requested);
    if cfg.consumer.live {
        builder = builder.group_backpressure(Backpressure::DropOldest);
    }
    if let Some(shape) = demand.expected() {
        builder = builder.expect_shape(shape);
        if demand.dtype.is_none() {
            builder = builder.any_dtype();
        }
    }
    let consumer = match builder.attach() {
        Err(AttachError::Interrupted { .. }) => {
            // Ctrl-C/SIGTERM before the ring appeared: a clean stop.
            let stats = Stats::new("consumer", PROGRESS_EVERY, Progress::Quiet, None);
            return Ok(ConsumerReport {
                summary: stats.summary(),
                end: ConsumerEnd::Stopped,
                checksum: None,
            });
        }
        r => r,
    };
    let consumer = consumer.map_err(|e| {
        let hint = if matches!(e, AttachError::ShapeMismatch { .. }) {
            " (--height/--width/--channels/--dtype insist on a shape: drop them, or pass --any-shape, to adopt the ring's)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("cannot attach to ring {:?}{hint}", cfg.ring.name))
    })?;
    let shape = consumer.shape();
    tracing::info!(ring = %cfg.ring.name, consumer = consumer.index(), shape = %shape, "consumer attached");
    let out = &cfg.consumer.output;
    // Before any frame is taken: an output that cannot hold the ring's
    // element type (float32 into images or video) is a usage error.
    Sink::check_dtype(out, cfg.consumer.format, shape)?;
    let mut sink = if crate::media::video::is_video_output(out) {
        // The rate asked for, else the source's as the producer recorded it.
        let fps = match (cfg.consumer.video_fps, consumer.frame_rate()) {
            (Some(fps), _) => fps,
            (None, Some((num, den))) => f64::from(num) / f64::from(den),
            (None, None) => DEFAULT_VIDEO_FPS,
        };
        tracing::info!(output = %out, fps, "writing video");
        Sink::open_video(&cfg.consumer.ffmpeg, out, shape, fps)?
    } else {
        Sink::open(out, cfg.consumer.format, cfg.consumer.jpeg_quality)?
    };
    let mut stats = Stats::new("consumer", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    let mut started = false;
    let hold = Duration::from_secs_f64(cfg.consumer.hold_ms / 1e3);
    // Frames the output accepted but may not have written yet (a pipe's
    // reader, ffmpeg): kept, not handed back, until it has; at most half
    // the ring, so that the producer and other groups keep slots.
    let mut held = Held::new((consumer.slots() as usize / 2).max(1));
    let outcome: Result<ConsumerEnd, Failure> = loop {
        if signals::stop_requested() {
            break Ok(ConsumerEnd::Stopped);
        }
        if let Err(e) = held.make_room(&mut sink, &mut stats) {
            break Err(Failure::Output(e, None));
        }
        // Short slices: a stop signal is seen within ~20 ms in every state.
        match consumer.take(Duration::from_millis(20)) {
            Ok(Take::Frame(frame)) => {
                if !started {
                    started = true;
                    stats.restart_clock();
                    // The group's policy is its creator's: say so when ours
                    // was not taken.
                    if cfg.consumer.live
                        && consumer.group_backpressure() == Some(Backpressure::Block)
                    {
                        tracing::warn!(
                            group = %cfg.consumer.group,
                            "--live ignored: the group exists and is lossless (declare it NAME:live, or use another group)"
                        );
                    }
                }
                stats.set_slots_in_use(held.len() + 1);
                let info = *frame.info();
                let latency = monotonic_ns().saturating_sub(info.publish_ns);
                if let Err(e) = sink.write(info.seq, frame.pixels(), shape) {
                    break Err(Failure::Output(
                        anyhow::Error::new(e).context(format!("frame {}", info.seq)),
                        // Boxed: a failure is rare, a frame is large.
                        Some(Box::new(frame)),
                    ));
                }
                if hold > Duration::ZERO {
                    std::thread::sleep(hold);
                }
                held.push(frame, sink.accepted() - 1, latency, shape.bytes());
                if let Err(e) = held.release_durable(&mut sink, &mut stats) {
                    break Err(Failure::Output(e, None));
                }
                stats.set_slots_in_use(held.len());
                stats.set_dropped(consumer.group_dropped());
                stats.tick();
            }
            Err(e) if e.is_timeout() => {
                if let Err(e) = held.release_durable(&mut sink, &mut stats) {
                    break Err(Failure::Output(e, None));
                }
                stats.tick_now()
            }
            Err(e) => break Err(Failure::Ring(e.into())),
            Ok(Take::EndOfStream) => break Ok(ConsumerEnd::EndOfStream),
            Ok(Take::ProducerGone { pid }) => break Ok(ConsumerEnd::ProducerGone { pid }),
            Ok(Take::ProducerFailed { reason }) => {
                break Ok(ConsumerEnd::ProducerFailed { reason })
            }
        }
    };
    // Finish the output; what it accepted is then written (consumed), or,
    // if it failed, handed back unconsumed unless it is in the output.
    let (end, failed, ring_error) = match outcome {
        Ok(end) => match sink.finish() {
            Ok(()) => (end, None, None),
            Err(e) => (end, Some((anyhow::Error::new(e), None)), None),
        },
        Err(Failure::Ring(e)) => match sink.finish() {
            Ok(()) => (ConsumerEnd::Stopped, None, Some(e)),
            Err(f) => (
                ConsumerEnd::Stopped,
                Some((anyhow::Error::new(f), None)),
                Some(e),
            ),
        },
        Err(Failure::Output(e, frame)) => (ConsumerEnd::Stopped, Some((e, frame)), None),
    };
    let mut given_back = 0;
    let mut lost = 0;
    let end = match failed {
        None => {
            held.release_all(&mut stats);
            end
        }
        Some((error, frame)) => {
            let durable = sink.abandon();
            if let Some(frame) = frame {
                frame.give_back();
                given_back += 1;
            }
            let (back, consumed) = held.give_back_after(durable, &mut stats);
            given_back += back;
            lost = sink.accepted() - durable.min(sink.accepted()) - back;
            let _ = consumed;
            let error = error.context(format!("output {out}"));
            tracing::error!(
                output = %out,
                given_back,
                lost,
                "the output failed: {}; the frames not written were handed back unconsumed",
                super::cli::error_message(&error)
            );
            ConsumerEnd::OutputFailed { error }
        }
    };
    if let Some(e) = ring_error {
        return Err(e);
    }
    // A frame handed back last (held until its output wrote it) whose
    // return could not be pushed: the ring is corrupt.
    consumer.check_returns()?;
    stats.set_dropped(consumer.group_dropped());
    stats.finish_progress();
    let mut summary = stats.summary();
    summary
        .groups
        .insert(consumer.group().to_string(), summary.dropped);
    summary.latest_skipped = consumer.skipped();
    summary.given_back = given_back;
    summary.lost = lost;
    if let ConsumerEnd::OutputFailed { error } = &end {
        summary.output_error = Some(super::cli::error_message(error));
    }
    Ok(ConsumerReport {
        summary,
        end,
        checksum: sink.checksum(),
    })
}
