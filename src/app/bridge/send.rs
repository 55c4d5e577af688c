//! `framering bridge send`: a local ring's frames onto a zenoh key.

use super::wire::{FrameHeader, Geometry, Kind};
use crate::app::config::Config;
use crate::app::pipeline::{RunOptions, PROGRESS_EVERY};
use crate::app::stats::{Stats, Summary};
use anyhow::Context;
use framering_ring::{signals, Backpressure, Consumer, FrameLease, FrameShape, Take};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zenoh::bytes::ZBytes;
use zenoh::qos::{CongestionControl, Priority};
use zenoh::Wait;

/// How long a sender that ended its stream waits for the receivers to
/// have it all.
const END_WAIT: Duration = Duration::from_secs(5);
/// How long a live sender waits for the acknowledgement of the frame in
/// flight before it sends the next one anyway (a receiver of an older
/// version, a lost acknowledgement): the liveliness lease.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// How a sender ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEnd {
    /// The local ring ended its stream; the receivers were told.
    EndOfStream,
    /// Stopped by a signal.
    Stopped,
    /// The local producer died (pid).
    ProducerGone(u32),
    /// The local producer failed.
    ProducerFailed,
}

/// What a sender did.
#[derive(Debug)]
pub struct SendReport {
    /// Frames sent, rates; `dropped`: frames the live mode skipped.
    pub summary: Summary,
    /// How it ended.
    pub end: SendEnd,
}

/// Live mode's choice of frame when the link is slower than the source:
/// a frame that has waited in the ring for more than half the source's
/// frame interval while the previous send (put until a receiver's
/// acknowledgement) took longer than an interval is skipped for the next
/// one (due in less than half an interval), so that what is sent is as
/// young as the link allows.
#[derive(Debug, Default)]
struct Freshness {
    /// The previous frame taken: seq and publish time (monotonic ns).
    last: Option<(u64, u64)>,
    /// The source's frame interval, ns (smoothed).
    interval_ns: f64,
    /// When the last send started and how long it took, ns.
    send_start: u64,
    send_ns: u64,
}

impl Freshness {
    /// Whether to skip `info` (and notes it).
    fn stale(&mut self, info: &framering_ring::FrameInfo) -> bool {
        if let Some((seq, t)) = self.last {
            if info.seq > seq && info.publish_ns > t {
                let i = (info.publish_ns - t) as f64 / (info.seq - seq) as f64;
                self.interval_ns = if self.interval_ns == 0.0 {
                    i
                } else {
                    0.8 * self.interval_ns + 0.2 * i
                };
            }
        }
        self.last = Some((info.seq, info.publish_ns));
        let now = framering_ring::monotonic_ns();
        let waited = now.saturating_sub(info.publish_ns) as f64;
        let link_bound = self.interval_ns > 0.0 && self.send_ns as f64 > self.interval_ns;
        self.send_start = now;
        link_bound && waited > self.interval_ns / 2.0
    }

    /// The frame taken last was sent.
    fn sent(&mut self) {
        self.send_ns = framering_ring::monotonic_ns().saturating_sub(self.send_start);
    }
}

/// A zenoh payload that owns a frame's lease: the slot goes back to the ring
/// when zenoh drops the payload (after it has written it out), and the
/// pixels are never copied into a buffer of ours.
struct LeasePayload(FrameLease);

impl AsRef<[u8]> for LeasePayload {
    fn as_ref(&self) -> &[u8] {
        self.0.pixels()
    }
}

fn header(kind: Kind, lease: Option<&FrameLease>, shape: FrameShape) -> FrameHeader {
    match lease {
        Some(l) => {
            let info = l.info();
            FrameHeader {
                kind,
                seq: info.seq,
                capture_ns: info.capture_ns,
                pts_ns: info.pts_ns,
                shape,
                src_size: (info.src_width, info.src_height),
                source: info.source().to_vec(),
                user_meta: l.user_meta().to_vec(),
            }
        }
        None => FrameHeader {
            kind,
            seq: 0,
            capture_ns: framering_ring::realtime_ns(),
            pts_ns: None,
            shape,
            src_size: (0, 0),
            source: vec![],
            user_meta: vec![],
        },
    }
}

fn priority(p: super::args::ZPriority) -> Priority {
    use super::args::ZPriority as P;
    match p {
        P::RealTime => Priority::RealTime,
        P::InteractiveHigh => Priority::InteractiveHigh,
        P::InteractiveLow => Priority::InteractiveLow,
        P::DataHigh => Priority::DataHigh,
        P::Data => Priority::Data,
        P::DataLow => Priority::DataLow,
        P::Background => Priority::Background,
    }
}

/// Sends the frames of ring `ring` (joining `bridge.group`) on
/// `bridge.key` until its stream ends or a stop signal.
pub fn run_send(ring: &str, cfg: &Config, run: &RunOptions) -> anyhow::Result<SendReport> {
    let b = &cfg.bridge;
    b.validate()?;
    framering_ring::validate_ring_name(ring).map_err(|e| {
        crate::app::config::ConfigError::Invalid {
            key: "RING",
            message: e.to_string(),
        }
    })?;
    let mut builder = Consumer::builder(ring)
        .group(&b.group)
        .wait(cfg.wait())
        .wait_for_ring(Duration::from_secs_f64(cfg.consumer.wait_timeout_secs))
        .stop_when(signals::stop_requested);
    if b.live {
        // Never slow the local ring: the group drops its oldest frames, and
        // the sender always takes the newest.
        builder = builder
            .group_backpressure(Backpressure::DropOldest)
            .latest(true);
    }
    let consumer = match builder.attach() {
        Err(framering_ring::AttachError::Interrupted { .. }) => {
            let stats = Stats::new("bridge send", PROGRESS_EVERY, run.progress, None);
            return Ok(SendReport {
                summary: stats.summary(),
                end: SendEnd::Stopped,
            });
        }
        r => r.with_context(|| format!("cannot attach to ring {ring:?}"))?,
    };
    let shape = consumer.shape();
    let session = super::open_session(b)?;
    let zerr = |what: &'static str| move |e: zenoh::Error| anyhow::anyhow!("{what}: {e}");
    let geometry = Geometry {
        shape,
        slots: consumer.slots(),
        user_meta_bytes: consumer.user_meta_capacity() as u32,
    }
    .encode();
    let _queryable = session
        .declare_queryable(super::geometry_key(&b.key))
        .callback(move |query| {
            if let Err(e) = query
                .reply(query.key_expr().clone(), geometry.clone())
                .wait()
            {
                tracing::warn!(error = %e, "cannot answer a geometry query");
            }
        })
        .wait()
        .map_err(zerr("cannot serve the geometry"))?;
    let _token = session
        .liveliness()
        .declare_token(super::alive_key(&b.key))
        .wait()
        .map_err(zerr("cannot declare the liveliness token"))?;
    let congestion = match b.congestion {
        super::args::Congestion::Block => CongestionControl::Block,
        super::args::Congestion::Drop => CongestionControl::Drop,
    };
    let publisher = session
        .declare_publisher(b.key.clone())
        .congestion_control(congestion)
        .priority(priority(b.priority))
        .express(b.express)
        .wait()
        .map_err(zerr("cannot declare the publisher"))?;
    let matching = Arc::new(AtomicBool::new(false));
    let m = matching.clone();
    let _listener = publisher
        .matching_listener()
        .callback(move |s| m.store(s.matching(), Ordering::Release))
        .wait()
        .map_err(zerr("cannot watch for receivers"))?;
    tracing::info!(ring, key = %b.key, group = %b.group, shape = %shape, live = b.live, "bridge sender started");
    let mut stats = Stats::new("bridge send", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    // Live: the receivers' acknowledgements (see `ack_key`); the frame in
    // flight (its seq) and since when.
    let acks = if b.live {
        Some(
            session
                .declare_subscriber(super::ack_key(&b.key))
                .with(zenoh::handlers::FifoChannel::new(64))
                .wait()
                .map_err(zerr("cannot subscribe to acknowledgements"))?,
        )
    } else {
        None
    };
    let mut in_flight: Option<(u64, std::time::Instant)> = None;
    let mut started = false;
    let mut fresh = Freshness::default();
    // Live: frames skipped because they had waited (see `Freshness`).
    let mut stale = 0u64;
    let end = loop {
        if signals::stop_requested() {
            break SendEnd::Stopped;
        }
        // Frames published with nobody subscribed would be lost: wait (in
        // the ring: lossless groups keep them, live ones drop the oldest).
        if !matching.load(Ordering::Acquire) {
            stats.set_waiting(Some(format!("waiting for a receiver on {}", b.key)));
            stats.tick_now();
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        stats.set_waiting(None);
        if let (Some(acks), Some((seq, since))) = (&acks, in_flight) {
            // Live: the next frame is picked when the one in flight is in
            // a receiver's ring (the link is free), so it is the newest.
            let acked = match acks.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(sample)) => <[u8; 8]>::try_from(&*sample.payload().to_bytes())
                    .map(u64::from_le_bytes)
                    .is_ok_and(|a| a >= seq),
                Ok(None) => false,
                Err(_) => true,
            };
            if acked || since.elapsed() > ACK_WAIT {
                in_flight = None;
                fresh.sent();
            }
            continue;
        }
        match consumer.take(Duration::from_millis(100))? {
            Take::Frame(frame) => {
                if !started {
                    started = true;
                    stats.restart_clock();
                }
                if b.live && fresh.stale(frame.info()) {
                    // The link is the bottleneck and this frame waited: the
                    // next one, due soon, arrives younger.
                    stale += 1;
                    drop(frame);
                    continue;
                }
                let seq = frame.info().seq;
                let lease = frame.into_lease();
                let attachment = header(Kind::Frame, Some(&lease), shape).encode();
                let bytes = lease.pixels().len();
                let payload = ZBytes::from(bytes::Bytes::from_owner(LeasePayload(lease)));
                publisher
                    .put(payload)
                    .attachment(attachment)
                    .wait()
                    .map_err(zerr("cannot publish a frame"))?;
                if acks.is_some() {
                    in_flight = Some((seq, std::time::Instant::now()));
                } else {
                    fresh.sent();
                }
                stats.frame(bytes, None);
                stats.set_dropped(consumer.group_dropped() + consumer.skipped() + stale);
                stats.tick();
            }
            Take::EndOfStream => {
                publisher
                    .put(ZBytes::new())
                    .attachment(header(Kind::End, None, shape).encode())
                    .wait()
                    .map_err(zerr("cannot publish the end of the stream"))?;
                tracing::info!("the local ring ended its stream; receivers told");
                // Closing the session now would drop what zenoh has not
                // written yet: wait for the receivers to unsubscribe (they
                // do on the end of the stream), at most END_WAIT.
                let until = std::time::Instant::now() + END_WAIT;
                while matching.load(Ordering::Acquire)
                    && std::time::Instant::now() < until
                    && !signals::stop_requested()
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                break SendEnd::EndOfStream;
            }
            Take::ProducerGone { pid } => break SendEnd::ProducerGone(pid),
            Take::ProducerFailed { reason } => {
                tracing::error!(%reason, "the local producer failed");
                break SendEnd::ProducerFailed;
            }
        }
    };
    stats.set_dropped(consumer.group_dropped() + consumer.skipped() + stale);
    stats.finish_progress();
    let summary = stats.summary();
    drop(publisher);
    if let Err(e) = session.close().wait() {
        tracing::warn!(error = %e, "closing the zenoh session");
    }
    Ok(SendReport { summary, end })
}
