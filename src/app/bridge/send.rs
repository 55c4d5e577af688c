//! `framering bridge send`: a local ring's frames onto a zenoh key.

use super::window::LiveWindow;
use super::wire::{Ack, FrameHeader, Geometry, Kind};
use crate::app::config::Config;
use crate::app::signals;
use crate::app::stats::{RunOptions, Stats, Summary, PROGRESS_EVERY};
use anyhow::Context;
use framering_ring::{Backpressure, Consumer, Frame, FrameShape, Take};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zenoh::bytes::ZBytes;
use zenoh::qos::{CongestionControl, Priority};
use zenoh::sample::{SampleKind, SourceInfo};
use zenoh::Wait;

/// How long a sender that ended its stream waits for the receivers to
/// have it all.
const END_WAIT: Duration = Duration::from_secs(5);
/// How long a live sender waits for the acknowledgement of a frame in
/// flight before it lets it go (a receiver of an older version, a lost
/// acknowledgement): the liveliness lease.
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
/// frame interval while the window last stayed full for longer than an
/// interval (the link, not the source, sets the pace) is skipped for the
/// next one (due in less than half an interval), so that what is sent is
/// as young as the link allows.
#[derive(Debug, Default)]
struct Freshness {
    /// The previous frame taken: seq and publish time (monotonic ns).
    last: Option<(u64, u64)>,
    /// The source's frame interval, ns (smoothed).
    interval_ns: f64,
    /// When the last frame was taken, and how long the window then stayed
    /// full, ns.
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
        let now = crate::app::clock::monotonic_ns();
        let waited = now.saturating_sub(info.publish_ns) as f64;
        let link_bound = self.interval_ns > 0.0 && self.send_ns as f64 > self.interval_ns;
        self.send_start = now;
        link_bound && waited > self.interval_ns / 2.0
    }

    /// The window has room again after the frame taken last.
    fn sent(&mut self) {
        self.send_ns = crate::app::clock::monotonic_ns().saturating_sub(self.send_start);
    }
}

/// A zenoh payload that owns a frame: the slot goes back to the ring
/// when the last clone of its `Bytes` is dropped (zenoh's, once written out,
/// and the sender's, once every receiver has the frame), and the pixels are
/// never copied into a buffer of ours.
struct FramePayload(Frame);

impl AsRef<[u8]> for FramePayload {
    fn as_ref(&self) -> &[u8] {
        self.0.pixels()
    }
}

/// The stream id of the sender's ring: its name and its producer's pid,
/// hashed (FNV-1a), so that a sender restarted on the same ring (whose
/// lingering group sends again what the dead one held) continues the
/// stream, and one on a new ring starts another.
fn stream_id(ring: &str) -> u64 {
    let pid = framering_ring::inspect::RingView::open(ring)
        .map(|v| v.snapshot().producer.pid)
        .unwrap_or(0);
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for b in ring.bytes().chain(pid.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn header(kind: Kind, stream: u64, frame: Option<&Frame>, shape: FrameShape) -> FrameHeader {
    match frame {
        Some(f) => {
            let info = f.info();
            FrameHeader {
                kind,
                stream,
                seq: info.seq,
                kept: false,
                capture_ns: info.capture_ns,
                pts_ns: info.pts_ns,
                shape,
                src_size: (info.src_width, info.src_height),
                source: info.source().to_vec(),
                user_meta: f.user_meta().to_vec(),
            }
        }
        None => FrameHeader {
            kind,
            stream,
            seq: 0,
            kept: false,
            capture_ns: crate::app::clock::realtime_ns(),
            pts_ns: None,
            shape,
            src_size: (0, 0),
            source: vec![],
            user_meta: vec![],
        },
    }
}

/// What the sender knows of one receiver (by its id, which it keeps across
/// restarts).
#[derive(Debug, Default)]
struct Peer {
    /// Its liveliness token is declared.
    alive: bool,
    /// When its token went away.
    gone_since: Option<Instant>,
    /// The last seq of this sender's stream it has in its ring.
    acked: Option<u64>,
    /// It said it follows another stream: it does not hold frames back.
    other_stream: bool,
    /// It was given up (gone longer than `receiver_timeout_secs`).
    forgotten: bool,
}

/// The receivers' acknowledgements and liveliness, updated by zenoh's
/// callbacks, read by the sending loop.
#[derive(Debug, Default)]
struct Peers {
    map: HashMap<u64, Peer>,
    /// Hellos not yet answered: (receiver, its position in our stream).
    hellos: Vec<(u64, Option<u64>)>,
    /// The highest seq of our stream any receiver acknowledged (live mode).
    latest_ack: Option<u64>,
}

impl Peers {
    fn ack(&mut self, a: Ack, stream: u64) {
        let p = self.map.entry(a.receiver).or_default();
        p.forgotten = false;
        let seq = if a.stream == stream { a.seq } else { None };
        p.other_stream = a.seq.is_some() && a.stream != stream;
        if a.hello {
            // Its position, even below what it acknowledged before (its
            // ring lost frames): they are sent again.
            p.acked = seq;
            p.alive = true;
            p.gone_since = None;
            self.hellos.push((a.receiver, seq));
        } else if seq.is_some() {
            p.acked = p.acked.max(seq);
            self.latest_ack = self.latest_ack.max(seq);
        }
    }

    /// Whether a receiver of this stream (or a new one) is there.
    fn any_receiver(&self) -> bool {
        self.map
            .values()
            .any(|p| p.alive && !p.other_stream && !p.forgotten)
    }

    fn liveliness(&mut self, id: u64, alive: bool) {
        let p = self.map.entry(id).or_default();
        p.alive = alive;
        p.gone_since = (!alive).then(Instant::now);
        if alive {
            p.forgotten = false;
        }
    }

    /// Whether every receiver that follows this stream (and is alive, or
    /// gone for less than `timeout`) has `seq`; gives up (with a warning)
    /// those gone longer.
    fn all_have(&mut self, seq: u64, timeout: Duration) -> bool {
        let mut all = true;
        for (id, p) in self.map.iter_mut() {
            if p.other_stream || p.forgotten {
                continue;
            }
            if !p.alive && p.gone_since.is_some_and(|t| t.elapsed() >= timeout) {
                p.forgotten = true;
                tracing::warn!(
                    receiver = format_args!("{id:016x}"),
                    timeout_secs = timeout.as_secs_f64(),
                    "a receiver did not come back (bridge.receiver_timeout_secs): the frames it has not acknowledged are released; if it returns it counts them as remote_gap"
                );
                continue;
            }
            if !p.acked.is_some_and(|a| a >= seq) {
                all = false;
            }
        }
        all
    }
}

fn priority(p: crate::app::config::bridge::ZPriority) -> Priority {
    use crate::app::config::bridge::ZPriority as P;
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
        .cancel_with(signals::canceller());
    if b.live {
        // Never slow the local ring: the group drops its oldest frames, and
        // the sender always takes the newest.
        builder = builder
            .group_backpressure(Backpressure::DropOldest)
            .latest(true);
    }
    let consumer = match builder.attach() {
        Err(framering_ring::AttachError::Cancelled { .. }) => {
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
        .declare_token(super::alive_token(&b.key, session.zid()))
        .wait()
        .map_err(zerr("cannot declare the liveliness token"))?;
    let congestion = match b.congestion {
        crate::app::config::bridge::Congestion::Block => CongestionControl::Block,
        crate::app::config::bridge::Congestion::Drop => CongestionControl::Drop,
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
    let stream = stream_id(ring);
    // The receivers: their acknowledgements and liveliness tokens.
    let peers = Arc::new((Mutex::new(Peers::default()), Condvar::new()));
    let p = peers.clone();
    let _acks = session
        .declare_subscriber(super::ack_key(&b.key))
        .callback(move |sample| {
            match Ack::decode(&sample.payload().to_bytes()) {
                Ok(a) => p.0.lock().ack(a, stream),
                Err(e) => tracing::debug!(error = %e, "ignoring an acknowledgement"),
            }
            p.1.notify_all();
        })
        .wait()
        .map_err(zerr("cannot subscribe to acknowledgements"))?;
    let p = peers.clone();
    let _receivers = session
        .liveliness()
        .declare_subscriber(super::receiver_key(&b.key))
        .history(true)
        .callback(move |sample| {
            if let Ok(id) = u64::from_str_radix(super::token_id(sample.key_expr()), 16) {
                p.0.lock().liveliness(id, sample.kind() == SampleKind::Put);
                p.1.notify_all();
            }
        })
        .wait()
        .map_err(zerr("cannot watch the receivers"))?;
    let receiver_timeout = Duration::from_secs_f64(b.receiver_timeout_secs);
    // Lossless: the frames sent and not yet in every receiver's ring, oldest
    // first, at most `window` (they hold slots of our group).
    let window = match b.window {
        0 => consumer.slots().saturating_sub(1).max(1),
        n => n.min(consumer.slots()),
    } as usize;
    let mut kept: VecDeque<(u64, bytes::Bytes, ZBytes)> = VecDeque::with_capacity(window);
    let mut source_sn: u32 = 0;
    let mut put = |payload: bytes::Bytes, attachment: ZBytes| {
        source_sn = source_sn.wrapping_add(1);
        publisher
            .put(ZBytes::from(payload))
            .attachment(attachment)
            .source_info(SourceInfo::new(publisher.id(), source_sn))
            .wait()
            .map_err(zerr("cannot publish a frame"))
    };
    tracing::info!(ring, key = %b.key, group = %b.group, shape = %shape, live = b.live, stream = format_args!("{stream:016x}"), window, "bridge sender started");
    let mut stats = Stats::new("bridge send", PROGRESS_EVERY, run.progress, None)
        .with_metrics(run.metrics.clone());
    // Live: the frames in flight, at most a window sized to the link's
    // bandwidth-delay product (bounded like the lossless window).
    let mut live = LiveWindow::new(window);
    // Live: the window was full after the last frame taken.
    let mut window_full = false;
    let mut started = false;
    let mut fresh = Freshness::default();
    // Live: frames skipped because they had waited (see `Freshness`).
    let mut stale = 0u64;
    let mut resent = 0u64;
    let mut ended = false;
    let end = loop {
        if signals::stop_requested() {
            break SendEnd::Stopped;
        }
        {
            let mut g = peers.0.lock();
            // Receivers that (re)joined: what we keep after their position.
            for (id, pos) in std::mem::take(&mut g.hellos) {
                let again: Vec<_> = kept
                    .iter()
                    .filter(|(seq, _, _)| pos.map_or(true, |p| *seq > p))
                    .map(|(_, px, att)| (px.clone(), att.clone()))
                    .collect();
                tracing::info!(
                    receiver = format_args!("{id:016x}"),
                    position = ?pos,
                    frames = again.len(),
                    "a receiver joined: sending it again the frames it does not have"
                );
                resent += again.len() as u64;
                drop(g);
                for (px, att) in again {
                    put(px, att)?;
                }
                // Behind them on the same publisher (in order): the answer.
                let mut answer = header(Kind::Resume, stream, None, shape);
                answer.seq = pos.unwrap_or(u64::MAX);
                put(bytes::Bytes::new(), answer.encode().into())?;
                g = peers.0.lock();
            }
            while let Some((seq, _, _)) = kept.front() {
                if !g.all_have(*seq, receiver_timeout) {
                    break;
                }
                kept.pop_front();
            }
            // Live: the next frame is picked when the window has room (a
            // frame in flight is in a receiver's ring), so it is the
            // newest, never one queued behind older ones.
            let now = Instant::now();
            if b.live {
                live.acked(g.latest_ack, now, ACK_WAIT);
            }
            let live_room = live.room(now);
            if window_full && live_room {
                window_full = false;
                fresh.sent();
            }
            let busy = (b.live && !live_room)
                || (!b.live && kept.len() >= window)
                || (ended && !kept.is_empty());
            if busy {
                peers.1.wait_for(&mut g, Duration::from_millis(20));
                continue;
            }
        }
        if ended {
            // Every receiver has every frame: tell them the stream ended.
            put(
                bytes::Bytes::new(),
                header(Kind::End, stream, None, shape).encode().into(),
            )?;
            tracing::info!("the local ring ended its stream; receivers told");
            // Closing the session now would drop what zenoh has not
            // written yet: wait for the receivers to unsubscribe (they do
            // on the end of the stream), at most END_WAIT.
            let until = Instant::now() + END_WAIT;
            while matching.load(Ordering::Acquire)
                && Instant::now() < until
                && !signals::stop_requested()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            break SendEnd::EndOfStream;
        }
        // Frames published with no receiver subscribed would be lost: wait
        // (in the ring: lossless groups keep them, live ones drop the
        // oldest). A receiver subscribes before it declares its token.
        if !(matching.load(Ordering::Acquire) && peers.0.lock().any_receiver()) {
            stats.set_waiting(Some(format!("waiting for a receiver on {}", b.key)));
            stats.tick_now();
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        stats.set_waiting(None);
        let take = match consumer.take(Duration::from_millis(20)) {
            // Nothing yet, or a stop signal cancelled the wait: look at
            // the receivers (or the stop) again.
            Err(e) if e.is_timeout() || e.is_cancelled() => continue,
            r => r?,
        };
        match take {
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
                let mut h = header(Kind::Frame, stream, Some(&frame), shape);
                // Lossless: kept until every receiver has it, so a receiver
                // missing it asks for it again.
                h.kept = !b.live;
                let attachment: ZBytes = h.encode().into();
                let bytes = frame.pixels().len();
                let payload = bytes::Bytes::from_owner(FramePayload(frame));
                if b.live {
                    put(payload, attachment)?;
                    let now = Instant::now();
                    live.sent(seq, now);
                    window_full = !live.room(now);
                    if !window_full {
                        fresh.sent();
                    }
                } else {
                    put(payload.clone(), attachment.clone())?;
                    kept.push_back((seq, payload, attachment));
                }
                stats.frame(bytes, None);
                stats.set_dropped(consumer.group_dropped() + consumer.skipped() + stale);
                stats.tick();
            }
            Take::EndOfStream => {
                // Lossless: first every frame kept must be in every
                // receiver's ring (above).
                ended = true;
            }
            Take::ProducerGone { pid } => break SendEnd::ProducerGone(pid),
            Take::ProducerFailed { reason } => {
                tracing::error!(%reason, "the local producer failed");
                break SendEnd::ProducerFailed;
            }
        }
    };
    if resent > 0 {
        tracing::info!(resent, "frames sent again to receivers that restarted");
    }
    if b.live {
        let r = live.report();
        tracing::info!(
            window = r.window,
            largest_window = r.largest,
            round_trip_ms = r.rtt_ms,
            delivery_fps = r.rate_fps,
            unacknowledged = r.unacknowledged,
            "live window (frames in flight, sized to the link's bandwidth-delay product)"
        );
    }
    stats.set_dropped(consumer.group_dropped() + consumer.skipped() + stale);
    stats.finish_progress();
    let summary = stats.summary();
    drop(kept);
    drop(publisher);
    if let Err(e) = session.close().wait() {
        tracing::warn!(error = %e, "closing the zenoh session");
    }
    Ok(SendReport { summary, end })
}
