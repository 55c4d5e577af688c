//! The consumer program as a library function, [`run_consumer`]: attaches
//! to a ring (adopting its shape, or insisting on the one asked for), takes
//! every frame of its group and writes it to the output, keeping the frames
//! the output accepted until it has written them. The binary parses flags
//! into a [`Config`] and calls it.

use super::config::Config;
use super::exit::error_message;
use super::stats::{Progress, RunOptions, Stats, Summary, PROGRESS_EVERY};
use crate::app::clock::{monotonic_ns, realtime_ns};
use crate::app::signals;
use crate::media::sink::Sink;
use crate::media::video;
use crate::media::{Dtype, FrameShape};
use framering_ring::{AttachError, Backpressure, Consumer, FailReason, Frame, Take};
use std::time::{Duration, Instant};

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
    Output(anyhow::Error, Option<Box<Frame>>),
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
    frame: Frame,
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

    fn push(&mut self, frame: Frame, index: u64, latency: u64, bytes: usize) {
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
    let mcap = crate::media::mcap::is_mcap(&cfg.consumer.output);
    if mcap {
        let opts = super::mcap::recorder_options(cfg, 1);
        crate::media::mcap::Recorder::check(std::path::Path::new(&cfg.consumer.output), &opts)
            .map_err(crate::media::sink::SinkError::from)?;
    }
    let mut builder = Consumer::builder(&cfg.ring.name)
        .group(&cfg.consumer.group)
        .latest(cfg.consumer.latest)
        .wait(cfg.wait())
        .wait_for_ring(Duration::from_secs_f64(cfg.consumer.wait_timeout_secs))
        .cancel_with(signals::canceller());
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
        Err(AttachError::Cancelled { .. }) => {
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
    // Frames the output accepted but may not have written yet (a pipe's
    // reader, ffmpeg, an MCAP chunk not closed): kept, not handed back,
    // until it has; at most half the ring, so that the producer and other
    // groups keep slots.
    let mut held = Held::new((consumer.slots() as usize / 2).max(1));
    let mut sink = if mcap {
        // A chunk is closed before the consumer holds more than a few.
        let mut opts = super::mcap::recorder_options(cfg, held.max.min(4));
        // The source's frame rate, kept for the replay's ring.
        opts.frame_rate = consumer.frame_rate();
        Sink::open_mcap(out, shape, opts)?
    } else if video::is_video_output(out) {
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
    // The ring's publish times (CLOCK_MONOTONIC) as CLOCK_REALTIME, for
    // a recording.
    let realtime_offset = realtime_ns() as i128 - monotonic_ns() as i128;
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
                let stamp = crate::media::sink::FrameStamp {
                    seq: info.seq,
                    capture_ns: info.capture_ns,
                    publish_ns: (info.publish_ns as i128 + realtime_offset).max(0) as u64,
                    pts_ns: info.pts_ns,
                    source: info.source(),
                    src_width: info.src_width,
                    src_height: info.src_height,
                    user_meta: frame.user_meta(),
                };
                if let Err(e) = sink.write(&stamp, frame.pixels(), shape) {
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
            // A stop signal cancelled the wait.
            Err(e) if e.is_cancelled() => break Ok(ConsumerEnd::Stopped),
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
                error_message(&error)
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
        summary.output_error = Some(error_message(error));
    }
    Ok(ConsumerReport {
        summary,
        end,
        checksum: sink.checksum(),
    })
}
