//! The producer program as a library function, [`run_producer`]: images
//! decoded by a pool of threads, or a stream (video through ffmpeg, raw
//! frames), published into a ring it creates; then the end of the stream
//! and the wait for the consumers. The binary parses flags into a
//! [`Config`] and calls it.

use super::config::{Config, ConfigError, SourceKind};
use super::stats::{Progress, RunOptions, Stats, Summary, PROGRESS_EVERY};
use crate::app::clock::realtime_ns;
use crate::app::handoff::{CloseOnDrop, Handoff, Pop};
use crate::app::signals;
use crate::media::decode::{
    faster_build_hint, DecodeBudget, DecodeError, Decoded, Decoder, ShapePolicy, StageTimes,
};
use crate::media::source::{list_inputs, read_ahead, SourceError};
use crate::media::video::{self, ReadFrame, StreamStart, VideoError};
use crate::media::FrameShape;
use anyhow::Context;
use framering_ring::{
    FailReason, FrameMeta, InputState, LoanError, Producer, PublishError, RingCorrupt, SlotReuse,
    WriteSlot,
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
pub fn source_kind(cfg: &Config) -> SourceKind {
    match cfg.producer.source {
        SourceKind::Auto if cfg.producer.input == "-" => SourceKind::Raw,
        SourceKind::Auto if crate::media::mcap::is_mcap(&cfg.producer.input) => SourceKind::Mcap,
        SourceKind::Auto if video::looks_like_video(&cfg.producer.input) => SourceKind::Video,
        SourceKind::Auto => SourceKind::Images,
        k => k,
    }
}

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
    /// Where its decode spent the time.
    stages: StageTimes,
}

/// Loans a slot, `None` on timeout.
pub(crate) fn loan(
    producer: &Producer,
    timeout: Duration,
) -> anyhow::Result<Option<WriteSlot<'_>>> {
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
    if kind == SourceKind::Mcap {
        // The binary replays MCAP with `app::mcap::run_mcap_producer`.
        anyhow::bail!("internal error: an MCAP input is replayed by app::mcap::run_mcap_producer");
    }
    if kind != SourceKind::Images {
        return run_stream_producer(cfg, kind, run);
    }
    if cfg.producer.realtime {
        tracing::warn!(
            "producer.realtime applies to video input; use producer.fps_limit to pace images"
        );
    }
    // Debug events mark the way to the first frame (time to first frame).
    tracing::debug!("listing inputs");
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
            "no image in {:?} has a size to give the ring (--input takes images: a file, a directory or a glob; a video: {}; an MCAP recording: .mcap; raw frames: -)",
            cfg.producer.input,
            video::VIDEO_INPUT_EXTENSIONS.join(", ")
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
    // One decode memory budget for every decoder thread.
    let budget = DecodeBudget::new(cfg.producer.decode_memory_mb << 20);
    let first = FirstImage::start(cfg, shape, &inputs, &budget);
    // The decoders write each frame over ~2 ms while the consumers read the
    // last ones whole: the slot read longest ago costs them the fewest
    // cache lines taken back from the consumers' cores (docs/design.md).
    let producer = create_producer(cfg, shape, None, SlotReuse::FirstFreed)?;
    tracing::info!(
        ring = %cfg.ring.name,
        slots = cfg.ring.slots,
        shape = %shape,
        inputs = n,
        loops = cfg.producer.loops,
        "producer started"
    );
    // Rates are those of publication; the drain below is not counted.
    let result = produce(cfg, &producer, (inputs, first), total, (shape, budget), run).map(|s| {
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
            return Err(ConfigError::Invalid {
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
pub(crate) fn create_producer(
    cfg: &Config,
    shape: FrameShape,
    frame_rate: Option<(u64, u64)>,
    reuse: SlotReuse,
) -> anyhow::Result<Producer> {
    let mut builder = ring_builder(cfg, shape, None)?.reuse(reuse);
    if let Some((num, den)) =
        frame_rate.and_then(|(n, d)| Some((u32::try_from(n).ok()?, u32::try_from(d).ok()?)))
    {
        builder = builder.frame_rate(num, den);
    }
    tracing::debug!("creating the ring");
    let producer = builder
        .create()
        .with_context(|| format!("cannot create ring {:?}", cfg.ring.name))?;
    tracing::debug!("ring created");
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
        match producer.wait_for_groups(n, Duration::from_millis(50)) {
            Ok(()) => {
                tracing::debug!("consumer groups joined");
                break;
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
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
pub(crate) fn fail_reason(e: &anyhow::Error) -> FailReason {
    for cause in e.chain() {
        if cause.is::<RingCorrupt>()
            || matches!(cause.downcast_ref(), Some(LoanError::Corrupt(_)))
            || matches!(cause.downcast_ref(), Some(PublishError::Corrupt(_)))
        {
            return FailReason::RingCorrupt;
        }
        if cause.is::<VideoError>()
            || cause.is::<SourceError>()
            || cause.is::<crate::media::mcap::McapError>()
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
    let reports = producer.groups();
    // A lossless group loses frames only when its last consumer leaves
    // (or its linger ends) with frames queued.
    summary.released = reports
        .iter()
        .filter(|g| g.dropped > 0 && !g.live)
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
                return Err(ConfigError::Invalid {
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
                return Err(SourceError::NotFound(input.clone()).into());
            }
            video::check_program(&cfg.producer.ffmpeg)?;
            let size_unset = cfg.frame_shape().is_none();
            let probe = video::probe_video(&cfg.producer.ffmpeg, input, size_unset);
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
            ffmpeg = Some(video::FfmpegInput::spawn(
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
            raw = Some(video::RawInput::open(input)?);
            let (sized, shape) = sized_ring(cfg, None, "")?;
            (sized, shape, None)
        }
        _ => {
            let r = raw.insert(video::RawInput::open(input)?);
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
                StreamStart::Stopped => {
                    tracing::info!("stop requested while waiting for input: no ring was created");
                    let stats = Stats::new("producer", PROGRESS_EVERY, Progress::Quiet, None);
                    return Ok(ProducerReport {
                        summary: stats.summary(),
                        drained: true,
                    });
                }
                StreamStart::Y4m {
                    width,
                    height,
                    frame_rate,
                    ..
                } => (Some((*width, *height)), *frame_rate),
                StreamStart::Raw => (None, None),
            };
            let (sized, shape) = sized_ring(cfg, size, "raw frames carry no size")?;
            r.check(shape)?;
            (sized, shape, rate)
        }
    };
    let cfg = &sized;
    cfg.validate_space()?;
    let producer = create_producer(cfg, shape, frame_rate, SlotReuse::LastFreed)?;
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
            producer.set_input_state(InputState::Waiting);
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
            producer.set_input_state(InputState::Reading);
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
        match producer.drain(slice) {
            Ok(()) => return Ok(true),
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e.into()),
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
pub(crate) fn note_blocked(stats: &mut Stats, producer: &Producer) {
    let first = producer.published() == 0 && producer.subscribed_groups() == 0;
    stats.set_blocked(blocked_on(producer), first);
}

/// Why a producer has no free slot, in a sentence: the groups holding
/// frames, and whether anyone consumes them.
fn blocked_on(producer: &Producer) -> String {
    let groups: Vec<String> = producer
        .groups()
        .into_iter()
        .filter(|g| g.unconsumed() > 0)
        .map(|g| match (g.members, g.lingering) {
            (0, Some(left)) => format!(
                "group {:?} has {} frames and no consumer (its last one died; kept {:.0} s more for a restart)",
                g.name,
                g.unconsumed(),
                left.as_secs_f64()
            ),
            (0, None) => format!(
                "group {:?} has {} frames and no consumer",
                g.name,
                g.unconsumed()
            ),
            (n, _) => format!(
                "group {:?} has {} frames and {n} consumer(s)",
                g.name,
                g.unconsumed()
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

/// The first input, decoded while the ring is created and its first
/// consumers come (no slot can be loaned before a group subscribes), into
/// memory of its own; copied into the first slot (that copy is counted in
/// its convert time).
struct FirstImage {
    /// Its pixels, and its decode but for the slot.
    decoding: std::thread::JoinHandle<(Vec<u8>, Early)>,
}

/// A decoded first image without its slot yet.
struct Early {
    captured: u64,
    result: Result<Decoded, DecodeError>,
    stages: StageTimes,
}

/// The largest frame decoded ahead ([`FirstImage`]): its buffer is outside
/// the decode memory budget (a 4K RGB frame is 24 MiB).
const FIRST_IMAGE_MAX_BYTES: usize = 32 << 20;

impl FirstImage {
    /// Starts decoding the first of `inputs`; None without inputs, for a
    /// frame larger than [`FIRST_IMAGE_MAX_BYTES`] (or without a thread).
    fn start(
        cfg: &Config,
        shape: FrameShape,
        inputs: &Arc<Vec<PathBuf>>,
        budget: &Arc<DecodeBudget>,
    ) -> Option<FirstImage> {
        if shape.bytes() > FIRST_IMAGE_MAX_BYTES {
            return None;
        }
        let path = inputs.first()?.clone();
        let mut decoder = Decoder::new(shape, cfg.producer.shape_policy)
            .with_jpeg_decoder(cfg.producer.jpeg_decoder)
            .with_budget(budget.clone());
        let decoding = std::thread::Builder::new()
            .name("first-image".into())
            .spawn(move || {
                let mut pixels = vec![0u8; shape.bytes()];
                let result = decoder.decode_file(&path, &mut pixels);
                let (stages, captured) = (decoder.stages(), realtime_ns());
                tracing::debug!(
                    read_us = stages.read_ns / 1000,
                    decode_us = (stages.decode_ns + stages.convert_ns) / 1000,
                    "first image decoded"
                );
                let early = Early {
                    captured,
                    result,
                    stages,
                };
                (pixels, early)
            })
            .ok()?;
        Some(FirstImage { decoding })
    }

    /// Waits for the decode and copies it into `slot`: the first input's
    /// [`Done`] but for its slot; None if the decoding thread failed (the
    /// input is then decoded like the others).
    fn finish(self, slot: &mut WriteSlot<'_>) -> Option<Early> {
        let (pixels, mut early) = self.decoding.join().ok()?;
        let stages = &mut early.stages;
        if early.result.is_ok() {
            let started = Instant::now();
            slot.pixels_mut().copy_from_slice(&pixels);
            stages.convert_ns += started.elapsed().as_nanos() as u64;
        }
        tracing::debug!("first image copied into its slot");
        Some(early)
    }
}

fn produce(
    cfg: &Config,
    producer: &Producer,
    (inputs, mut first): (Arc<Vec<PathBuf>>, Option<FirstImage>),
    total: u64,
    (shape, budget): (FrameShape, Arc<DecodeBudget>),
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
    if let Some(hint) = faster_build_hint(cfg.producer.jpeg_decoder, &inputs) {
        stats.stage_hint(hint);
    }
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

    // Slots loaned to the decoders at once (decoding, queued, or decoded
    // and waiting for their turn to be published): three per decoder, so a
    // decoder that finishes finds its next job queued instead of waiting
    // for this thread to publish and loan (2 per decoder left the 2 cores
    // idle 6-8 % of the time with a consumer reading every byte, 3 left
    // 3-5 %; docs/benchmarks.md).
    let max_in_flight = (threads * 3).min(cfg.ring.slots as usize).max(1);
    // Decoder threads fill loaned slots in place; they live in a scope
    // because a slot borrows its producer.
    // Both queues are declared before the scope: its threads borrow them.
    let jobs = Handoff::<Job<'_>>::with_capacity(max_in_flight);
    let dones = Handoff::<Done<'_>>::with_capacity(max_in_flight);
    let outcome = std::thread::scope(|scope| {
        // However this closure ends, the decoders stop: they take no more
        // jobs, and a frame they finish after that is dropped (its slot
        // handed back unpublished).
        let _close = (CloseOnDrop(&jobs), CloseOnDrop(&dones));
        let job_tx = jobs.sender();
        for _ in 0..threads {
            let (jobs, done_tx, inputs) = (&jobs, dones.sender(), inputs.clone());
            let budget = budget.clone();
            let policy = cfg.producer.shape_policy;
            let jpeg = cfg.producer.jpeg_decoder;
            scope.spawn(move || {
                let mut decoder = Decoder::new(shape, policy)
                    .with_jpeg_decoder(jpeg)
                    .with_budget(budget);
                while let Pop::Item(mut job) = jobs.pop(None) {
                    let path = &inputs[(job.index % inputs.len() as u64) as usize];
                    let result = decoder.decode_file(path, job.slot.pixels_mut());
                    if job.index == 0 {
                        let t = decoder.stages();
                        tracing::debug!(
                            read_us = t.read_ns / 1000,
                            decode_us = (t.decode_ns + t.convert_ns) / 1000,
                            "first image decoded"
                        );
                    }
                    let done = Done {
                        index: job.index,
                        slot: job.slot,
                        captured: realtime_ns(),
                        result,
                        stages: decoder.stages(),
                    };
                    if done_tx.push(done).is_err() {
                        break;
                    }
                }
            });
        }

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
                            let started = Instant::now();
                            publish(
                                producer,
                                done.slot,
                                (d, done.captured),
                                path,
                                &mut stats,
                                &mut pacer,
                            )?;
                            let publish_ns = started.elapsed().as_nanos() as u64;
                            if done.index == 0 {
                                tracing::debug!("first frame published");
                            }
                            stats.stages(done.stages, publish_ns, threads as u32);
                        }
                        Err(e) => {
                            stats.stages(done.stages, 0, threads as u32);
                            tracing::warn!(input = %path.display(), reason = e.reason.as_str(), "skipping input: {}", e.detail);
                            stats.skip(e.reason.as_str());
                            producer.count_skipped_input();
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
                    if let Some(mut slot) = loan(producer, wait)? {
                        if next_input == 0 {
                            tracing::debug!("first slot loaned");
                            if let Some(e) = first.take().and_then(|f| f.finish(&mut slot)) {
                                reorder[0] = Some(Done {
                                    index: 0,
                                    slot,
                                    captured: e.captured,
                                    result: e.result,
                                    stages: e.stages,
                                });
                                next_input += 1;
                                in_flight += 1;
                                stats.set_waiting(None);
                                continue;
                            }
                        }
                        job_tx
                            .push(Job {
                                index: next_input,
                                slot,
                            })
                            .map_err(|_| anyhow::anyhow!("decoder threads stopped"))?;
                        // The file twice as many places ahead as can be
                        // in flight: on its way into the page cache while
                        // these decode (a cold disk is not waited on).
                        let ahead = next_input + 2 * max_in_flight as u64;
                        if ahead < dispatch_end {
                            read_ahead(&inputs[(ahead % n) as usize]);
                        }
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
                match dones.pop(Some(Duration::from_millis(100))) {
                    Pop::Item(done) => {
                        let k = (done.index % max_in_flight as u64) as usize;
                        reorder[k] = Some(done);
                    }
                    Pop::Timeout => stats.tick_now(),
                    Pop::Closed => anyhow::bail!("decoder threads stopped"),
                }
            }
            Ok(())
        })();
        // The slots decoded but not published go back to the pool; `_close`
        // then stops the decoders.
        drop(reorder);
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
                producer.count_skipped_input();
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
