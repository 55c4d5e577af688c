//! [`ProducerBuilder`]: the settings of a new ring.

use super::groups::{auto_max_queued, policy_word, Group, State, WaitsFor};
use super::Producer;
use crate::error::{CreateError, OpenError};
use crate::options::{validate_group_name, Backpressure};
use crate::platform::clock::WallClock;
use crate::platform::liveness;
use crate::platform::process::ProcessId;
use crate::platform::segment::{CreateFailure, Occupied, Segment, INIT_GRACE};
use crate::protocol::event::WaitStrategy;
use crate::protocol::layout::USER_META_DEFAULT;
use crate::protocol::layout::{
    RingSpec, FLAG_LIVENESS_LOCK, FLAG_RUNNING, GROUP_DECLARED, GROUP_NAME_MAX,
};
use crate::protocol::ledger::{Ledger, SlotReuse};
use crate::protocol::roster::store_name;
use crate::protocol::sync::Ordering;
use crate::shape::FrameShape;
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Creates a ring and its [`Producer`]. Start with [`Producer::builder`].
///
/// Every setting but the frame shape has a default: 8 slots, 16 consumers,
/// 8 groups, no declared group (consumers create theirs), a linger period of
/// 30 s, [`Backpressure::Block`], mode 0600,
/// [`WaitStrategy::SPIN_THEN_FUTEX`], [`SlotReuse::LastFreed`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct ProducerBuilder {
    pub(super) name: String,
    pub(super) shape: Option<FrameShape>,
    pub(super) slots: u32,
    pub(super) max_consumers: u32,
    pub(super) max_groups: u32,
    pub(super) groups: Vec<(String, Option<Backpressure>)>,
    pub(super) linger: Duration,
    pub(super) backpressure: Backpressure,
    pub(super) max_queued: u32,
    pub(super) mode: u32,
    pub(super) wait: WaitStrategy,
    pub(super) user_meta_bytes: u32,
    pub(super) frame_rate: u64,
    pub(super) reuse: SlotReuse,
}

impl ProducerBuilder {
    pub(super) fn new(name: &str) -> Self {
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
            reuse: SlotReuse::LastFreed,
        }
    }

    /// The frames' shape and element type (required).
    pub fn shape(mut self, shape: FrameShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// Bytes of user metadata each frame may carry beside its pixels
    /// ([`FrameMeta::user_meta`](crate::FrameMeta::user_meta)), 0 to 65536 (default 256). They share the
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

    /// Which free slot [`Producer::loan`] hands out when several are (default
    /// [`SlotReuse::LastFreed`]): [`SlotReuse::FirstFreed`] for a producer
    /// that decodes each frame into its slot, with a few more slots than it
    /// keeps in flight.
    ///
    /// ```
    /// # use framering_ring::{FrameShape, Producer, SlotReuse};
    /// let b = Producer::builder("photos")
    ///     .shape(FrameShape::new(720, 1080, 3))
    ///     .slots(10)
    ///     .reuse(SlotReuse::FirstFreed);
    /// ```
    pub fn reuse(mut self, reuse: SlotReuse) -> Self {
        self.reuse = reuse;
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
        // The frames' memory is reserved in the background from the first
        // publish on; `publish` reports its failure once it ended.
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
        let ledger = Ledger::new(g.slots as usize, seg.base_addr()).with_reuse(b.reuse);
        Ok(Producer {
            creator_pid: crate::platform::signals::process_id(),
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
                wall_clock: WallClock::default(),
                redelivered: 0,
                dropped: 0,
                active,
                live,
                waits_for: WaitsFor::Slot,
                linger: b.linger,
                groups,
                member_of: vec![None; g.max_consumers as usize],
                ret_heads: vec![0; g.max_consumers as usize],
                roster_seen: 0,
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
}
