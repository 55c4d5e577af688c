//! `framering status`: a ring's read-only snapshot
//! ([`framering_ring::inspect`]) rendered as text or JSON, once or
//! refreshed.

use framering_ring::inspect::{
    ConsumerStatus, GroupStatus, ProducerStatus, RingStatus, RingView, SlotCounts,
};
use serde::Serialize;

/// Why a running producer publishes nothing, when the ring says: no group
/// to publish to, or no free slot (and which groups hold them). `None` when
/// it publishes, or waits for something the ring does not show (its input).
pub fn blocked(r: &RingStatus) -> Option<String> {
    let p = &r.producer;
    if !p.alive || p.state != "running" || p.fps > 0.0 {
        return None;
    }
    if p.waiting_for_input {
        return Some("for its input (nothing to read yet)".into());
    }
    if r.groups.is_empty() && r.backpressure == "block" {
        return Some("no consumer group yet: waiting for a first consumer to join".into());
    }
    if r.slot_states.free > 0 {
        return None;
    }
    let held: Vec<String> = r
        .groups
        .iter()
        .filter(|g| g.ready + g.reading + g.returned > 0)
        .map(|g| {
            let frames = g.ready + g.reading + g.returned;
            match (g.members, g.lingering) {
                (0, Some(left)) => format!(
                    "group {:?} has {frames} frames and no consumer (its last one died; kept {:.0} s more)",
                    g.name,
                    left.as_secs_f64()
                ),
                (0, None) => format!("group {:?} has {frames} frames and no consumer", g.name),
                (n, _) => format!("group {:?} has {frames} frames and {n} consumer(s)", g.name),
            }
        })
        .collect();
    Some(if held.is_empty() {
        "no free slot".into()
    } else {
        format!("no free slot: {}", held.join("; "))
    })
}

/// A `top`-like text rendering of a snapshot.
pub fn render(r: &RingStatus) -> String {
    let s = &r.slot_states;
    let p = &r.producer;
    let mut out = format!(
        "ring {}: {} slots of {}x{}x{} {}, {} bytes of user metadata each\n\
         slots: {} free, {} writing, {} ready, {} reading, {} returned{}{}; queue depth {}; backpressure {}\n\
         producer pid {} {}: {} published, {:.1} fps, {} redelivered, {} skipped, {} dropped\n",
        r.name,
        r.slots,
        r.height,
        r.width,
        r.channels,
        r.dtype,
        r.user_meta_bytes,
        s.free,
        s.writing,
        s.ready,
        s.reading,
        s.returned,
        if s.corrupt > 0 { format!(", {} CORRUPT", s.corrupt) } else { String::new() },
        // A slot returned by one group may be ready or being read in
        // another: each slot is counted once here, per group below.
        if r.groups.len() > 1 {
            " (each slot once, in its least advanced group's state)"
        } else {
            ""
        },
        r.queue_depth,
        r.backpressure,
        p.pid,
        // A dead producer's state says so ("died while running").
        if p.alive {
            format!("(alive) {}", p.state)
        } else {
            p.state.to_string()
        },
        p.published,
        p.fps,
        p.redelivered,
        p.skipped,
        p.dropped,
    );
    if let Some(why) = blocked(r) {
        out += &format!("producer waiting: {why}\n");
    }
    for g in &r.groups {
        let mut kind = String::from(if g.declared { "declared" } else { "ad hoc" });
        if g.live {
            kind += ", live";
        }
        if let Some(left) = g.lingering {
            kind += &format!(
                ", its last consumer died: frames kept {:.0} s more",
                left.as_secs_f64()
            );
        }
        out += &format!(
            "group {} ({}): {} consumers, {} delivered, {} dropped, queue {}; its slots: {} ready, {} reading, {} returned\n",
            g.name,
            kind,
            g.members,
            g.delivered,
            g.dropped,
            g.queue_depth,
            g.ready,
            g.reading,
            g.returned
        );
    }
    out += &format!(
        "{:>5} {:>8} {:>6} {:>12} {:>12} {:>10} {:>5} {:>10} {:>10} {:>6}\n",
        "ENTRY", "PID", "ALIVE", "GROUP", "FRAMES", "FPS", "HELD", "OLDEST", "HEARTBEAT", "LAG"
    );
    for c in &r.consumers {
        let oldest = c
            .oldest_held_age_s
            .map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"));
        out += &format!(
            "{:>5} {:>8} {:>6} {:>12} {:>12} {:>10.1} {:>5} {:>10} {:>9.1}s {:>6}\n",
            c.index,
            c.pid,
            if c.alive { "yes" } else { "no" },
            if c.state == "active" {
                c.group_name.as_str()
            } else {
                c.state
            },
            c.frames,
            c.fps,
            c.slots_held,
            oldest,
            c.heartbeat_age_s,
            c.lag_frames
        );
    }
    if r.consumers.is_empty() {
        out += "(no consumers attached)\n";
    }
    out
}

/// The snapshot as pretty-printed JSON (the same fields as the text).
pub fn to_json(s: &RingStatus) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Json<'a>(#[serde(with = "RingStatusDef")] &'a RingStatus);
    serde_json::to_string_pretty(&Json(s))
}

// serde's remote derives: the inspect types stay free of serde (the ring
// crate does not depend on it); the compiler checks these mirrors field by
// field against them.

#[derive(Serialize)]
#[serde(remote = "SlotCounts")]
struct SlotCountsDef {
    free: u32,
    writing: u32,
    ready: u32,
    reading: u32,
    returned: u32,
    corrupt: u32,
}

#[derive(Serialize)]
#[serde(remote = "ProducerStatus")]
struct ProducerStatusDef {
    pid: u32,
    alive: bool,
    state: &'static str,
    published: u64,
    redelivered: u64,
    skipped: u64,
    dropped: u64,
    fps: f64,
    waiting_for_input: bool,
}

#[derive(Serialize)]
#[serde(remote = "ConsumerStatus")]
struct ConsumerStatusDef {
    index: usize,
    pid: u32,
    alive: bool,
    group: u32,
    group_name: String,
    state: &'static str,
    skipped: u64,
    frames: u64,
    fps: f64,
    slots_held: u32,
    oldest_held_age_s: Option<f64>,
    heartbeat_age_s: f64,
    lag_frames: u64,
}

#[derive(Serialize)]
#[serde(remote = "GroupStatus")]
struct GroupStatusDef {
    index: usize,
    name: String,
    declared: bool,
    live: bool,
    #[serde(serialize_with = "secs")]
    lingering: Option<std::time::Duration>,
    members: u32,
    delivered: u64,
    dropped: u64,
    queue_depth: u64,
    ready: u32,
    reading: u32,
    returned: u32,
}

#[derive(Serialize)]
#[serde(remote = "RingStatus")]
struct RingStatusDef {
    name: String,
    slots: u32,
    height: u32,
    width: u32,
    channels: u32,
    #[serde(serialize_with = "dtype")]
    dtype: framering_ring::Dtype,
    user_meta_bytes: u32,
    #[serde(with = "SlotCountsDef")]
    slot_states: SlotCounts,
    backpressure: &'static str,
    queue_depth: u64,
    #[serde(serialize_with = "groups")]
    groups: Vec<GroupStatus>,
    #[serde(with = "ProducerStatusDef")]
    producer: ProducerStatus,
    #[serde(serialize_with = "consumers")]
    consumers: Vec<ConsumerStatus>,
}

fn dtype<S: serde::Serializer>(v: &framering_ring::Dtype, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.name())
}

fn secs<S: serde::Serializer>(v: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn groups<S: serde::Serializer>(v: &[GroupStatus], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct G<'a>(#[serde(with = "GroupStatusDef")] &'a GroupStatus);
    s.collect_seq(v.iter().map(G))
}

fn consumers<S: serde::Serializer>(v: &[ConsumerStatus], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct C<'a>(#[serde(with = "ConsumerStatusDef")] &'a ConsumerStatus);
    s.collect_seq(v.iter().map(C))
}

/// `framering status`: samples the ring `name` over `interval` seconds and
/// writes its status to `out` (as JSON with `json`), again and again with
/// `watch` until a stop signal.
pub fn run(
    name: &str,
    watch: bool,
    json: bool,
    interval: f64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i32> {
    anyhow::ensure!(
        interval.is_finite() && (0.01..=3600.0).contains(&interval),
        "--interval must be between 0.01 and 3600 seconds"
    );
    let view = RingView::open(name)?;
    let interval = std::time::Duration::from_secs_f64(interval);
    framering_ring::signals::install();
    loop {
        let s = view.sample(interval);
        if json {
            writeln!(out, "{}", to_json(&s)?)?;
        } else if watch {
            // Clear the screen and home the cursor, like top.
            write!(out, "\x1b[2J\x1b[H{}", render(&s))?;
        } else {
            write!(out, "{}", render(&s))?;
        }
        out.flush()?;
        if !watch || framering_ring::signals::stop_requested() {
            return Ok(super::exit::OK);
        }
    }
}
