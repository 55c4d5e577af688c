//! `framering bridge recv`: a zenoh key's frames into a local ring.

use super::wire::{Ack, FrameHeader, Geometry, Kind};
use crate::app::config::Config;
use crate::app::signals;
use crate::app::stats::{RunOptions, Stats, Summary, PROGRESS_EVERY};
use framering_ring::{FrameMeta, Producer};
use std::str::FromStr;
use std::time::{Duration, Instant};
use zenoh::handlers::FifoChannel;
use zenoh::sample::{Sample, SampleKind};
use zenoh::session::ZenohId;
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

/// The skip reason of messages on the key from another session than the
/// sender's.
pub const FOREIGN: &str = "foreign";

/// The skip reason of the sender's messages that do not decode or do not
/// fit the ring.
pub const BAD: &str = "bad_message";

/// A gap larger than this is a new stream (a sender restarted on a new
/// ring), not lost frames.
const MAX_GAP: u64 = 1 << 20;

fn zerr(what: &'static str) -> impl Fn(zenoh::Error) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {e}")
}

/// Senders whose liveliness token is declared, by session id.
#[derive(Debug, Default)]
struct Senders {
    alive: Vec<ZenohId>,
}

impl Senders {
    /// Applies one liveliness sample; returns the sender and whether it is
    /// alive now.
    fn note(&mut self, s: &Sample) -> Option<(ZenohId, bool)> {
        let zid = ZenohId::from_str(super::token_id(s.key_expr())).ok()?;
        let alive = s.kind() == SampleKind::Put;
        self.alive.retain(|z| *z != zid);
        if alive {
            self.alive.push(zid);
        }
        Some((zid, alive))
    }

    fn drain(&mut self, sub: &Sub) {
        while let Ok(Some(s)) = sub.try_recv() {
            self.note(&s);
        }
    }
}

/// Asks the senders for their geometry until one whose liveliness token is
/// declared answers (or the timeout, or a stop signal: `None`); returns it
/// and the sender's session id.
fn geometry(
    session: &zenoh::Session,
    key: &str,
    alive: &Sub,
    senders: &mut Senders,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<(Geometry, ZenohId)>> {
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
            let replier = reply.replier_id().map(|r| r.zid());
            match reply.into_result() {
                Ok(sample) => match Geometry::decode(&sample.payload().to_bytes()) {
                    Ok(g) => {
                        senders.drain(alive);
                        match replier {
                            Some(z) if senders.alive.contains(&z) => return Ok(Some((g, z))),
                            _ => tracing::debug!(
                                ?replier,
                                "a geometry reply from a session without a sender's liveliness token"
                            ),
                        }
                    }
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
    let mut senders = Senders::default();
    let Some((geo, sender)) = geometry(&session, &b.key, &alive, &mut senders, timeout)? else {
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
    // Where a receiver of this ring that died was: read before the ring is
    // created again (its publish count is the record).
    let (position_file, position) = super::position::PositionFile::open(&cfg.ring.name)?;
    let producer = crate::app::producer::create_ring_with(cfg, shape, Some(geo.user_meta_bytes))?;
    tracing::info!(ring = %cfg.ring.name, key = %b.key, shape = %shape, slots = cfg.ring.slots, "bridge receiver started");
    let ack = session
        .declare_publisher(super::ack_key(&b.key))
        .congestion_control(zenoh::qos::CongestionControl::Drop)
        .express(true)
        .wait()
        .map_err(zerr("cannot declare the acknowledgement publisher"))?;
    let _token = session
        .liveliness()
        .declare_token(super::receiver_token(&b.key, position_file.receiver))
        .wait()
        .map_err(zerr("cannot declare the receiver's liveliness token"))?;
    let mut state = Receiver {
        producer: &producer,
        ack,
        shape,
        position: position_file,
        stream: position.map(|p| p.stream),
        last_seq: position.map(|p| p.seq),
        following: None,
        lost: None,
        awaiting: None,
        hello_at: Instant::now(),
        resumed: None,
        senders,
        gaps: 0,
        bad: 0,
        foreign: 0,
        duplicates: 0,
        started: false,
    };
    state.follow(sender, &b.key, &mut stats);
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
        crate::app::producer::end_stream(cfg, &producer, end == Some(RecvEnd::EndOfStream))?;
    if !cfg.producer.keep {
        // The ring is gone: nothing to resume.
        state.position.remove();
    }
    let end = outcome?;
    stats.finish_progress();
    let mut summary = stats.summary();
    crate::app::producer::finish_summary(&mut summary, &producer, drained);
    let gaps = state.gaps;
    if state.foreign > 0 || state.duplicates > 0 {
        tracing::info!(
            foreign = state.foreign,
            duplicates = state.duplicates,
            "messages skipped: from other sessions than the sender's, frames sent again"
        );
    }
    drop(alive);
    if let Err(e) = session.close().wait() {
        tracing::warn!(error = %e, "closing the zenoh session");
    }
    Ok(RecvReport { summary, end, gaps })
}

type Sub = zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<Sample>>;

/// How often a receiver that follows a sender says hello (its position)
/// until the sender answers.
const HELLO_EVERY: Duration = Duration::from_millis(250);

struct Receiver<'p> {
    producer: &'p Producer,
    /// Acknowledges each frame published (see `ack_key`).
    ack: zenoh::pubsub::Publisher<'static>,
    shape: framering_ring::FrameShape,
    /// This receiver's position, written before each publish.
    position: super::position::PositionFile,
    /// The sender's stream and the last seq of it in the ring.
    stream: Option<u64>,
    last_seq: Option<u64>,
    /// The session of the sender followed: frames, shape changes and end
    /// markers are taken only from it.
    following: Option<ZenohId>,
    /// The sender followed last, lost.
    lost: Option<ZenohId>,
    /// The position of the hello not yet answered (`u64::MAX`: none), and
    /// when to say it again: meanwhile only the frame after the last one is
    /// taken (the sender sends again what follows, then a
    /// [`Kind::Resume`]; a frame further ahead is one it still has).
    awaiting: Option<u64>,
    hello_at: Instant,
    /// The last seq when the sender last answered a hello: frames missing
    /// right after it are ones the sender no longer has (truly lost).
    resumed: Option<u64>,
    senders: Senders,
    gaps: u64,
    bad: u64,
    foreign: u64,
    duplicates: u64,
    started: bool,
}

impl Receiver<'_> {
    fn follow(&mut self, zid: ZenohId, key: &str, stats: &mut Stats) {
        tracing::info!(%key, sender = %zid, "sender is alive");
        self.following = Some(zid);
        self.awaiting = Some(
            self.last_seq
                .filter(|_| self.stream.is_some())
                .unwrap_or(u64::MAX),
        );
        self.hello_at = Instant::now();
        stats.set_waiting(None);
    }

    /// Tells the sender where this receiver is: every frame of `stream` up
    /// to `last_seq` is in the ring.
    fn send_ack(&self, hello: bool) {
        let a = Ack {
            receiver: self.position.receiver,
            hello,
            stream: self.stream.unwrap_or(0),
            seq: self.last_seq.filter(|_| self.stream.is_some()),
        };
        if let Err(e) = self.ack.put(a.encode().to_vec()).wait() {
            tracing::debug!(error = %e, "cannot acknowledge a frame");
        }
    }

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
            if let Some(end) = self.watch(b, alive, stats) {
                return Ok(end);
            }
            if self.awaiting.is_some() && Instant::now() >= self.hello_at {
                self.send_ack(true);
                self.hello_at = Instant::now() + HELLO_EVERY;
            }
            let sample = match frames.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    // Idle: say again where we are (an acknowledgement is
                    // small and may be dropped; the sender waits for it).
                    if self.following.is_some() && self.last_seq.is_some() {
                        self.send_ack(false);
                    }
                    stats.tick_now();
                    continue;
                }
                Err(e) => anyhow::bail!("the zenoh subscriber closed: {e}"),
            };
            let source = sample.source_info().map(|s| s.source_id().zid());
            if source.is_some() && source != self.following {
                // The liveliness news may be queued behind it (a token
                // declared again after a link flapped): read it first.
                if let Some(end) = self.watch(b, alive, stats) {
                    return Ok(end);
                }
                // Or the link flapped (its token undeclared, not yet
                // declared again) while the session still sends: it is the
                // sender followed, which a dead session cannot be.
                if let (None, Some(zid)) =
                    (self.following, source.filter(|s| Some(*s) == self.lost))
                {
                    self.follow(zid, &b.key, stats);
                }
            }
            if let Some(end) = self.frame(&sample, stats)? {
                return Ok(end);
            }
        }
    }

    /// Reads the senders' liveliness: follows one when none is, reports
    /// the one followed when it is lost (`Some` with `exit_on_loss`).
    fn watch(
        &mut self,
        b: &crate::app::config::BridgeConfig,
        alive: &Sub,
        stats: &mut Stats,
    ) -> Option<RecvEnd> {
        while let Ok(Some(s)) = alive.try_recv() {
            match self.senders.note(&s) {
                Some((zid, false)) if Some(zid) == self.following => {
                    self.following = None;
                    self.lost = Some(zid);
                    self.awaiting = None;
                    tracing::warn!(key = %b.key, sender = %zid, "sender lost");
                    if b.exit_on_loss {
                        return Some(RecvEnd::SenderLost);
                    }
                    stats.set_waiting(Some(format!("sender lost; waiting for it on {}", b.key)));
                    stats.tick_now();
                }
                _ => {}
            }
        }
        if self.following.is_none() {
            if let Some(&zid) = self.senders.alive.first() {
                self.follow(zid, &b.key, stats);
            }
        }
        None
    }

    /// Publishes one received message; `Some` at the end of the stream.
    fn frame(&mut self, sample: &Sample, stats: &mut Stats) -> anyhow::Result<Option<RecvEnd>> {
        // Only the sender followed speaks on the key: anything else (a peer
        // replaying a frame, a forged end marker) is counted and skipped.
        let source = sample.source_info().map(|s| s.source_id().zid());
        if self.following.is_none() || source != self.following {
            self.foreign += 1;
            stats.skip(FOREIGN);
            if self.foreign.is_power_of_two() {
                tracing::warn!(
                    source = ?source,
                    following = ?self.following,
                    foreign = self.foreign,
                    "ignoring a message from another session than the sender's"
                );
            }
            return Ok(None);
        }
        let header = match sample
            .attachment()
            .map(|a| FrameHeader::decode(&a.to_bytes()))
        {
            Some(Ok(h)) => h,
            Some(Err(e)) => return Ok(self.refuse(&e.to_string(), stats)),
            None => return Ok(self.refuse("no attachment", stats)),
        };
        if header.kind == Kind::Resume {
            if self.awaiting == Some(header.seq) {
                tracing::info!("the sender answered: frames it still had were sent again");
                self.awaiting = None;
                self.resumed = self.last_seq;
            }
            return Ok(None);
        }
        if header.kind == Kind::End {
            tracing::info!("the sender ended the stream");
            return Ok(Some(RecvEnd::EndOfStream));
        }
        if header.shape != self.shape {
            return Ok(self.refuse(
                &format!(
                    "a frame of {} for a ring of {}: a sender on another ring needs a receiver of its own",
                    header.shape, self.shape
                ),
                stats,
            ));
        }
        let payload = sample.payload();
        if payload.len() != self.shape.bytes() {
            return Ok(self.refuse(
                &format!(
                    "payload of {} bytes for {} frames",
                    payload.len(),
                    self.shape
                ),
                stats,
            ));
        }
        if self.stream == Some(header.stream) && self.last_seq.is_some_and(|l| header.seq <= l) {
            // Sent again (to a receiver that restarted, or by a restarted
            // sender): already in the ring. Acknowledged again, so that the
            // sender lets it go.
            self.duplicates += 1;
            self.send_ack(false);
            return Ok(None);
        }
        if self.awaiting.is_some()
            && self.stream == Some(header.stream)
            && self.last_seq.is_some_and(|l| header.seq > l + 1)
        {
            // Sent before our hello: it comes again after what precedes it.
            return Ok(None);
        }
        if let Some(last) = self.missing_kept(&header) {
            // Lost in transit (a connection reset under the frames in
            // flight): the sender keeps them until acknowledged. Ask for
            // them again (the hello at once, from the loop) instead of
            // counting them lost; meanwhile the frames ahead are skipped
            // (above): they come again behind the missing ones.
            tracing::warn!(
                last,
                seq = header.seq,
                "frames missing in the remote seq: asking the sender for them again"
            );
            self.awaiting = Some(last);
            self.hello_at = Instant::now();
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            stats.restart_clock();
        }
        self.count_gap(header.stream, header.seq, stats);
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
        // The position first (the ring's publish count says whether the
        // frame made it in, should we die in between).
        let prev = self.last_seq.filter(|_| self.stream == Some(header.stream));
        self.position.intend(
            header.stream,
            prev,
            header.seq,
            self.producer.published() + 1,
        )?;
        slot.publish(&meta)?;
        self.stream = Some(header.stream);
        self.last_seq = Some(header.seq);
        self.send_ack(false);
        let age = crate::app::clock::realtime_ns().saturating_sub(header.capture_ns);
        stats.frame(self.shape.bytes(), Some(age));
        stats.set_slots_in_use(self.producer.slots() as usize - self.producer.free_slots());
        stats.tick();
        Ok(None)
    }

    /// The last seq in the ring when frames of a lossless stream are missing
    /// before `header`'s (and the sender has not already answered, at this
    /// position, that it no longer has them).
    fn missing_kept(&self, header: &FrameHeader) -> Option<u64> {
        let last = self
            .last_seq
            .filter(|_| self.stream == Some(header.stream))?;
        let ahead = header.seq.checked_sub(last)?;
        (header.kept
            && self.awaiting.is_none()
            && ahead > 1
            && ahead <= MAX_GAP
            && self.resumed != Some(last))
        .then_some(last)
    }

    /// Counts the frames missing between the last seq of the stream and
    /// `seq`.
    fn count_gap(&mut self, stream: u64, seq: u64, stats: &mut Stats) {
        match self.last_seq {
            Some(last) if self.stream == Some(stream) => {
                if seq - last > MAX_GAP {
                    tracing::info!(last, seq, "the remote seq jumped (a new sender ring)");
                } else if seq - last > 1 {
                    let missing = seq - last - 1;
                    self.gaps += missing;
                    tracing::warn!(last, seq, missing, "frames missing in the remote seq");
                    for _ in 0..missing {
                        stats.skip(GAP);
                        self.producer.count_skipped_input();
                    }
                }
            }
            Some(last) => {
                tracing::info!(last, seq, "a new sender stream (a sender on a new ring)")
            }
            None => {}
        }
    }

    /// Skips a message of the sender that is not a frame of this stream
    /// (logged, counted).
    fn refuse(&mut self, why: &str, stats: &mut Stats) -> Option<RecvEnd> {
        self.bad += 1;
        stats.skip(BAD);
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
