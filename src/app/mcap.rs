//! MCAP recording and replay wired to the ring: the recorder's options
//! from the configuration, and the producer that replays a recording
//! (`--input rec.mcap`). The file format is `media::mcap`'s.

use super::config::{Config, ConfigError};
use super::producer::{
    create_producer, end_stream, fail_reason, finish_summary, loan, note_blocked, Pacer,
    ProducerReport,
};
use super::stats::{RunOptions, Stats, PROGRESS_EVERY};
use crate::app::signals;
use crate::media::mcap::{ImageCoding, RecorderOptions, Replay, ReplayOptions};
use crate::media::sink::OutputFormat;
use framering_ring::FrameMeta;
use std::path::Path;
use std::time::{Duration, Instant};

/// The recorder's options for `cfg`, closing a chunk after at most
/// `max_pending` frames (the frames a consumer may hold).
pub(crate) fn recorder_options(cfg: &Config, max_pending: usize) -> RecorderOptions {
    let c = &cfg.consumer;
    RecorderOptions {
        compression: c.mcap_compression,
        schema: c.mcap_schema,
        coding: c.mcap_image,
        jpeg_quality: c.jpeg_quality,
        fsync: c.fsync,
        overwrite: c.overwrite,
        split_bytes: c.split_mb.saturating_mul(1 << 20),
        split_after: Duration::from_secs_f64(c.split_secs),
        max_pending: max_pending.max(1),
        ring: cfg.ring.name.clone(),
        frame_rate: None,
    }
}

/// `--format` given with an MCAP output: compressed images of that format.
pub fn image_coding(format: OutputFormat) -> Result<ImageCoding, ConfigError> {
    match format {
        OutputFormat::Jpeg => Ok(ImageCoding::Jpeg),
        OutputFormat::Png => Ok(ImageCoding::Png),
        OutputFormat::Ppm => Err(ConfigError::Invalid {
            key: "consumer.format",
            message: "an MCAP recording holds raw, jpeg or png images, not ppm".into(),
        }),
    }
}

/// The replay options of `cfg`.
fn replay_options(cfg: &Config) -> ReplayOptions {
    ReplayOptions {
        topic: cfg.producer.mcap_topic.clone(),
        start_secs: cfg.producer.start_secs,
        end_secs: cfg.producer.end_secs,
    }
}

/// Sleeps until `due`, in short slices; false if a stop was requested.
fn sleep_until(due: Instant) -> bool {
    loop {
        if signals::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(20)));
    }
}

/// Replays an MCAP recording into a ring created with its frames' shape
/// and element type: the recorded pixels, source name, capture time, pts
/// and user metadata. `producer.realtime` paces by the recorded log times,
/// `producer.fps_limit` by a rate; `producer.loop` replays it again.
pub fn run_mcap_producer(cfg: &Config, run: &RunOptions) -> anyhow::Result<ProducerReport> {
    cfg.validate()?;
    let input = &cfg.producer.input;
    let path = Path::new(input);
    if std::fs::symlink_metadata(path).is_err() {
        return Err(crate::media::source::SourceError::NotFound(input.clone()).into());
    }
    let opts = replay_options(cfg);
    let mut replay = Replay::open(path, &opts)?;
    let shape = replay.shape();
    // The ring follows its input: the recording's shape, unless one was
    // configured (then they must agree).
    if let Some(configured) = cfg.frame_shape() {
        if configured != shape {
            return Err(ConfigError::Invalid {
                key: "ring.height",
                message: format!(
                    "the recording's frames are {shape}, the ring's configured {configured}: drop --height/--width/--channels/--dtype (a replay takes the recording's shape)"
                ),
            }
            .into());
        }
    }
    let mut sized = cfg.with_size(shape.width, shape.height)?;
    sized.ring.channels = shape.channels;
    sized.ring.dtype = shape.dtype;
    sized.validate()?;
    let cfg = &sized;
    cfg.validate_space()?;
    // The source's frame rate, as recorded (what a video input gives).
    let rate = replay
        .frame_rate()
        .map(|(num, den)| (u64::from(num), u64::from(den)));
    let producer = create_producer(cfg, shape, rate, framering_ring::SlotReuse::LastFreed)?;
    tracing::info!(
        ring = %cfg.ring.name,
        shape = %shape,
        input = %input,
        topic = %replay.topic(),
        "replaying an MCAP recording"
    );
    let mut stats = Stats::new("producer", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    let mut pacer = Pacer::new(cfg.producer.fps_limit);
    let outcome: anyhow::Result<()> = (|| {
        for pass in 0..cfg.producer.loops.max(1) {
            if pass > 0 {
                replay = Replay::open(path, &opts)?;
            }
            // --realtime: frame n is due at the pass's start plus its log
            // time's distance from the first frame's.
            let (started, first_log) = (Instant::now(), replay.first_log_ns());
            loop {
                if signals::stop_requested() {
                    tracing::info!("stop requested: ending the stream");
                    return Ok(());
                }
                let Some(mut slot) = loan(&producer, Duration::from_millis(100))? else {
                    note_blocked(&mut stats, &producer);
                    stats.tick_now();
                    continue;
                };
                let Some(frame) = replay.next_frame(slot.pixels_mut())? else {
                    break;
                };
                if cfg.producer.realtime {
                    let due =
                        started + Duration::from_nanos(frame.log_ns.saturating_sub(first_log));
                    if !sleep_until(due) {
                        return Ok(());
                    }
                }
                pacer.wait();
                let mut meta = FrameMeta::new()
                    .source(frame.source)
                    .src_size(frame.src_width, frame.src_height)
                    .capture_ns(frame.capture_ns)
                    .user_meta(frame.user_meta);
                if let Some(pts) = frame.pts_ns {
                    meta = meta.pts_ns(pts);
                }
                let bytes = shape.bytes();
                slot.publish(&meta).map_err(|e| {
                    let hint = if matches!(e, framering_ring::PublishError::UserMetaTooLong { .. }) {
                        " (the recording's user metadata is larger than the ring's: raise --user-meta-bytes)"
                    } else {
                        ""
                    };
                    anyhow::Error::new(e).context(format!("publishing a replayed frame{hint}"))
                })?;
                stats.frame(bytes, None);
                stats.set_dropped(producer.dropped());
                stats.set_slots_in_use(producer.slots() as usize - producer.free_slots());
                stats.tick();
            }
        }
        Ok(())
    })();
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
