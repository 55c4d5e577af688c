//! The single writer of a ring: loans free slots, and publishes them to every
//! subscribed consumer group.
//!
//! What groups, backpressure and threads mean for it: see [`Producer`].

use crate::clock::{monotonic_ns, realtime_ns};
use crate::error::{
    Corrupt, CreateError, FailReason, LoanError, OpenError, PublishError, RingCorrupt,
};
use crate::event::WaitStrategy;
use crate::layout::{
    RingSpec, BACKPRESSURE_BLOCK, BACKPRESSURE_DROP_OLDEST, FLAG_DRAINED, FLAG_END_OF_STREAM,
    FLAG_FAILED, FLAG_LIVENESS_LOCK, FLAG_RUNNING, GROUP_ACTIVE, GROUP_DECLARED, GROUP_LINGERING,
    GROUP_NAME_MAX, GROUP_UNUSED, META_HAS_PTS, POLICY_RING, USER_META_DEFAULT,
};
use crate::ledger::{Ledger, WriteClaim};
use crate::liveness;
use crate::options::{validate_group_name, Backpressure, FrameMeta};
use crate::process::ProcessId;
use crate::ready_queue::ReadyQueue;
use crate::return_queue::ReturnQueue;
use crate::roster::{self, load_name, store_name, Request};
use crate::segment::{CreateFailure, Occupied, Reservation, Segment, SlotPart, INIT_GRACE};
use crate::shape::FrameShape;
use crate::slot::SlotState;
use crate::sync::Ordering;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// How often an idle waiter wakes to check its peers.
pub(crate) const PEER_CHECK: Duration = Duration::from_millis(100);
/// How often a busy producer looks for dead consumers.
const REAP_EVERY: Duration = Duration::from_millis(200);

/// Group `g`'s ready queue (`g` below `max_groups`, else a panic).
pub(crate) fn group_queue(seg: &Segment, g: usize) -> ReadyQueue<'_> {
    ReadyQueue::new(&seg.groups()[g].ready, seg.ready_cells(g), seg.claims(g))
}

/// Consumer `c`'s return queue (`c` below `max_consumers`, else a panic).
pub(crate) fn return_queue(seg: &Segment, c: usize) -> ReturnQueue<'_> {
    ReturnQueue::new(&seg.consumers()[c].ret, seg.return_cells(c))
}

/// Creates a ring and its [`Producer`]. Start with [`Producer::builder`].
///
/// Every setting but the frame shape has a default: 8 slots, 16 consumers,
/// 8 groups, no declared group (consumers create theirs), a linger period of
/// 30 s, [`Backpressure::Block`], mode 0600,
/// [`WaitStrategy::SPIN_THEN_FUTEX`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct ProducerBuilder {
    name: String,
    shape: Option<FrameShape>,
    slots: u32,
    max_consumers: u32,
    max_groups: u32,
    groups: Vec<(String, Option<Backpressure>)>,
    linger: Duration,
    backpressure: Backpressure,
    max_queued: u32,
    mode: u32,
    wait: WaitStrategy,
    user_meta_bytes: u32,
    frame_rate: u64,
}

impl ProducerBuilder {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            shape: None,
            slots: 8,
            max_consumers: 16,
            max_groups: 8,
            groups: Vec::new(),
            linger: Duration::from_secs(30),
            backpressure: Backpressure::Block,
            max_queued: 0,
            mode: 0o600,
            wait: WaitStrategy::default(),
            user_meta_bytes: USER_META_DEFAULT,
            frame_rate: 0,
        }
    }

    /// The frames' shape and element type (required).
    pub fn shape(mut self, shape: FrameShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// Bytes of user metadata each frame may carry beside its pixels
    /// ([`FrameMeta::user_meta`]), 0 to 65536 (default 256). They share the
    /// frame's last page where it has room.
    pub fn user_meta_bytes(mut self, bytes: u32) -> Self {
        self.user_meta_bytes = bytes;
        self
    }

    /// Number of frame slots, 1 to 4096 (default 8).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// Most consumers attached at once, 1 to 64 (default 16).
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.max_consumers = n;
        self
    }

    /// Most consumer groups at once, 1 to 64 (default 8).
    pub fn max_groups(mut self, n: u32) -> Self {
        self.max_groups = n;
        self
    }

    /// The declared groups, with the ring's default backpressure (replaces
    /// any declared before). A declared group receives every frame from the
    /// first one, with or without consumers, and keeps the frames of
    /// consumers that die for redelivery, for as long as the ring lives.
    /// Default: none, only ad-hoc groups, created by the consumers that join
    /// them (see [`Producer`]).
    ///
    /// ```
    /// # use framering_ring::{FrameShape, Producer};
    /// let b = Producer::builder("cam").shape(FrameShape::new(2, 2, 1)).groups(["rec"]);
    /// ```
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(|g| (g.into(), None)).collect();
        self
    }

    /// Declares one more group, with its own backpressure: a lossless
    /// recorder and a live preview on one ring.
    ///
    /// ```
    /// # use framering_ring::{Backpressure, FrameShape, Producer};
    /// let b = Producer::builder("cam")
    ///     .shape(FrameShape::new(2, 2, 1))
    ///     .group("rec", Backpressure::Block)
    ///     .group("preview", Backpressure::DropOldest);
    /// ```
    pub fn group(mut self, name: &str, policy: Backpressure) -> Self {
        self.groups.push((name.to_string(), Some(policy)));
        self
    }

    /// How long an ad-hoc group whose last consumer died keeps its frames
    /// (and goes on receiving new ones) for a consumer that restarts
    /// (default 30 s). Zero: released at once, like a group whose last
    /// consumer left.
    pub fn group_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// What to do when no slot is free (default [`Backpressure::Block`]):
    /// the policy of every group that does not ask for its own.
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// With [`Backpressure::Block`]: publish no further while a group has
    /// this many frames queued and not yet taken. 0 (default): 2 to 8
    /// frames, as many as fit in 8 MiB. Keeps the frames consumers read
    /// recent (in cache) and the latency short in a deep ring; the other
    /// slots still serve consumers that hold frames.
    pub fn max_queued(mut self, n: u32) -> Self {
        self.max_queued = n;
        self
    }

    /// Permissions of the segment, e.g. `0o660` to let the owner's group
    /// attach (default `0o600`). Must include `0o600`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How [`Producer::loan`] waits for a free slot.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// The source's frame rate, `num / den` frames per second, recorded in
    /// the ring for consumers ([`crate::Consumer::frame_rate`]): a consumer
    /// encoding a video writes it at this rate. Unset, or a zero in either
    /// term: not known.
    pub fn frame_rate(mut self, num: u32, den: u32) -> Self {
        self.frame_rate = if num == 0 || den == 0 {
            0
        } else {
            u64::from(num) << 32 | u64::from(den)
        };
        self
    }

    /// Creates the ring and becomes its producer. A ring of that name left
    /// by a dead producer is reclaimed; one whose producer is alive is
    /// refused with [`CreateError::InUse`].
    pub fn create(self) -> Result<Producer, CreateError> {
        Producer::create(self)
    }
}

/// Why the producer cannot loan a slot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitsFor {
    /// Every slot is held.
    Slot,
    /// A lossless ring with no group subscribed.
    Subscriber,
    /// A lossless group has `max_queued` frames waiting.
    Room,
}

/// How a consumer left its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// Handed back every frame it took, consumed.
    Left,
    /// Left after handing frames back unconsumed (its output failed): its
    /// group lingers as if it had died.
    Failed,
    /// Died; the frames it held are published to its group again.
    Died,
}

/// What the producer knows of one group.
#[derive(Debug, Clone, Copy)]
struct Group {
    state: u32,
    name: [u8; GROUP_NAME_MAX],
    name_len: usize,
    /// Consumer table entries in the group (bit per entry).
    members: u64,
    dropped: u64,
    policy: Backpressure,
    /// [`GROUP_LINGERING`]: when it is released.
    linger_until: Option<Instant>,
}

impl Group {
    const UNUSED: Group = Group {
        state: GROUP_UNUSED,
        name: [0; GROUP_NAME_MAX],
        name_len: 0,
        members: 0,
        dropped: 0,
        policy: Backpressure::Block,
        linger_until: None,
    };

    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// Per-group figures for summaries ([`Producer::group_reports`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Frames the group lost: dropped unconsumed, or released when its last
    /// consumer left.
    pub dropped: u64,
    /// Whether the producer declared it.
    pub declared: bool,
    /// Consumers admitted into it now.
    pub consumers: u32,
    /// Frames published to it that it has not handed back yet (queued or
    /// being read).
    pub unconsumed: u32,
    /// Its backpressure ([`Backpressure::DropOldest`]: a live group).
    pub policy: Backpressure,
    /// Its last consumer died: how long it keeps its frames for a consumer
    /// that restarts, before they are released.
    pub lingering: Option<Duration>,
}

/// The producer's bookkeeping, behind its lock.
#[derive(Debug)]
struct State {
    /// The frames' memory still being reserved (until the first publish).
    reservation: Option<Reservation>,
    ledger: Ledger,
    policy: Backpressure,
    /// Block policy: the most frames a group may have queued, not taken.
    max_queued: u64,
    last_reap: Instant,
    /// CLOCK_MONOTONIC ns at which a busy producer next looks for dead
    /// consumers (compared with the publish timestamp it reads anyway).
    next_reap_ns: u64,
    redelivered: u64,
    dropped: u64,
    /// Groups subscribed now (bit per group).
    active: u64,
    /// Subscribed groups with the drop-oldest policy (a subset of `active`).
    live: u64,
    /// Why the last `try_loan` found nothing.
    waits_for: WaitsFor,
    /// How long an ad-hoc group whose last consumer died lingers.
    linger: Duration,
    groups: Vec<Group>,
    /// Per consumer entry: the group it was admitted to.
    member_of: Vec<Option<u8>>,
    /// The header's roster counter when we last looked at the table.
    roster_seen: u32,
    /// The free event's count when we last collected returns.
    returns_seen: u32,
}

/// The single writer of a ring: loans free slots and publishes them to
/// every subscribed consumer group. The [crate documentation](crate) has an
/// example.
///
/// # Groups and slot lifetime
///
/// Each group has its own ready queue and its own claim word per slot
/// (the slot claim words); its consumers share its frames (work-sharing), and
/// every group receives every frame published while it is subscribed
/// (broadcast). The producer alone knows which groups still hold a slot
/// (its ledger): a per-slot bit mask in its own memory, set at publish
/// and cleared as each group's consumer hands the slot back.
///
/// Groups are *declared* (named by the producer: subscribed from the start,
/// and kept when their consumers die, so nothing is lost) or *ad hoc*
/// (created when a consumer asks to join a name nobody declared; subscribed
/// from the next published frame). An ad-hoc group whose last consumer
/// *leaves* releases every slot it held at once (a preview window must not
/// hold the recorder back); one whose last consumer *dies* lingers: it keeps
/// its frames, and goes on receiving new ones, for the linger period
/// ([`ProducerBuilder::group_linger`]), so that a consumer restarted by its
/// supervisor loses nothing; then it is released. Membership changes go
/// through the producer (the roster handshake).
///
/// # Backpressure
///
/// Each group has its own policy (the ring's default unless the group's
/// declaration or its first consumer asks for another). A
/// [`Backpressure::Block`] group is lossless: the producer waits for it to
/// hand back slots, and to take queued frames (`max_queued`); a ring whose
/// default is `Block` also waits, before publishing, until some group is
/// subscribed. A [`Backpressure::DropOldest`] (live) group never slows the
/// producer: short of slots, the producer withdraws from live groups the
/// oldest published frame that no live consumer has claimed yet and that no
/// lossless group still holds (a CAS on each group's claim word, racing the
/// consumers' claim CAS, so a frame being read is never taken away), and
/// reuses its slot. A recorder and a preview can so share one ring: the
/// recorder gets every frame, the preview the newest it can keep up with.
///
/// # Threads
///
/// A [`Producer`] is `Send + Sync`: its bookkeeping sits behind a lock that
/// is held only for the few hundred nanoseconds of a loan or a publish, never
/// while waiting. A [`WriteSlot`] borrows its producer, so it can only be
/// published (or dropped: handed back unpublished) through the producer that
/// loaned it, and it is `Send`: decoder threads can fill slots in parallel.
///
/// A child forked from the producer's process inherits a copy of it;
/// dropping the copy there does nothing (the ring stays the parent's).
#[derive(Debug)]
pub struct Producer {
    pub(crate) seg: Segment,
    wait: WaitStrategy,
    state: Mutex<State>,
    /// The process that created the ring: dropping a forked child's copy
    /// does not mark the ring's producer gone.
    creator_pid: u32,
}

/// A slot loaned by [`Producer::loan`], to fill in place and
/// [`publish`](Self::publish). It borrows its producer, so it can only be
/// published through the producer that loaned it; dropping it unpublished
/// hands it back (e.g. when the input could not be decoded).
#[derive(Debug)]
pub struct WriteSlot<'p> {
    producer: &'p Producer,
    claim: Option<WriteClaim>,
}

impl WriteSlot<'_> {
    fn claim(&self) -> &WriteClaim {
        self.claim
            .as_ref()
            .expect("a live WriteSlot holds its claim")
    }

    /// The slot's index in the pool.
    pub fn index(&self) -> u32 {
        self.claim().slot()
    }

    /// The frames' shape.
    pub fn shape(&self) -> FrameShape {
        self.producer.shape()
    }

    /// The frame's bytes, H×W×C row-major, to fill in place. They hold
    /// whatever the slot held before (an old frame).
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        let claim = self
            .claim
            .as_mut()
            .expect("a live WriteSlot holds its claim");
        self.producer.seg.frame_mut(claim)
    }

    /// The frame's bytes.
    pub fn pixels(&self) -> &[u8] {
        self.producer.seg.frame_written(self.claim())
    }

    /// Publishes the frame to every subscribed group and returns its
    /// sequence number. With no group subscribed (possible only with
    /// [`Backpressure::DropOldest`]: the block policy waits for one in
    /// `loan`) the frame is counted as dropped.
    pub fn publish(mut self, meta: &FrameMeta<'_>) -> Result<u64, PublishError> {
        let claim = self.claim.take().expect("a live WriteSlot holds its claim");
        self.producer.publish_claim(claim, meta)
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            let mut st = self.producer.state.lock();
            st.ledger.discard(claim, self.producer.seg.slot_states());
        }
    }
}

/// Bytes of queued frames the automatic `max_queued` allows: what stays in
/// the last-level cache of a small machine beside the frames being written
/// and read.
const QUEUED_BYTES: u64 = 8 << 20;

/// The default `max_queued`: 2 to 8 frames, fewer the larger they are.
/// A policy as the segment records it.
fn policy_word(policy: Backpressure) -> u32 {
    match policy {
        Backpressure::Block => BACKPRESSURE_BLOCK,
        Backpressure::DropOldest => BACKPRESSURE_DROP_OLDEST,
    }
}

fn auto_max_queued(frame_bytes: u64, slots: u32) -> u32 {
    ((QUEUED_BYTES / frame_bytes.max(1)).clamp(2, 8) as u32).min(slots)
}

fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            b
        })
    })
}

impl Producer {
    /// Starts building the ring `name`: give it a
    /// [`shape`](ProducerBuilder::shape), then
    /// [`create`](ProducerBuilder::create) it.
    pub fn builder(name: &str) -> ProducerBuilder {
        ProducerBuilder::new(name)
    }

    fn create(b: ProducerBuilder) -> Result<Producer, CreateError> {
        let name = b.name.as_str();
        let shape = b
            .shape
            .ok_or_else(|| CreateError::NoShape { name: name.into() })?;
        let spec = RingSpec {
            slots: b.slots,
            height: shape.height,
            width: shape.width,
            channels: shape.channels,
            dtype: shape.dtype.code(),
            user_meta_bytes: b.user_meta_bytes,
            max_consumers: b.max_consumers,
            max_groups: b.max_groups,
        };
        if b.groups.len() > b.max_groups as usize {
            return Err(CreateError::TooManyGroups {
                name: name.into(),
                given: b.groups.len(),
                max: b.max_groups,
            });
        }
        for (g, _) in &b.groups {
            validate_group_name(g)?;
        }
        if b.mode > 0o777 || b.mode & 0o600 != 0o600 {
            return Err(CreateError::InvalidMode {
                name: name.into(),
                mode: b.mode,
            });
        }
        let mut groups = vec![Group::UNUSED; b.max_groups as usize];
        let mut active = 0;
        let mut live = 0;
        for (g, (gname, policy)) in b.groups.iter().enumerate() {
            if groups[..g].iter().any(|x| x.name() == gname.as_bytes()) {
                continue;
            }
            let len = gname.len().min(GROUP_NAME_MAX);
            groups[g].name[..len].copy_from_slice(&gname.as_bytes()[..len]);
            groups[g].name_len = len;
            groups[g].state = GROUP_DECLARED;
            groups[g].policy = policy.unwrap_or(b.backpressure);
            active |= 1 << g;
            if groups[g].policy == Backpressure::DropOldest {
                live |= 1 << g;
            }
        }
        // Everything a consumer reads about its producer is written before
        // the segment's version makes it openable.
        let init = |seg: &Segment| {
            for (g, grp) in groups.iter().enumerate() {
                if grp.state == GROUP_DECLARED {
                    let entry = &seg.groups()[g];
                    store_name(&entry.name, grp.name());
                    entry
                        .policy
                        .store(policy_word(grp.policy), Ordering::Relaxed);
                    entry.state.store(GROUP_DECLARED, Ordering::Relaxed);
                }
            }
            // Our liveness, for every process sharing the segment whatever
            // its PID namespace: held until we exit (a fresh file: nobody
            // else can hold it).
            let locked = liveness::try_lock(seg.file(), liveness::PRODUCER_BYTE);
            let me = ProcessId::current();
            let h = seg.header();
            h.backpressure
                .store(policy_word(b.backpressure), Ordering::Relaxed);
            h.frame_rate.store(b.frame_rate, Ordering::Relaxed);
            h.producer_start_ticks
                .store(me.start_ticks, Ordering::Relaxed);
            h.producer_pid.store(me.pid, Ordering::Relaxed);
            h.flags.store(
                if locked == liveness::Lock::Held {
                    FLAG_RUNNING | FLAG_LIVENESS_LOCK
                } else {
                    FLAG_RUNNING
                },
                Ordering::Relaxed,
            );
        };
        // The frames' memory is reserved in the background while the first
        // slots fill; `publish` waits for it before the first frame.
        // Of several producers racing for a dead producer's name, one
        // removes it and creates the new ring; another may find the name
        // gone and then taken again: it judges the newcomer like any
        // occupant (so it reports the live winner, with its pid, once its
        // header is written), a bounded number of times.
        let mut attempts = 0;
        let (seg, reservation) = loop {
            match Segment::create_reserving_frames_later(name, spec, b.mode, init) {
                Ok(created) => break created,
                Err(CreateFailure::Exists) if attempts < 3 => {
                    attempts += 1;
                    Self::reclaim_stale(name)?;
                }
                Err(CreateFailure::Exists) => return Err(Self::in_use(name)),
                Err(CreateFailure::Error(e)) => return Err(e),
            }
        };
        let g = *seg.geometry();
        let ledger = Ledger::new(g.slots as usize, seg.base_addr());
        Ok(Producer {
            creator_pid: crate::signals::pid(),
            wait: b.wait,
            state: Mutex::new(State {
                reservation,
                ledger,
                policy: b.backpressure,
                max_queued: match b.max_queued {
                    0 => auto_max_queued(g.frame_bytes, g.slots),
                    n => n.min(g.slots),
                } as u64,
                last_reap: Instant::now(),
                next_reap_ns: 0,
                redelivered: 0,
                dropped: 0,
                active,
                live,
                waits_for: WaitsFor::Slot,
                linger: b.linger,
                groups,
                member_of: vec![None; g.max_consumers as usize],
                roster_seen: 0,
                returns_seen: 0,
            }),
            seg,
        })
    }

    fn in_use(name: &str) -> CreateError {
        let pid = Segment::open(name)
            .map(|s| s.header().producer_pid.load(Ordering::Acquire))
            .unwrap_or(0);
        CreateError::InUse {
            name: name.into(),
            pid,
        }
    }

    /// Makes room for a new ring named `name`: removes what is there if it
    /// is a dead producer's ring, or an empty or blank file older than
    /// [`INIT_GRACE`] (a creator that died before writing its header);
    /// refuses a live producer's ring and anything it cannot judge.
    ///
    /// Atomic with respect to every other creator and reclaimer: the object
    /// is judged and removed while holding its producer's lock
    /// ([`Segment::occupy`]), which its producer took before the file had a
    /// size and which every remover must hold; and the name is removed only
    /// if it still names the object judged. Of two producers that find the
    /// same dead ring, one removes it and creates the new ring, the other
    /// finds that new ring busy and alive.
    fn reclaim_stale(name: &str) -> Result<(), CreateError> {
        // Long enough for a producer creating its ring right now to publish
        // its header (microseconds in practice; a cold, loaded machine).
        let deadline = Instant::now() + Duration::from_secs(2);
        let unreclaimable = |source| CreateError::Unreclaimable {
            name: name.into(),
            source,
        };
        loop {
            let old = match Segment::occupy(name) {
                Ok(Occupied::Gone) => return Ok(()),
                Ok(Occupied::Locked(old)) => old,
                // A producer holds it: alive (say so at once) or still
                // creating its ring (wait for its header).
                Ok(Occupied::Owned) if Segment::open_read_only(name).is_ok() => {
                    return Err(Self::in_use(name))
                }
                // Being created, or judged by another reclaimer: wait for
                // either to finish.
                Ok(Occupied::Owned | Occupied::Reclaiming) => {
                    if Instant::now() >= deadline {
                        return Err(Self::in_use(name));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(OpenError::PermissionDenied { mode, .. }) => {
                    return Err(CreateError::PermissionDenied {
                        name: name.into(),
                        mode,
                    })
                }
                Err(source) => return Err(unreclaimable(source)),
            };
            match old.ring() {
                Ok(seg) => {
                    let pid = seg.header().producer_pid.load(Ordering::Acquire);
                    // Holding the lock proves a producer that took it dead;
                    // where locks do not work, its pid decides.
                    if !old.locked() && liveness::producer_alive(&seg) {
                        return Err(CreateError::InUse {
                            name: name.into(),
                            pid,
                        });
                    }
                    tracing::warn!(
                        ring = name,
                        pid,
                        "reclaiming a ring left behind by a dead producer"
                    );
                }
                // Empty or blank, and nobody holds its lock: a creator that
                // died before writing its header, or another program's blank
                // file. Removed only once old, so that a file someone made
                // moments ago is never deleted under them.
                Err(e @ (OpenError::NotReady { .. } | OpenError::NotARing { .. }))
                    if old.is_blank() =>
                {
                    let age = old.age().unwrap_or_default();
                    if age < INIT_GRACE {
                        drop(old);
                        if Instant::now() >= deadline {
                            return Err(CreateError::Blank {
                                name: name.into(),
                                age_secs: age.as_secs_f64(),
                                grace_secs: INIT_GRACE.as_secs(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    tracing::warn!(
                        ring = name,
                        age_secs = age.as_secs(),
                        reason = %e,
                        "reclaiming an empty or blank file of the ring's name, unchanged for {} s: \
                         a producer that died before writing its header",
                        age.as_secs()
                    );
                }
                // Another program's file, another layout version, corrupt:
                // its producer cannot be judged, so it is left alone.
                Err(source) => return Err(unreclaimable(source)),
            }
            match old.remove() {
                Ok(true) => return Ok(()),
                // The name changed hands meanwhile (only a process outside
                // this protocol can do that): judge the new object.
                Ok(false) => continue,
                Err(source) => return Err(unreclaimable(source)),
            }
        }
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The frames' shape.
    pub fn shape(&self) -> FrameShape {
        self.seg.geometry().frame_shape()
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.seg.geometry().slots
    }

    /// Bytes of user metadata a frame can carry.
    pub fn user_meta_capacity(&self) -> usize {
        self.seg.geometry().user_meta_bytes as usize
    }

    /// Frames re-published because their consumer died or handed them back
    /// unconsumed ([`Frame::give_back`](crate::Frame::give_back)).
    pub fn redelivered(&self) -> u64 {
        self.state.lock().redelivered
    }

    /// Frames dropped (drop-oldest policy, or published with no group
    /// subscribed). A frame dropped by several groups counts once.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Slots in the producer's free pool now.
    pub fn free_slots(&self) -> usize {
        self.state.lock().ledger.free_len()
    }

    /// Consumers admitted into a group now.
    pub fn consumers(&self) -> u32 {
        let st = self.state.lock();
        st.groups.iter().map(|g| g.members.count_ones()).sum()
    }

    /// Groups subscribed now.
    pub fn subscribed_groups(&self) -> u32 {
        self.state.lock().active.count_ones()
    }

    /// Every group the ring has had (declared, or ad hoc and still active,
    /// or ad hoc with drops), with what it dropped.
    pub fn group_reports(&self) -> Vec<GroupReport> {
        let st = self.state.lock();
        st.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.state != GROUP_UNUSED || g.dropped > 0)
            .map(|(i, g)| GroupReport {
                name: String::from_utf8_lossy(g.name()).into_owned(),
                dropped: g.dropped,
                declared: g.state == GROUP_DECLARED,
                consumers: g.members.count_ones(),
                unconsumed: (0..st.ledger.slots())
                    .filter(|&s| st.ledger.holds(i, s))
                    .count() as u32,
                policy: g.policy,
                lingering: (g.state == GROUP_LINGERING).then(|| {
                    g.linger_until.map_or(Duration::MAX, |t| {
                        t.saturating_duration_since(Instant::now())
                    })
                }),
            })
            .collect()
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.seg.header().published.load(Ordering::Relaxed)
    }

    /// Tells inspection tools that the producer waits for its input (a
    /// camera, a pipe), not for consumers: `framering status` shows it.
    pub fn set_waiting_for_input(&self, waiting: bool) {
        self.seg
            .header()
            .waiting_input
            .store(waiting as u32, Ordering::Relaxed);
    }

    /// Counts an input the producer skipped (shown by inspection tools).
    pub fn note_skipped(&self) {
        self.seg.header().skipped.fetch_add(1, Ordering::Relaxed);
    }

    fn corrupt(&self, c: crate::error::Corrupt) -> RingCorrupt {
        RingCorrupt::new(self.seg.name(), c)
    }

    /// Loans a free slot to fill, waiting up to `timeout` for consumers to
    /// return one (and, with the block policy, for a group to subscribe and
    /// for consumers to take queued frames). The lock is not held while
    /// waiting.
    ///
    /// A [`LoanError::Corrupt`] marks the ring failed ([`Producer::fail`]).
    pub fn loan(&self, timeout: Duration) -> Result<WriteSlot<'_>, LoanError> {
        let r = self.try_loan_within(timeout);
        if let Err(LoanError::Corrupt(_)) = &r {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    fn try_loan_within(&self, timeout: Duration) -> Result<WriteSlot<'_>, LoanError> {
        let mut deadline = None;
        loop {
            let (roster_seen, block, max_queued, waits_for) = {
                let mut st = self.state.lock();
                if let Some(claim) = st.try_loan(&self.seg)? {
                    return Ok(WriteSlot {
                        producer: self,
                        claim: Some(claim),
                    });
                }
                // Dead consumers are looked for at most every REAP_EVERY: it
                // reads /proc, far too slow for every failed attempt.
                if st.last_reap.elapsed() >= REAP_EVERY {
                    st.reap_dead_consumers(&self.seg)?;
                    if let Some(claim) = st.try_loan(&self.seg)? {
                        return Ok(WriteSlot {
                            producer: self,
                            claim: Some(claim),
                        });
                    }
                }
                (
                    st.roster_seen,
                    st.active & !st.live,
                    st.max_queued,
                    st.waits_for,
                )
            };
            // Read the clock only when there is something to wait for.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let now = Instant::now();
            if now >= deadline {
                return Err(LoanError::Timeout { waited: timeout });
            }
            let seg = &self.seg;
            let slice = PEER_CHECK.min(deadline - now);
            seg.header().free_event.wait_until(self.wait, slice, || {
                let changed = seg.header().roster.load(Ordering::Acquire) != roster_seen;
                let returned = (0..seg.geometry().max_consumers as usize)
                    .any(|c| !return_queue(seg, c).is_empty());
                // Consumers taking frames (they notify a waiting producer)
                // bring a lossless group back under max_queued. Only when
                // that is what we wait for: with no free slot, room in the
                // queues is no reason to try again (it would spin).
                let room = waits_for == WaitsFor::Room
                    && block != 0
                    && bits(block).all(|g| group_queue(seg, g).len() < max_queued);
                (changed || returned || room).then_some(())
            });
        }
    }

    fn publish_claim(&self, claim: WriteClaim, meta: &FrameMeta<'_>) -> Result<u64, PublishError> {
        let r = self.publish_claim_inner(claim, meta);
        if let Err(PublishError::Corrupt(_)) = &r {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    fn publish_claim_inner(
        &self,
        mut claim: WriteClaim,
        meta: &FrameMeta<'_>,
    ) -> Result<u64, PublishError> {
        let seg = &self.seg;
        let mut st = self.state.lock();
        if let Some(r) = st.reservation.take() {
            if let Err(e) = r.wait() {
                st.ledger.discard(claim, seg.slot_states());
                return Err(e);
            }
        }
        let capacity = seg.geometry().user_meta_bytes as usize;
        if meta.user_meta.len() > capacity {
            st.ledger.discard(claim, seg.slot_states());
            return Err(PublishError::UserMetaTooLong {
                len: meta.user_meta.len(),
                capacity,
            });
        }
        seg.slot_part_mut(&mut claim, SlotPart::UserMeta)[..meta.user_meta.len()]
            .copy_from_slice(meta.user_meta);
        let s = claim.slot() as usize;
        let h = seg.header();
        // Only the producer writes `published` (under our lock).
        let seq = h.published.load(Ordering::Relaxed);
        let m = &seg.slot_meta()[s];
        // Relaxed: published by the Release store of the claim words in `push`.
        m.seq.store(seq, Ordering::Relaxed);
        m.src_width.store(meta.src_width, Ordering::Relaxed);
        m.src_height.store(meta.src_height, Ordering::Relaxed);
        m.redeliveries.store(0, Ordering::Relaxed);
        let len = store_name(&m.name, meta.source);
        m.name_len.store(len as u32, Ordering::Relaxed);
        let now_ns = monotonic_ns();
        m.publish_ns.store(now_ns, Ordering::Relaxed);
        let capture_ns = match meta.capture_ns {
            0 => realtime_ns(),
            t => t,
        };
        m.capture_ns.store(capture_ns, Ordering::Relaxed);
        m.pts_ns
            .store(meta.pts_ns.unwrap_or(0) as u64, Ordering::Relaxed);
        let flags = if meta.pts_ns.is_some() {
            META_HAS_PTS
        } else {
            0
        };
        m.flags.store(flags, Ordering::Relaxed);
        m.user_len
            .store(meta.user_meta.len() as u32, Ordering::Relaxed);
        let active = st.active;
        if active == 0 {
            st.note_drop(seg);
        }
        let slot = st.ledger.publish(claim, active, seq, seg.slot_states());
        for g in bits(active) {
            st.push_to_group(seg, g, slot)
                .map_err(|c| self.corrupt(c))?;
            seg.groups()[g].delivered.fetch_add(1, Ordering::Relaxed);
        }
        h.published.store(seq + 1, Ordering::Release);
        h.ready_event.notify();
        if now_ns >= st.next_reap_ns {
            st.next_reap_ns = now_ns + REAP_EVERY.as_nanos() as u64;
            if st.last_reap.elapsed() >= REAP_EVERY {
                st.reap_dead_consumers(seg)?;
            }
        }
        Ok(seq)
    }

    /// Admits consumers waiting to join, frees the entries of those that
    /// left, and recovers the frames of those that died. `loan`, `publish`
    /// and `drain` do this as they go; call it when the producer is idle for
    /// long (a consumer waits for admission until then).
    ///
    /// Corruption marks the ring failed ([`Producer::fail`]).
    pub fn service(&self) -> Result<(), RingCorrupt> {
        let mut st = self.state.lock();
        let r = st
            .service_roster(&self.seg)
            .and_then(|()| st.reap_dead_consumers(&self.seg).map(drop));
        drop(st);
        self.failing(r)
    }

    /// Marks the ring failed if `r` is an error.
    fn failing<T>(&self, r: Result<T, RingCorrupt>) -> Result<T, RingCorrupt> {
        if r.is_err() {
            self.fail(FailReason::RingCorrupt);
        }
        r
    }

    /// Marks the ring failed: the producer gives up (its input failed, the
    /// ring is corrupt, …). Its consumers take what was published, then
    /// [`take`](crate::Consumer::take) reports
    /// [`Take::ProducerFailed`](crate::Take::ProducerFailed) with `reason`,
    /// not the end of the stream. The first reason given stays.
    pub fn fail(&self, reason: FailReason) {
        let h = self.seg.header();
        if h.flags.load(Ordering::Relaxed) & FLAG_FAILED == 0 {
            h.fail_reason.store(reason.code(), Ordering::Relaxed);
        }
        // Release: the reason (and every publish) before the flag.
        h.flags.fetch_or(FLAG_FAILED, Ordering::Release);
        h.ready_event.notify();
    }

    /// Waits up to `timeout` until at least `n` groups are subscribed (for
    /// a run that must not start before its consumers). Returns whether they
    /// are.
    pub fn wait_for_groups(&self, n: u32, timeout: Duration) -> Result<bool, RingCorrupt> {
        let r = self.wait_for_groups_inner(n, timeout);
        self.failing(r)
    }

    fn wait_for_groups_inner(&self, n: u32, timeout: Duration) -> Result<bool, RingCorrupt> {
        let deadline = Instant::now() + timeout;
        loop {
            let roster = {
                let mut st = self.state.lock();
                st.service_roster(&self.seg)?;
                if st.active.count_ones() >= n {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                st.reap_dead_consumers(&self.seg)?;
                st.roster_seen
            };
            let h = self.seg.header();
            h.free_event
                .wait_until(WaitStrategy::FUTEX, Duration::from_millis(20), || {
                    (h.roster.load(Ordering::Acquire) != roster).then_some(())
                });
        }
    }

    /// Signals end of stream: consumers take what is queued, then their
    /// `take` reports [`Take::EndOfStream`](crate::Take::EndOfStream) once
    /// the producer [drained](Self::drain).
    pub fn finish(&self) {
        let h = self.seg.header();
        // Release: every publish happens before a consumer sees the flag.
        h.flags.fetch_or(FLAG_END_OF_STREAM, Ordering::Release);
        h.ready_event.notify();
    }

    /// After [`finish`](Self::finish): waits until every published frame was
    /// consumed and returned (re-publishing those of consumers that die), or
    /// `timeout` passes. Returns whether the ring drained.
    ///
    /// Corruption found meanwhile (a claim word naming no consumer of its
    /// group, a queue position that cannot be, …: checked every 200 ms)
    /// ends the wait with an error and marks the ring failed.
    pub fn drain(&self, timeout: Option<Duration>) -> Result<bool, RingCorrupt> {
        let r = self.drain_inner(timeout);
        self.failing(r)
    }

    fn drain_inner(&self, timeout: Option<Duration>) -> Result<bool, RingCorrupt> {
        let seg = &self.seg;
        let slots = seg.geometry().slots as usize;
        let start = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let roster = {
                let mut st = self.state.lock();
                st.service_roster(seg)?;
                st.collect(seg)?;
                if st.ledger.free_len() >= slots {
                    let h = seg.header();
                    h.flags.fetch_or(FLAG_DRAINED, Ordering::Release);
                    h.ready_event.notify();
                    return Ok(true);
                }
                if timeout.is_some_and(|t| start.elapsed() >= t) {
                    return Ok(false);
                }
                if last_log.elapsed() >= Duration::from_secs(5) {
                    last_log = Instant::now();
                    tracing::info!(
                        outstanding = slots - st.ledger.free_len(),
                        "waiting for consumers to finish the queued frames"
                    );
                }
                st.roster_seen
            };
            seg.header()
                .free_event
                .wait_until(WaitStrategy::FUTEX, PEER_CHECK, || {
                    let changed = seg.header().roster.load(Ordering::Acquire) != roster;
                    let returned = (0..seg.geometry().max_consumers as usize)
                        .any(|c| !return_queue(seg, c).is_empty());
                    (changed || returned).then_some(())
                });
            self.state.lock().reap_dead_consumers(seg)?;
        }
    }

    /// Removes the ring's name from /dev/shm. Attached consumers keep their
    /// mapping until they exit; a new producer may create the name again.
    ///
    /// Only this ring's name is removed: if the name now names another
    /// ring, it is left alone and [`OpenError::NotFound`] returned.
    pub fn unlink(&self) -> Result<(), OpenError> {
        self.seg.unlink_own()
    }

    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    #[cfg(test)]
    pub(crate) fn reap_dead_consumers(&self) -> Result<u64, RingCorrupt> {
        self.state.lock().reap_dead_consumers(&self.seg)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if crate::signals::pid() != self.creator_pid {
            // A forked child's copy: the ring is still the parent's.
            return;
        }
        let h = self.seg.header();
        h.flags.fetch_and(!FLAG_RUNNING, Ordering::Release);
        h.ready_event.notify();
    }
}

impl State {
    fn note_group_drop(&mut self, seg: &Segment, g: usize, n: u64) {
        self.groups[g].dropped += n;
        seg.groups()[g].dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn note_drop(&mut self, seg: &Segment) {
        self.dropped += 1;
        seg.header().dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A free slot now, if the policy lets the producer publish one more
    /// frame; `None` if it must wait.
    fn try_loan(&mut self, seg: &Segment) -> Result<Option<WriteClaim>, RingCorrupt> {
        self.service_roster(seg)?;
        // Collect returned slots as soon as there are any (consumers notify
        // the free event after every return: one load tells), not only when
        // the pool runs dry: the LIFO pool then hands out the slot returned
        // last, still in cache, instead of one untouched for a whole lap of
        // a deep ring.
        let returns = seg.header().free_event.seq();
        if returns != self.returns_seen || self.ledger.free_len() == 0 {
            self.returns_seen = returns;
            self.collect(seg)?;
        }
        // A lossless ring starts when its first group subscribes.
        if self.active == 0 && self.policy == Backpressure::Block {
            self.waits_for = WaitsFor::Subscriber;
            return Ok(None);
        }
        if self.too_far_ahead(seg) {
            self.waits_for = WaitsFor::Room;
            return Ok(None);
        }
        // Only now, when a slot is all it lacks, withdraw a live frame.
        if self.ledger.free_len() == 0 && self.live != 0 {
            self.drop_oldest(seg)
                .map_err(|c| RingCorrupt::new(seg.name(), c))?;
        }
        if self.ledger.free_len() == 0 {
            self.waits_for = WaitsFor::Slot;
            return Ok(None);
        }
        Ok(self.ledger.loan(seg.slot_states()))
    }

    /// Collects returned slots from every consumer's return queue, and
    /// publishes the frames handed back unconsumed to their group again.
    fn collect(&mut self, seg: &Segment) -> Result<usize, RingCorrupt> {
        let mut got = 0;
        let max_groups = seg.geometry().max_groups as usize;
        let mut again = Vec::new();
        for c in 0..seg.geometry().max_consumers as usize {
            let q = return_queue(seg, c);
            if q.is_empty() {
                continue;
            }
            let claims = |g: usize| (g < max_groups).then(|| seg.claims(g));
            match self
                .ledger
                .collect(c, q, claims, seg.slot_states(), &mut again)
            {
                Ok(n) => got += n,
                Err(e) => {
                    // Its slots would never come back, and the consumer
                    // cannot hand back any more: the ring cannot go on.
                    tracing::error!(
                        ring = seg.name(),
                        consumer = c,
                        error = e.0,
                        "a consumer's return queue is corrupt"
                    );
                    return Err(RingCorrupt::new(seg.name(), e));
                }
            }
        }
        if !again.is_empty() {
            self.give_again(seg, &again);
        }
        Ok(got)
    }

    /// Publishes frames handed back unconsumed to their group again (the
    /// ledger checked that the group holds each and that the consumer that
    /// gave it back was reading it), counted as redelivered like those of a
    /// consumer that died.
    fn give_again(&mut self, seg: &Segment, again: &[(usize, usize)]) {
        for &(g, s) in again {
            // Relaxed: published by the Release store of the claim word in
            // `push`, as at publish.
            seg.slot_meta()[s]
                .redeliveries
                .fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.push_to_group(seg, g, s as u32) {
                // Only garbage in the segment gets here: the group loses the
                // frame rather than holding its slot forever.
                tracing::error!(
                    group = g,
                    slot = s,
                    error = e.0,
                    "could not publish a frame handed back unconsumed"
                );
                seg.claims(g)[s].store(SlotState::Free.encode(), Ordering::Relaxed);
                self.note_group_drop(seg, g, 1);
                self.ledger.release(g, s, seg.slot_states());
                continue;
            }
            self.redelivered += 1;
            seg.header().redelivered.fetch_add(1, Ordering::Relaxed);
        }
        seg.header().ready_event.notify();
    }

    /// Admits consumers that asked to join a group and retires those that
    /// left, if the consumer table changed since the last look. One atomic
    /// load when nothing changed.
    fn service_roster(&mut self, seg: &Segment) -> Result<(), RingCorrupt> {
        if !roster::changed(&seg.header().roster, &mut self.roster_seen) {
            return Ok(());
        }
        let mut admitted = false;
        for (c, entry) in seg.consumers().iter().enumerate() {
            match roster::request(entry) {
                Request::Join => {
                    self.admit(seg, c)?;
                    admitted = true;
                }
                Request::Leave { failed } => {
                    let how = if failed {
                        Departure::Failed
                    } else {
                        Departure::Left
                    };
                    self.retire(seg, c, how)?;
                }
                Request::Nothing => {}
            }
        }
        if admitted {
            seg.header().ready_event.notify();
        }
        Ok(())
    }

    fn admit(&mut self, seg: &Segment, c: usize) -> Result<(), RingCorrupt> {
        let entry = &seg.consumers()[c];
        let (name, len) = load_name(&entry.group_name);
        let name = &name[..len];
        let refuse = |why: &str| {
            tracing::warn!(consumer = c, group = %String::from_utf8_lossy(name), "refusing a consumer: {why}");
            roster::refuse(entry);
        };
        if std::str::from_utf8(name).map_or(true, |n| validate_group_name(n).is_err()) {
            refuse("invalid group name");
            return Ok(());
        }
        if let Some(old) = self.member_of[c] {
            // Asked again (cannot happen with our consumers): leave first.
            self.leave_group(seg, c, old as usize, Departure::Left)?;
        }
        // The policy it asks for, should it create the group (untrusted).
        let policy = match entry.policy.load(Ordering::Relaxed) {
            POLICY_RING => self.policy,
            p if p == BACKPRESSURE_BLOCK + 1 => Backpressure::Block,
            p if p == BACKPRESSURE_DROP_OLDEST + 1 => Backpressure::DropOldest,
            _ => {
                refuse("invalid backpressure request");
                return Ok(());
            }
        };
        let g = match self
            .groups
            .iter()
            .position(|g| g.state != GROUP_UNUSED && g.name() == name)
        {
            Some(g) => {
                if self.groups[g].state == GROUP_LINGERING {
                    // A consumer came back in time: it gets the frames kept.
                    self.groups[g].state = GROUP_ACTIVE;
                    self.groups[g].linger_until = None;
                    let e = &seg.groups()[g];
                    e.linger_until_ns.store(0, Ordering::Relaxed);
                    e.state.store(GROUP_ACTIVE, Ordering::Release);
                    tracing::info!(group = %String::from_utf8_lossy(name), "group rejoined in time: its frames were kept");
                }
                g
            }
            None => match self.groups.iter().position(|g| g.state == GROUP_UNUSED) {
                Some(g) => {
                    // A new ad-hoc group: subscribed from the next frame.
                    let grp = &mut self.groups[g];
                    grp.state = GROUP_ACTIVE;
                    grp.name[..len].copy_from_slice(name);
                    grp.name_len = len;
                    grp.dropped = 0;
                    grp.policy = policy;
                    grp.linger_until = None;
                    let e = &seg.groups()[g];
                    group_queue(seg, g).clear();
                    store_name(&e.name, name);
                    e.since_seq.store(
                        seg.header().published.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    e.dropped.store(0, Ordering::Relaxed);
                    e.delivered.store(0, Ordering::Relaxed);
                    e.policy.store(policy_word(policy), Ordering::Relaxed);
                    e.linger_until_ns.store(0, Ordering::Relaxed);
                    e.state.store(GROUP_ACTIVE, Ordering::Release);
                    self.active |= 1 << g;
                    if policy == Backpressure::DropOldest {
                        self.live |= 1 << g;
                    }
                    tracing::info!(group = %String::from_utf8_lossy(name), live = policy == Backpressure::DropOldest, "group joined");
                    g
                }
                None => {
                    refuse("the group table is full (max_groups)");
                    return Ok(());
                }
            },
        };
        self.groups[g].members |= 1 << c;
        self.member_of[c] = Some(g as u8);
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        roster::admit(entry, g as u8);
        Ok(())
    }

    /// Removes consumer `c` from group `g`. Its unreturned frames are
    /// published to the group again, or released if the group goes away with
    /// it.
    fn leave_group(
        &mut self,
        seg: &Segment,
        c: usize,
        g: usize,
        how: Departure,
    ) -> Result<u64, RingCorrupt> {
        let died = how == Departure::Died;
        self.groups[g].members &= !(1 << c);
        self.member_of[c] = None;
        let last = self.groups[g].members == 0;
        if last
            && how != Departure::Left
            && self.groups[g].state == GROUP_ACTIVE
            && !self.linger.is_zero()
        {
            // Keep its frames for a consumer that restarts.
            // None (an absurd period): it never expires.
            let until = Instant::now().checked_add(self.linger);
            self.groups[g].state = GROUP_LINGERING;
            self.groups[g].linger_until = until;
            let e = &seg.groups()[g];
            let linger_ns = u64::try_from(self.linger.as_nanos()).unwrap_or(u64::MAX);
            e.linger_until_ns
                .store(monotonic_ns().saturating_add(linger_ns), Ordering::Relaxed);
            e.state.store(GROUP_LINGERING, Ordering::Release);
            tracing::warn!(
                group = %String::from_utf8_lossy(self.groups[g].name()),
                "the group's last consumer {}: its frames are kept for {:?} for a consumer that restarts",
                if died { "died" } else { "failed" },
                self.linger
            );
        }
        let stays = !last || matches!(self.groups[g].state, GROUP_DECLARED | GROUP_LINGERING);
        let mut redelivered = 0;
        if stays {
            let claims = seg.claims(g);
            for s in 0..self.ledger.slots() {
                if !self.ledger.read_by(c, g, s, claims) {
                    continue;
                }
                seg.slot_meta()[s]
                    .redeliveries
                    .fetch_add(1, Ordering::Relaxed);
                self.push_to_group(seg, g, s as u32)
                    .map_err(|e| RingCorrupt::new(seg.name(), e))?;
                redelivered += 1;
            }
            if redelivered > 0 {
                seg.header().ready_event.notify();
            }
        } else {
            let released = self.release_group(seg, g);
            tracing::info!(
                group = %String::from_utf8_lossy(self.groups[g].name()),
                released,
                "group left (its last consumer {})",
                match how {
                    Departure::Died => "died",
                    Departure::Failed => "failed",
                    Departure::Left => "detached",
                }
            );
        }
        seg.groups()[g]
            .members
            .store(self.groups[g].members.count_ones(), Ordering::Relaxed);
        if died && redelivered > 0 {
            tracing::warn!(
                consumer = c,
                frames = redelivered,
                "consumer died; its frames were published again"
            );
        }
        Ok(redelivered)
    }

    /// Ad-hoc group `g` has no consumer left: it stops holding slots and
    /// its entry is freed. Returns the frames it released unconsumed.
    fn release_group(&mut self, seg: &Segment, g: usize) -> u64 {
        let mut released = 0;
        for (s, claim) in seg.claims(g).iter().enumerate() {
            if !self.ledger.holds(g, s) {
                continue;
            }
            // No consumer of the group is left to claim or return it.
            claim.store(SlotState::Free.encode(), Ordering::Relaxed);
            released += 1;
            self.ledger.release(g, s, seg.slot_states());
        }
        group_queue(seg, g).clear();
        self.note_group_drop(seg, g, released);
        self.active &= !(1 << g);
        self.live &= !(1 << g);
        self.groups[g].state = GROUP_UNUSED;
        self.groups[g].linger_until = None;
        let e = &seg.groups()[g];
        e.linger_until_ns.store(0, Ordering::Relaxed);
        e.state.store(GROUP_UNUSED, Ordering::Release);
        released
    }

    /// Releases the lingering groups whose period is over.
    fn expire_lingering(&mut self, seg: &Segment) {
        let now = Instant::now();
        for g in 0..self.groups.len() {
            if self.groups[g].state == GROUP_LINGERING
                && self.groups[g].linger_until.is_some_and(|t| now >= t)
            {
                let released = self.release_group(seg, g);
                tracing::warn!(
                    group = %String::from_utf8_lossy(self.groups[g].name()),
                    released,
                    "no consumer came back to the group in time: its frames were released"
                );
            }
        }
    }

    /// Frees consumer entry `c` after it left or died.
    fn retire(&mut self, seg: &Segment, c: usize, how: Departure) -> Result<u64, RingCorrupt> {
        let died = how == Departure::Died;
        // Whatever it handed back first.
        self.collect(seg)?;
        let entry = &seg.consumers()[c];
        let n = match self.member_of[c] {
            Some(g) => self.leave_group(seg, c, g as usize, how)?,
            None => 0,
        };
        roster::free_entry(entry);
        if died {
            tracing::warn!(consumer = c, "consumer died");
        }
        self.redelivered += n;
        seg.header().redelivered.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Re-publishes the frames of consumers that died, and frees their table
    /// entries. Returns the number of frames re-published.
    fn reap_dead_consumers(&mut self, seg: &Segment) -> Result<u64, RingCorrupt> {
        self.last_reap = Instant::now();
        self.service_roster(seg)?;
        self.expire_lingering(seg);
        let mut total = 0;
        for (c, entry) in seg.consumers().iter().enumerate() {
            let owner = entry.owner.load(Ordering::Acquire);
            if owner == 0 || liveness::consumer_alive(seg, c, owner) {
                continue;
            }
            // Gone: it left (it says so before its lock goes with its exit)
            // or it died.
            let how = match roster::request(entry) {
                Request::Leave { failed: false } => Departure::Left,
                Request::Leave { failed: true } => Departure::Failed,
                _ => Departure::Died,
            };
            total += self.retire(seg, c, how)?;
        }
        self.check_liveness(seg)?;
        Ok(total)
    }

    /// Corruption that would leave the producer waiting forever: returns
    /// that cannot be collected, frames nobody can hand back.
    fn check_liveness(&mut self, seg: &Segment) -> Result<(), RingCorrupt> {
        // A return queue whose positions cannot be is an error here even
        // when no return was signalled.
        self.collect(seg)?;
        self.check_ownership(seg)
            .map_err(|e| RingCorrupt::new(seg.name(), e))
    }

    /// Checks that every frame a group holds can still come back: its claim
    /// word is `READY` at a position between its queue's head and tail (a
    /// consumer can take it), or `READING` by a consumer admitted to that
    /// group (it hands it back, or dies and the frame is recovered); and
    /// that each group's queue positions can be. Anything else is a word no
    /// conforming process writes, which would leave the producer waiting
    /// forever. Runs with the periodic reap (every 200 ms, and while
    /// draining), not per frame: at most groups × slots loads.
    fn check_ownership(&self, seg: &Segment) -> Result<(), Corrupt> {
        let max_consumers = seg.geometry().max_consumers as usize;
        for g in 0..self.groups.len() {
            if self.groups[g].state == GROUP_UNUSED {
                continue;
            }
            let q = &seg.groups()[g].ready;
            // We alone write the tail; read it before the head (which only
            // grows, and never past the tail we wrote).
            let t = q.tail.load(Ordering::Relaxed);
            let h = q.head.load(Ordering::Acquire);
            if h > t || t - h > group_queue(seg, g).capacity() {
                return Err(Corrupt("ready queue positions (head/tail)"));
            }
            for (s, claim) in seg.claims(g).iter().enumerate() {
                if !self.ledger.holds(g, s) {
                    continue;
                }
                // Read after the head: a claim word still READY(pos) with
                // pos below that head can never be taken (the head moves
                // past a position only after its claim word left READY).
                match SlotState::decode(claim.load(Ordering::Acquire)) {
                    Some(SlotState::Ready { pos }) => {
                        // (Positions are compared unmasked until they pass
                        // 2⁴⁸, which no ring reaches.)
                        if t <= crate::slot::POS_MASK && (pos < h || pos >= t) {
                            return Err(Corrupt(
                                "claim word: READY at a queue position no consumer can reach",
                            ));
                        }
                    }
                    Some(SlotState::Reading { owner, .. }) => {
                        let owner = owner as usize;
                        if owner >= max_consumers {
                            return Err(Corrupt(
                                "claim word: READING by a consumer index out of range",
                            ));
                        }
                        if self.member_of[owner] != Some(g as u8) {
                            return Err(Corrupt(
                                "claim word: READING by a consumer that is not a member of the group",
                            ));
                        }
                    }
                    Some(SlotState::Free | SlotState::Writing) => {
                        return Err(Corrupt(
                            "claim word: a frame the group holds is marked free",
                        ));
                    }
                    None => return Err(Corrupt("claim word")),
                }
            }
        }
        Ok(())
    }

    /// Publishes slot `s` in group `g`'s queue, first making room under the
    /// drop-oldest policy.
    fn push_to_group(
        &mut self,
        seg: &Segment,
        g: usize,
        s: u32,
    ) -> Result<(), crate::error::Corrupt> {
        let q = group_queue(seg, g);
        if self.groups[g].policy == Backpressure::DropOldest {
            // Withdrawn frames leave stale cells until a consumer passes them;
            // a group that takes nothing would fill its queue with them.
            while q.len() + 2 > q.capacity() {
                if let Some(victim) = q.evict_head()?.map(|v| v as usize) {
                    if self.ledger.holds(g, victim) {
                        self.note_group_drop(seg, g, 1);
                        self.ledger.release(g, victim, seg.slot_states());
                        if self.ledger.holders(victim) == 0 {
                            self.note_drop(seg);
                        }
                    }
                }
            }
        }
        q.push(s)?;
        Ok(())
    }

    /// Whether some subscribed lossless group already has `max_queued`
    /// frames waiting (publish no further ahead of its consumers).
    fn too_far_ahead(&self, seg: &Segment) -> bool {
        bits(self.active & !self.live).any(|g| group_queue(seg, g).len() >= self.max_queued)
    }

    /// Withdraws, from the live groups, the oldest published frame that no
    /// live consumer has claimed and no lossless group holds, and returns
    /// its slot to the free pool. `false` when there is none (every such
    /// slot is being read, or lossless groups hold them all).
    fn drop_oldest(&mut self, seg: &Segment) -> Result<bool, crate::error::Corrupt> {
        loop {
            // The oldest slot held only by live groups, all with it unclaimed.
            let mut best: Option<usize> = None;
            for s in 0..self.ledger.slots() {
                let mask = self.ledger.holders(s);
                if mask == 0
                    || mask & !self.live != 0
                    || best.is_some_and(|b| self.ledger.seq(b) <= self.ledger.seq(s))
                {
                    continue;
                }
                let unclaimed = bits(mask).all(|g| {
                    matches!(
                        SlotState::decode(seg.claims(g)[s].load(Ordering::Acquire)),
                        Some(SlotState::Ready { .. })
                    )
                });
                if unclaimed {
                    best = Some(s);
                }
            }
            let Some(s) = best else { return Ok(false) };
            for g in bits(self.ledger.holders(s)) {
                if group_queue(seg, g).revoke(s as u32)? {
                    self.note_group_drop(seg, g, 1);
                    self.ledger.release(g, s, seg.slot_states());
                }
            }
            if self.ledger.holders(s) == 0 {
                self.note_drop(seg);
                return Ok(true);
            }
            // A consumer claimed it meanwhile; the scan now skips it.
        }
    }
}
