//! `framering bridge recv`: a zenoh key's frames into a local ring.

use super::wire::{FrameHeader, Geometry, Kind};
use crate::app::config::Config;
use crate::app::pipeline::{RunOptions, PROGRESS_EVERY};
use crate::app::stats::{Stats, Summary};
use framering_ring::{signals, FrameMeta, Producer};
use std::time::{Duration, Instant};
use zenoh::handlers::FifoChannel;
use zenoh::sample::{Sample, SampleKind};
use zenoh::Wait;

/// How a receiver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvEnd {
    /// The sender ended the stream.
    EndOfStream,
    /// Stopped by a signal.
    Stopped,
    /// The sender was lost and `exit_on_loss` ended the stream.
    SenderLost,
}

/// What a receiver did.
#[derive(Debug)]
pub struct RecvReport {
    /// Frames received; `skipped["remote_gap"]`: frames missing in the
    /// remote seq.
    pub summary: Summary,
    /// How it ended.
    pub end: RecvEnd,
    /// Frames missing in the remote seq.
    pub gaps: u64,
}

/// The skip reason gaps in the remote seq are counted under (summary,
/// metrics `skipped_inputs{reason="remote_gap"}`, `framering status`
/// "skipped").
pub const GAP: &str = "remote_gap";

/// A gap larger than this is a new stream (a sender restarted on a new
/// ring), not lost frames.
const MAX_GAP: u64 = 1 << 20;

fn zerr(what: &'static str) -> impl Fn(zenoh::Error) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {e}")
}

/// Asks the sender for its geometry until it answers (or the timeout, or a
/// stop signal: `None`).
fn geometry(
    session: &zenoh::Session,
    key: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<Geometry>> {
    let start = Instant::now();
    let gkey = super::geometry_key(key);
    let mut said = false;
    while !signals::stop_requested() {
        let replies = session
            .get(gkey.as_str())
            .timeout(Duration::from_millis(500))
            .wait()
            .map_err(zerr("cannot ask for the geometry"))?;
        while let Ok(reply) = replies.recv() {
            match reply.into_result() {
                Ok(sample) => match Geometry::decode(&sample.payload().to_bytes()) {
                    Ok(g) => return Ok(Some(g)),
                    Err(e) => tracing::warn!(error = %e, "ignoring a geometry reply"),
                },
                Err(e) => tracing::debug!(error = ?e, "geometry query error"),
            }
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            anyhow::bail!(
                "no sender answered on {gkey} within {:.1} s (bridge.geometry_timeout_secs)",
                start.elapsed().as_secs_f64()
            );
        }
        if !said {
            said = true;
            tracing::info!(key = %gkey, "waiting for a sender's geometry");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(None)
}

/// Receives the frames of `bridge.key` into the ring `cfg.ring.name`
/// (created with the sender's shape) until the sender ends the stream, a
/// stop signal, or (with `exit_on_loss`) the sender is lost.
pub fn run_recv(cfg: &Config, run: &RunOptions) -> anyhow::Result<RecvReport> {
    let b = &cfg.bridge;
    b.validate()?;
    cfg.validate()?;
    let session = super::open_session(b)?;
    let alive = session
        .liveliness()
        .declare_subscriber(super::alive_key(&b.key))
        .history(true)
        .with(FifoChannel::new(64))
        .wait()
        .map_err(zerr("cannot watch the sender's liveliness"))?;
    let mut stats = Stats::new("bridge recv", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    let timeout =
        (b.geometry_timeout_secs > 0.0).then(|| Duration::from_secs_f64(b.geometry_timeout_secs));
    let Some(geo) = geometry(&session, &b.key, timeout)? else {
        return Ok(RecvReport {
            summary: stats.summary(),
            end: RecvEnd::Stopped,
            gaps: 0,
        });
    };
    // Subscribed only now: the sender publishes as soon as a subscriber
    // matches, and frames the receiver does not read yet would hold up the
    // geometry reply behind them (a full link under congestion "block").
    let frames = session
        .declare_subscriber(b.key.as_str())
        .with(FifoChannel::new(b.rx_queue as usize))
        .wait()
        .map_err(zerr("cannot subscribe"))?;
    let shape = geo.shape;
    if let Some(free) = framering_ring::shm_free_bytes() {
        let need = framering_ring::segment_size(
            shape,
            cfg.ring.slots,
            cfg.ring.max_consumers,
            cfg.ring.max_groups,
            geo.user_meta_bytes,
        )?;
        anyhow::ensure!(
            need <= free,
            crate::app::config::ConfigError::Invalid {
                key: "ring.slots",
                message: format!(
                    "a ring of {} slots of {shape} needs {need} bytes but /dev/shm has {free} free: lower ring.slots or enlarge /dev/shm",
                    cfg.ring.slots
                ),
            }
        );
    }
    let producer = crate::app::pipeline::create_ring_with(cfg, shape, Some(geo.user_meta_bytes))?;
    tracing::info!(ring = %cfg.ring.name, key = %b.key, shape = %shape, slots = cfg.ring.slots, "bridge receiver started");
    let ack = session
        .declare_publisher(super::ack_key(&b.key))
        .congestion_control(zenoh::qos::CongestionControl::Drop)
        .express(true)
        .wait()
        .map_err(zerr("cannot declare the acknowledgement publisher"))?;
    let mut state = Receiver {
        producer: &producer,
        ack,
        shape,
        last_seq: None,
        gaps: 0,
        bad: 0,
        sender_alive: false,
        started: false,
    };
    let outcome = state.run(cfg, &alive, &frames, &mut stats);
    // Unsubscribing tells the sender this receiver is done (it closes its
    // session once no receiver is left, so its last messages are not lost).
    drop(frames);
    if let Err(e) = &outcome {
        producer.fail(framering_ring::FailReason::Other);
        tracing::error!(error = %e, "bridge receiver failed");
    }
    let end = outcome.as_ref().ok().copied();
    let drained =
        crate::app::pipeline::end_stream(cfg, &producer, end == Some(RecvEnd::EndOfStream))?;
    let end = outcome?;
    stats.finish_progress();
    let mut summary = stats.summary();
    crate::app::pipeline::finish_summary(&mut summary, &producer, drained);
    let gaps = state.gaps;
    drop(alive);
    if let Err(e) = session.close().wait() {
        tracing::warn!(error = %e, "closing the zenoh session");
    }
    Ok(RecvReport { summary, end, gaps })
}

type Sub = zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<Sample>>;

struct Receiver<'p> {
    producer: &'p Producer,
    /// Acknowledges each frame published (see `ack_key`).
    ack: zenoh::pubsub::Publisher<'static>,
    shape: framering_ring::FrameShape,
    last_seq: Option<u64>,
    gaps: u64,
    bad: u64,
    sender_alive: bool,
    started: bool,
}

impl Receiver<'_> {
    fn run(
        &mut self,
        cfg: &Config,
        alive: &Sub,
        frames: &Sub,
        stats: &mut Stats,
    ) -> anyhow::Result<RecvEnd> {
        let b = &cfg.bridge;
        loop {
            if signals::stop_requested() {
                return Ok(RecvEnd::Stopped);
            }
            while let Ok(Some(s)) = alive.try_recv() {
                match s.kind() {
                    SampleKind::Put => {
                        if !self.sender_alive {
                            tracing::info!(key = %b.key, "sender is alive");
                        }
                        self.sender_alive = true;
                        stats.set_waiting(None);
                    }
                    SampleKind::Delete => {
                        self.sender_alive = false;
                        tracing::warn!(key = %b.key, "sender lost");
                        if b.exit_on_loss {
                            return Ok(RecvEnd::SenderLost);
                        }
                        stats
                            .set_waiting(Some(format!("sender lost; waiting for it on {}", b.key)));
                        stats.tick_now();
                    }
                }
            }
            let sample = match frames.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    stats.tick_now();
                    continue;
                }
                Err(e) => anyhow::bail!("the zenoh subscriber closed: {e}"),
            };
            if let Some(end) = self.frame(&sample, stats)? {
                return Ok(end);
            }
        }
    }

    /// Publishes one received message; `Some` at the end of the stream.
    fn frame(&mut self, sample: &Sample, stats: &mut Stats) -> anyhow::Result<Option<RecvEnd>> {
        let header = match sample
            .attachment()
            .map(|a| FrameHeader::decode(&a.to_bytes()))
        {
            Some(Ok(h)) => h,
            Some(Err(e)) => return Ok(self.refuse(&e.to_string())),
            None => return Ok(self.refuse("no attachment")),
        };
        if header.kind == Kind::End {
            tracing::info!("the sender ended the stream");
            return Ok(Some(RecvEnd::EndOfStream));
        }
        if header.shape != self.shape {
            anyhow::bail!(
                "the sender's frames are now {}, the local ring's are {}: restart the receiver",
                header.shape,
                self.shape
            );
        }
        let payload = sample.payload();
        if payload.len() != self.shape.bytes() {
            return Ok(self.refuse(&format!(
                "payload of {} bytes for {} frames",
                payload.len(),
                self.shape
            )));
        }
        if !self.started {
            self.started = true;
            stats.restart_clock();
        }
        self.count_gap(header.seq, stats);
        let mut slot = loop {
            match self.producer.loan(Duration::from_millis(100)) {
                Ok(s) => break s,
                Err(e) if e.is_timeout() => {
                    if signals::stop_requested() {
                        return Ok(Some(RecvEnd::Stopped));
                    }
                    stats.set_waiting(Some("waiting for local consumers to free a slot".into()));
                    stats.tick_now();
                }
                Err(e) => return Err(e.into()),
            }
        };
        stats.set_waiting(None);
        // The one copy: zenoh's receive buffers into the slot.
        let dst = slot.pixels_mut();
        let mut at = 0;
        for part in payload.slices() {
            dst[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let meta_cap = self.producer.user_meta_capacity();
        let user_meta = &header.user_meta[..header.user_meta.len().min(meta_cap)];
        let mut meta = FrameMeta::new()
            .source(&header.source)
            .src_size(header.src_size.0, header.src_size.1)
            .capture_ns(header.capture_ns)
            .user_meta(user_meta);
        if let Some(pts) = header.pts_ns {
            meta = meta.pts_ns(pts);
        }
        slot.publish(&meta)?;
        if let Err(e) = self.ack.put(header.seq.to_le_bytes().to_vec()).wait() {
            tracing::debug!(error = %e, "cannot acknowledge a frame");
        }
        let age = framering_ring::realtime_ns().saturating_sub(header.capture_ns);
        stats.frame(self.shape.bytes(), Some(age));
        stats.set_slots_in_use(self.producer.slots() as usize - self.producer.free_slots());
        stats.tick();
        Ok(None)
    }

    /// Counts the frames missing between the last seq and `seq`.
    fn count_gap(&mut self, seq: u64, stats: &mut Stats) {
        if let Some(last) = self.last_seq {
            if seq <= last || seq - last > MAX_GAP {
                tracing::info!(last, seq, "the remote seq restarted (a new sender ring)");
            } else if seq - last > 1 {
                let missing = seq - last - 1;
                self.gaps += missing;
                tracing::debug!(last, seq, missing, "gap in the remote seq");
                for _ in 0..missing {
                    stats.skip(GAP);
                    self.producer.note_skipped();
                }
            }
        }
        self.last_seq = Some(seq);
    }

    /// Skips a message that is not a frame of ours (logged, counted).
    fn refuse(&mut self, why: &str) -> Option<RecvEnd> {
        self.bad += 1;
        if self.bad.is_power_of_two() {
            tracing::warn!(
                why,
                refused = self.bad,
                "ignoring a message that is not a frame of this stream"
            );
        }
        None
    }
}
