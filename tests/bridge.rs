//! `framering bridge send|recv` with the real binaries over real zenoh:
//! loopback byte-identity and order, a sender killed and restarted, a
//! receiver killed and restarted (losing nothing), forged messages from
//! another peer, two network namespaces joined by a 1 Gbit/s veth pair
//! (live and lossless), and a long link between namespaces (50 Mbit/s,
//! 20 ms each way) that live mode's window fills.
//!
//! The tests run one at a time ([`serial`]): each moves frames through
//! several processes, and a cold, loaded 2-core machine running them all at
//! once starves some of them for many seconds.
#![cfg(feature = "bridge")]

mod common;

use common::{signal, stderr, wait_with_timeout};
use framering::ring::{Consumer, Take};
use nix::sys::signal::Signal;
use std::hash::{Hash, Hasher};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zenoh::Wait;

const FRAMERING: &str = env!("CARGO_BIN_EXE_framering");
const PRODUCER: &str = env!("CARGO_BIN_EXE_framering-producer");

thread_local! {
    /// The children the current test spawned.
    static SPAWNED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `Command::spawn` that the test's [`Reaper`] knows of.
trait SpawnReaped {
    fn spawn_reaped(&mut self) -> Child;
}

impl SpawnReaped for Command {
    fn spawn_reaped(&mut self) -> Child {
        let child = self.spawn().unwrap();
        SPAWNED.with(|s| s.borrow_mut().push(child.id()));
        child
    }
}

/// Held by each test: when the test panics, SIGKILLs the children it
/// spawned, so that a failed run leaves no receiver waiting forever for its
/// sender (their segments are then stale: `framering clean`). (A child the test already waited for is
/// gone; that its pid was reused in the moments since is a risk accepted
/// for a test that is failing anyway.)
struct Reaper;

impl Drop for Reaper {
    fn drop(&mut self) {
        let pids = SPAWNED.with(|s| std::mem::take(&mut *s.borrow_mut()));
        if std::thread::panicking() {
            for pid in pids {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by each test: one at a time (a failed test does not block the
/// others).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a test waits for a state (a ring to exist, frames to arrive):
/// generous for a cold, loaded 2-core machine.
const STATE_WAIT: Duration = Duration::from_secs(120);

/// Waits until `cond` holds, at most `limit` (then panics naming `what`).
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the ring `name` exists and has published at least `n`
/// frames (at most [`STATE_WAIT`]).
fn wait_published(name: &str, n: u64) {
    wait_until(&format!("{name} published {n} frames"), STATE_WAIT, || {
        framering::ring::inspect::RingView::open(name)
            .is_ok_and(|v| v.snapshot().producer.published >= n)
    });
}

fn assets() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/assets")
}

fn name(tag: &str) -> String {
    format!("frb-{tag}-{}", std::process::id())
}

/// The source ring, destination ring and key of one test (`tag` keeps the
/// tests' names apart).
fn names(tag: &str) -> (String, String, String) {
    (
        name(&format!("{tag}src")),
        name(&format!("{tag}dst")),
        format!("frb-test/{}", name(&format!("{tag}key"))),
    )
}

/// A zenoh endpoint on a loopback port nobody listens on now.
fn loopback_listen() -> String {
    format!("tcp/127.0.0.1:{}", common::free_port())
}

/// The real-image producer of ring `ring`: `loops` passes over the assets,
/// fitted to `h`×`w`×3, into the groups `groups`, with extra flags.
fn producer(ring: &str, h: u32, w: u32, loops: u32, groups: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(PRODUCER);
    c.args(["--config", "/dev/null", "--ring", ring, "--quiet"]);
    c.args(["--height", &h.to_string(), "--width", &w.to_string()]);
    c.args(["--channels", "3", "--input", assets(), "--loop"]);
    c.arg(loops.to_string());
    c.args(["--loop-cache-mb", "512", "--groups", groups]);
    c.args(extra);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// `framering bridge ROLE` with the test's zenoh settings (no multicast
/// scouting: tests running at once must not find each other).
fn bridge(role: &str, key: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(FRAMERING);
    c.args(["bridge", role, "--config", "/dev/null", "--key", key]);
    c.args(["--multicast-scouting", "false", "--quiet"]);
    c.args(extra);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Hashes every frame of `ring`'s group `group` until the end of the
/// stream (or `limit`), in order.
fn hashes(ring: &str, group: &str, limit: Duration) -> Vec<u64> {
    let c = Consumer::builder(ring)
        .group(group)
        .wait_for_ring(STATE_WAIT)
        .attach()
        .unwrap_or_else(|e| panic!("attach to {ring}: {e}"));
    let start = Instant::now();
    let mut out = vec![];
    while start.elapsed() < limit {
        let take = match c.take(Duration::from_millis(200)) {
            Err(e) if e.is_timeout() => continue,
            r => r.unwrap_or_else(|e| panic!("{ring}: {e}")),
        };
        match take {
            Take::Frame(f) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                f.pixels().hash(&mut h);
                out.push(h.finish());
            }
            Take::EndOfStream => return out,
            other => panic!("{ring}: {other:?}"),
        }
    }
    panic!(
        "{ring}: no end of stream within {limit:?} ({} frames)",
        out.len()
    );
}

/// Lines of a child's stderr, each with the instant it was read.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns when it was read.
fn wait_line(rx: &mpsc::Receiver<(Instant, String)>, needle: &str, limit: Duration) -> Instant {
    let until = Instant::now() + limit;
    let mut seen = vec![];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((t, line)) if line.contains(needle) => return t,
            Ok((_, line)) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no line with {needle:?} within {limit:?}; saw:\n{}",
        seen.join("\n")
    );
}

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn loopback_frames_arrive_byte_identical_and_in_order() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("");
    let listen = loopback_listen();
    let recv = bridge(
        "recv",
        &key,
        &["--ring", &dst, "--groups", "check", "--listen", &listen],
    )
    .spawn_reaped();
    // 8 real images (JPEG, PNG, BMP; gray, RGBA, 16-bit) × 38 = 304 frames.
    let prod = producer(&src, 360, 480, 38, "bridge,ref", &[]).spawn_reaped();
    let send = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    let reference = std::thread::spawn({
        let src = src.clone();
        move || hashes(&src, "ref", Duration::from_secs(60))
    });
    let bridged = hashes(&dst, "check", Duration::from_secs(60));
    let reference = reference.join().unwrap();
    let send = wait_with_timeout(send, Duration::from_secs(20));
    let recv = wait_with_timeout(recv, Duration::from_secs(20));
    let prod = wait_with_timeout(prod, Duration::from_secs(20));
    assert_eq!(exit_code(&send), Some(0), "sender: {}", stderr(&send));
    assert_eq!(exit_code(&recv), Some(0), "receiver: {}", stderr(&recv));
    assert_eq!(exit_code(&prod), Some(0), "producer: {}", stderr(&prod));
    assert!(reference.len() >= 300, "{} frames", reference.len());
    assert_eq!(bridged.len(), reference.len(), "every frame arrived");
    assert!(bridged == reference, "frames differ or are out of order");
    // Real images: the frames are not all alike.
    let distinct: std::collections::BTreeSet<_> = reference.iter().collect();
    assert!(distinct.len() >= 8, "{} distinct frames", distinct.len());
    assert!(
        !Path::new(&format!("/dev/shm/{dst}")).exists(),
        "receiver ring removed"
    );
}

#[test]
fn a_killed_sender_is_reported_within_a_second_and_a_restarted_one_resumes() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("k");
    let listen = loopback_listen();
    let mut recv = bridge(
        "recv",
        &key,
        &["--ring", &dst, "--groups", "check", "--listen", &listen],
    )
    .env("RUST_LOG", "info")
    .spawn_reaped();
    let lines = stderr_lines(&mut recv);
    // 8 × 60 = 480 frames at 100 fps: about 5 s.
    let prod = producer(&src, 120, 160, 60, "bridge", &["--fps-limit", "100"]).spawn_reaped();
    let reader = std::thread::spawn({
        let dst = dst.clone();
        move || hashes(&dst, "check", Duration::from_secs(60))
    });
    let sender = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    wait_published(&dst, 30);
    signal(&sender, Signal::SIGKILL);
    let killed = Instant::now();
    let _ = wait_with_timeout(sender, Duration::from_secs(5));
    let reported = wait_line(&lines, "sender lost", Duration::from_secs(5));
    let delay = reported.saturating_duration_since(killed);
    assert!(delay < Duration::from_secs(1), "reported after {delay:?}");
    let before = framering::ring::inspect::RingView::open(&dst)
        .unwrap()
        .snapshot()
        .producer
        .published;
    // The receiver's ring is still there; a new sender resumes it.
    let sender = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    wait_line(&lines, "sender is alive", STATE_WAIT);
    wait_published(&dst, before + 30);
    let sender = wait_with_timeout(sender, Duration::from_secs(30));
    assert_eq!(exit_code(&sender), Some(0), "sender: {}", stderr(&sender));
    let got = reader.join().unwrap();
    assert!(got.len() as u64 > before + 30, "{} frames", got.len());
    let recv = wait_with_timeout(recv, Duration::from_secs(20));
    assert_eq!(exit_code(&recv), Some(0));
    let prod = wait_with_timeout(prod, Duration::from_secs(20));
    assert_eq!(exit_code(&prod), Some(0), "producer: {}", stderr(&prod));
}

#[test]
fn exit_on_loss_ends_the_stream_with_exit_4() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("l");
    let listen = loopback_listen();
    let recv = bridge(
        "recv",
        &key,
        &[
            "--ring",
            &dst,
            "--listen",
            &listen,
            "--exit-on-loss",
            "--groups",
            "check",
        ],
    )
    .spawn_reaped();
    let mut prod = producer(&src, 64, 64, 1000, "bridge", &["--fps-limit", "200"]).spawn_reaped();
    let sender = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    let reader = std::thread::spawn({
        let dst = dst.clone();
        move || hashes(&dst, "check", Duration::from_secs(30))
    });
    wait_published(&dst, 10);
    signal(&sender, Signal::SIGKILL);
    let killed = Instant::now();
    let recv = wait_with_timeout(recv, Duration::from_secs(10));
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(exit_code(&recv), Some(4), "receiver: {}", stderr(&recv));
    assert!(
        stderr(&recv).contains("sender was lost"),
        "{}",
        stderr(&recv)
    );
    // The local stream ended: its consumer got an end of stream.
    assert!(reader.join().unwrap().len() >= 10);
    let _ = wait_with_timeout(sender, Duration::from_secs(5));
    signal(&prod, Signal::SIGTERM);
    let _ = prod.wait();
}

/// A frame as the tests identify it across hosts: its capture time (the
/// same on both sides, unique per frame) and a hash of its pixels.
type FrameId = (u64, u64);

fn frame_id(f: &framering::ring::Frame) -> FrameId {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    f.pixels().hash(&mut h);
    (f.info().capture_ns, h.finish())
}

/// Every frame of `ring`'s group `group` until the end of the stream, in
/// order, as a consumer restarted by a supervisor loop whenever the ring's
/// producer dies (the receiver killed; its ring reclaimed by the next one)
/// sees them. `taken` counts them as they arrive.
fn supervised(ring: &str, group: &str, taken: &AtomicUsize) -> Vec<FrameId> {
    let start = Instant::now();
    let mut out = vec![];
    'attach: loop {
        assert!(
            start.elapsed() < 2 * STATE_WAIT,
            "{ring}: no end of stream ({} frames)",
            out.len()
        );
        let c = match Consumer::builder(ring)
            .group(group)
            .wait_for_ring(STATE_WAIT)
            .attach()
        {
            Ok(c) => c,
            // The dead receiver's ring, being reclaimed: attach again.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        loop {
            let take = match c.take(Duration::from_millis(200)) {
                Err(e) if e.is_timeout() => continue,
                r => r.unwrap_or_else(|e| panic!("{ring}: {e}")),
            };
            match take {
                Take::Frame(f) => {
                    out.push(frame_id(&f));
                    taken.fetch_add(1, Ordering::Release);
                }
                Take::EndOfStream => return out,
                // Every frame it published was taken first: the next one.
                Take::ProducerGone { .. } => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue 'attach;
                }
                other => panic!("{ring}: {other:?}"),
            }
        }
    }
}

/// [`reference`] of `ring`'s group `group`, read on a thread of its own.
fn read_all(ring: &str, group: &'static str) -> std::thread::JoinHandle<Vec<FrameId>> {
    let ring = ring.to_string();
    std::thread::spawn(move || reference(&ring, group))
}

/// Every frame of the source ring's reference group, in order.
fn reference(ring: &str, group: &str) -> Vec<FrameId> {
    let c = Consumer::builder(ring)
        .group(group)
        .wait_for_ring(STATE_WAIT)
        .attach()
        .unwrap_or_else(|e| panic!("attach to {ring}: {e}"));
    let mut out = vec![];
    let deadline = std::time::Instant::now() + 3 * STATE_WAIT;
    loop {
        match c.take(Duration::from_millis(200)) {
            Err(e) if e.is_timeout() => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{ring}: no end of stream after {} frames",
                    out.len()
                );
                continue;
            }
            Ok(Take::Frame(f)) => out.push(frame_id(&f)),
            Ok(Take::EndOfStream) => return out,
            // The producer ended and exited between two takes (seen once in
            // eight runs): what it published was taken; `check_run` still
            // requires every frame it was to publish.
            Ok(Take::ProducerGone { pid }) => {
                eprintln!(
                    "{ring}: reference: producer {pid} gone after {} frames",
                    out.len()
                );
                return out;
            }
            other => panic!("{ring}: {other:?}"),
        }
    }
}

/// Waits for a run's processes (the receiver and the sender exit 0, the
/// producer ends) and checks that the receiver's ring got exactly the
/// source's `n` frames, in order.
fn check_run(
    (recv, sender, prod): (Child, Child, Child),
    got: &[FrameId],
    reference: &[FrameId],
    n: usize,
    recv_json: &Path,
) -> std::process::Output {
    let recv = wait_with_timeout(recv, STATE_WAIT);
    assert_eq!(exit_code(&recv), Some(0), "receiver: {}", stderr(&recv));
    let sender = wait_with_timeout(sender, STATE_WAIT);
    assert_eq!(exit_code(&sender), Some(0), "sender: {}", stderr(&sender));
    let _ = wait_with_timeout(prod, STATE_WAIT);
    assert_eq!(reference.len(), n);
    // Every frame arrives exactly once and in order: a frame lost in
    // transit (a link reset) is asked for again, never counted as a
    // remote gap in lossless mode.
    let r = json(recv_json);
    assert_eq!(
        r["skipped"].get("remote_gap"),
        None,
        "{r}: {}",
        stderr(&recv)
    );
    assert!(
        got == reference,
        "{} frames for {}: frames missing, added, doubled or out of order: {}",
        got.len(),
        reference.len(),
        stderr(&recv)
    );
    recv
}

#[test]
fn a_receiver_sigkilled_three_times_loses_no_frame_and_duplicates_none() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("r");
    let listen = loopback_listen();
    // Their logs in files (a pipe nobody reads would fill up).
    let tmp = tempfile::tempdir().unwrap();
    let (recv_log, send_log) = (tmp.path().join("recv.log"), tmp.path().join("send.log"));
    let append = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let recv = || {
        bridge(
            "recv",
            &key,
            &["--ring", &dst, "--groups", "check", "--listen", &listen],
        )
        .env("RUST_LOG", "info")
        .stderr(append(&recv_log))
        .spawn_reaped()
    };
    let mut receiver = recv();
    // 8 × 30 = 240 frames at 50 fps: about 5 s, and the time the restarts
    // take (the sender waits for its receiver meanwhile).
    let prod = producer(&src, 120, 160, 30, "bridge,ref", &["--fps-limit", "50"]).spawn_reaped();
    let sender = bridge("send", &key, &[&src, "--connect", &listen])
        .env("RUST_LOG", "info")
        .stderr(append(&send_log))
        .spawn_reaped();
    let logs = || {
        format!(
            "\nreceivers:\n{}\nsender:\n{}",
            std::fs::read_to_string(&recv_log).unwrap_or_default(),
            std::fs::read_to_string(&send_log).unwrap_or_default()
        )
    };
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = std::thread::spawn({
        let (dst, taken) = (dst.clone(), taken.clone());
        move || supervised(&dst, "check", &taken)
    });
    let reference = std::thread::spawn({
        let src = src.clone();
        move || reference(&src, "ref")
    });
    for at in [40, 100, 160] {
        let waited = Instant::now();
        while taken.load(Ordering::Acquire) < at {
            assert!(
                waited.elapsed() < STATE_WAIT,
                "{at} frames bridged: not within {STATE_WAIT:?}; {}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(&receiver, Signal::SIGKILL);
        let _ = wait_with_timeout(receiver, Duration::from_secs(10));
        receiver = recv();
    }
    let got = consumer.join().unwrap();
    let reference = reference.join().unwrap();
    let sender = wait_with_timeout(sender, STATE_WAIT);
    assert_eq!(exit_code(&sender), Some(0), "sender: {}", logs());
    let recv = wait_with_timeout(receiver, STATE_WAIT);
    assert_eq!(exit_code(&recv), Some(0), "receiver: {}", logs());
    let prod = wait_with_timeout(prod, STATE_WAIT);
    assert_eq!(exit_code(&prod), Some(0), "producer: {}", stderr(&prod));
    assert_eq!(reference.len(), 240);
    let seen: std::collections::BTreeSet<_> = got.iter().collect();
    let missing = reference.iter().filter(|f| !seen.contains(f)).count();
    assert_eq!(
        (got.len(), missing),
        (reference.len(), 0),
        "frames arrived, missing: {}",
        logs()
    );
    assert!(got == reference, "every frame once, in order");
    let recv_log = std::fs::read_to_string(&recv_log).unwrap();
    assert_eq!(
        recv_log
            .matches("resuming where the previous receiver of this ring was")
            .count(),
        3,
        "{recv_log}"
    );
    assert!(!recv_log.contains("frames missing"), "{recv_log}");
}

/// Resets every TCP connection to or from `port` (the kernel's socket
/// destroy, as a middlebox or a flapping link would): what was in flight
/// in them is lost.
fn reset_connections(port: u16) {
    let o = Command::new("ss")
        .args(["-K", "-t", "state", "established"])
        .arg(format!("( sport = :{port} or dport = :{port} )"))
        .output()
        .expect("ss (iproute2) is installed");
    assert!(o.status.success(), "ss -K: {}", stderr(&o));
}

#[test]
fn connections_reset_seven_times_lose_no_lossless_frame() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("k");
    let port = common::free_port();
    let listen = format!("tcp/127.0.0.1:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let recv_json = tmp.path().join("recv.json");
    let recv = bridge(
        "recv",
        &key,
        &["--ring", &dst, "--groups", "check", "--listen", &listen],
    )
    .env("RUST_LOG", "info,zenoh=warn")
    .arg("--stats-json")
    .arg(&recv_json)
    .spawn_reaped();
    // 8 × 30 = 240 frames of 0.5 MB at 50 fps: about 5 s, and the
    // reconnections; one reset in three or so catches a frame in flight.
    let prod = producer(&src, 360, 480, 30, "bridge,ref", &["--fps-limit", "50"]).spawn_reaped();
    let sender = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    let (check, reference) = (read_all(&dst, "check"), read_all(&src, "ref"));
    for at in [30, 60, 90, 120, 150, 180, 210] {
        wait_published(&dst, at);
        reset_connections(port);
    }
    let got = check.join().unwrap();
    let reference = reference.join().unwrap();
    let recv = check_run((recv, sender, prod), &got, &reference, 240, &recv_json);
    let asked = stderr(&recv)
        .matches("asking the sender for them again")
        .count();
    eprintln!("frames lost in transit and asked for again: {asked} times");
}

/// A zenoh peer of the test's own: connects to `endpoint` (no scouting).
fn peer(endpoint: &str) -> zenoh::Session {
    peer_with(
        endpoint,
        &[("transport/shared_memory/enabled", "false".into())],
    )
}

/// [`peer`] with more zenoh settings (key, JSON5 value).
fn peer_with(endpoint: &str, extra: &[(&str, String)]) -> zenoh::Session {
    let mut c = zenoh::Config::default();
    let base = [
        ("mode", "\"peer\"".to_string()),
        ("connect/endpoints", format!("[\"{endpoint}\"]")),
        ("scouting/multicast/enabled", "false".into()),
    ];
    for (k, v) in base
        .iter()
        .map(|(k, v)| (*k, v))
        .chain(extra.iter().map(|(k, v)| (*k, v)))
    {
        c.insert_json5(k, v).unwrap();
    }
    zenoh::open(c).wait().unwrap()
}

#[test]
fn forged_frames_end_markers_and_shapes_from_another_peer_are_counted_and_skipped() {
    let _serial = serial();
    let _reaper = Reaper;
    let (src, dst, key) = names("f");
    let tmp = tempfile::tempdir().unwrap();
    let recv_json = tmp.path().join("recv.json");
    let listen = loopback_listen();
    let recv = bridge(
        "recv",
        &key,
        &["--ring", &dst, "--groups", "check", "--listen", &listen],
    )
    .arg("--stats-json")
    .arg(&recv_json)
    .spawn_reaped();
    // 8 × 30 = 240 frames at 50 fps: about 5 s.
    let prod = producer(&src, 120, 160, 30, "bridge,ref", &["--fps-limit", "50"]).spawn_reaped();
    let sender = bridge("send", &key, &[&src, "--connect", &listen]).spawn_reaped();
    let (check, reference) = (read_all(&dst, "check"), read_all(&src, "ref"));
    wait_published(&dst, 1);
    // The forger: captures one genuine frame message on the key, then
    // publishes from its own session that message again, copies of it with
    // seqs ahead of the stream, a frame of another shape and an end marker.
    let forger = peer(&listen);
    let sub = forger
        .declare_subscriber(key.as_str())
        .with(zenoh::handlers::FifoChannel::new(4))
        .wait()
        .unwrap();
    let captured = sub
        .recv_timeout(STATE_WAIT)
        .unwrap()
        .expect("a genuine frame");
    drop(sub);
    let attachment = captured.attachment().unwrap().to_bytes().to_vec();
    let payload = captured.payload().to_bytes().to_vec();
    let genuine = framering::app::bridge::wire::FrameHeader::decode(&attachment).unwrap();
    let publisher = forger
        .declare_publisher(key.clone())
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .unwrap();
    let mut forged = 0;
    let mut put = |payload: Vec<u8>, attachment: Vec<u8>| {
        publisher
            .put(payload)
            .attachment(attachment)
            .wait()
            .unwrap();
        forged += 1;
    };
    for i in 0..20u64 {
        put(payload.clone(), attachment.clone());
        let ahead = framering::app::bridge::wire::FrameHeader {
            seq: genuine.seq + 10 + i,
            ..genuine.clone()
        };
        put(payload.clone(), ahead.encode());
    }
    let small = framering::app::bridge::wire::FrameHeader {
        shape: framering::ring::FrameShape::new(16, 16, 3),
        seq: genuine.seq + 100,
        ..genuine.clone()
    };
    put(vec![7; 16 * 16 * 3], small.encode());
    let end = framering::app::bridge::wire::FrameHeader {
        kind: framering::app::bridge::wire::Kind::End,
        ..genuine
    };
    put(vec![], end.encode());
    let got = check.join().unwrap();
    let reference = reference.join().unwrap();
    check_run((recv, sender, prod), &got, &reference, 240, &recv_json);
    let r = json(&recv_json);
    assert_eq!(r["skipped"]["foreign"].as_u64(), Some(forged), "{r}");
    drop(forger);
}

/// A certificate authority and two certificates it signed ("sender",
/// "receiver", both for 127.0.0.1), made with openssl in `dir`: the paths
/// of ca.pem and of NAME.pem / NAME.key.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &["req", "-x509", "-nodes", "-days", "2"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=frb-test-ca",
        ],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,IP:10.251.0.2,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    for who in ["sender", "receiver", "intruder"] {
        let (key, csr, pem) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.pem"),
        );
        let subj = format!("/CN={who}");
        run(&[
            &["req", "-nodes"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", &subj],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            "ext.cnf",
        ]);
    }
}

/// A TLS run on loopback: the certificates in `dir`, a receiver (with
/// `recv_extra` flags) listening on `tls/127.0.0.1:PORT`, 160 frames at
/// 50 fps through a sender certified as "sender", and the reference and
/// check readers; returns when the first frame has arrived.
struct TlsRun {
    key: String,
    port: u16,
    procs: (Child, Child, Child),
    check: std::thread::JoinHandle<Vec<FrameId>>,
    reference: std::thread::JoinHandle<Vec<FrameId>>,
    recv_json: std::path::PathBuf,
}

impl TlsRun {
    fn start(tag: &str, dir: &Path, recv_extra: &[&str]) -> TlsRun {
        let (src, dst, key) = names(tag);
        certificates(dir);
        let file = |f: &str| dir.join(f).to_str().unwrap().to_string();
        let tls = |who: &str| {
            [
                "--tls-root-ca".to_string(),
                file("ca.pem"),
                "--tls-certificate".into(),
                file(&format!("{who}.pem")),
                "--tls-private-key".into(),
                file(&format!("{who}.key")),
            ]
        };
        let recv_json = dir.join("recv.json");
        let port = common::free_port();
        let listen = format!("tls/127.0.0.1:{port}");
        let mut args: Vec<String> = ["--ring", &dst, "--groups", "check", "--listen", &listen]
            .map(String::from)
            .into();
        args.extend(tls("receiver"));
        args.extend(recv_extra.iter().map(|a| a.to_string()));
        let recv = bridge(
            "recv",
            &key,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .env("RUST_LOG", "info,zenoh=warn")
        .arg("--stats-json")
        .arg(&recv_json)
        .spawn_reaped();
        // 8 × 20 = 160 frames at 50 fps: about 3 s.
        let prod =
            producer(&src, 120, 160, 20, "bridge,ref", &["--fps-limit", "50"]).spawn_reaped();
        let mut args = vec![src.clone(), "--connect".into(), listen];
        args.extend(tls("sender"));
        let sender = bridge(
            "send",
            &key,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .spawn_reaped();
        let (check, reference) = (read_all(&dst, "check"), read_all(&src, "ref"));
        wait_published(&dst, 1);
        TlsRun {
            key,
            port,
            procs: (recv, sender, prod),
            check,
            reference,
            recv_json,
        }
    }

    /// Waits for the run's end, checks every frame arrived once and in
    /// order, and returns the receiver's output and its summary.
    fn finish(self) -> (std::process::Output, serde_json::Value) {
        let got = self.check.join().unwrap();
        let reference = self.reference.join().unwrap();
        let recv = check_run(self.procs, &got, &reference, 160, &self.recv_json);
        (recv, json(&self.recv_json))
    }
}

/// An end-of-stream marker as a forger would send it.
fn forged_end() -> Vec<u8> {
    framering::app::bridge::wire::FrameHeader {
        kind: framering::app::bridge::wire::Kind::End,
        stream: 0,
        seq: 0,
        kept: false,
        capture_ns: 0,
        pts_ns: None,
        shape: framering::ring::FrameShape::new(120, 160, 3),
        src_size: (0, 0),
        source: vec![],
        user_meta: vec![],
    }
    .encode()
}

#[test]
fn with_tls_frames_arrive_and_a_peer_without_a_certificate_cannot_connect() {
    let _serial = serial();
    let _reaper = Reaper;
    let tmp = tempfile::tempdir().unwrap();
    let run = TlsRun::start("t", tmp.path(), &[]);
    // Peers without a certificate of the CA: one that trusts the CA (TLS,
    // no client certificate), one speaking plain TCP to the TLS port. They
    // publish end markers while the stream runs.
    let no_cert = peer_with(
        &format!("tls/127.0.0.1:{}", run.port),
        &[(
            "transport/link/tls/root_ca_certificate",
            format!("\"{}\"", tmp.path().join("ca.pem").to_str().unwrap()),
        )],
    );
    let plain = peer(&format!("tcp/127.0.0.1:{}", run.port));
    for s in [&no_cert, &plain] {
        s.put(run.key.as_str(), vec![])
            .attachment(forged_end())
            .wait()
            .unwrap();
    }
    let (recv, r) = run.finish();
    // The stream ran to its end, all the while the two peers tried.
    for (what, s) in [
        ("TLS without a certificate", &no_cert),
        ("plain TCP", &plain),
    ] {
        let peers: Vec<_> = s.info().peers_zid().wait().collect();
        assert!(peers.is_empty(), "{what}: connected to {peers:?}");
    }
    assert_eq!(r["skipped"].get("foreign"), None, "{r}: {}", stderr(&recv));
}

/// A zenoh peer with a certificate of the CA (common name `who`) that
/// connects to `endpoint` over TLS.
fn certified_peer(dir: &Path, who: &str, endpoint: &str) -> zenoh::Session {
    let file = |f: &str| format!("\"{}\"", dir.join(f).to_str().unwrap());
    peer_with(
        endpoint,
        &[
            ("transport/link/tls/root_ca_certificate", file("ca.pem")),
            (
                "transport/link/tls/connect_certificate",
                file(&format!("{who}.pem")),
            ),
            (
                "transport/link/tls/connect_private_key",
                file(&format!("{who}.key")),
            ),
            ("transport/link/tls/enable_mtls", "true".into()),
        ],
    )
}

#[test]
fn access_control_keeps_a_certified_peer_without_a_policy_off_the_key() {
    let _serial = serial();
    let _reaper = Reaper;
    let tmp = tempfile::tempdir().unwrap();
    // The receiver's zenoh access control: only the session whose
    // certificate names "sender" may speak on the stream's keys (zenoh's
    // `**` does not match the `@` chunks: each is named); anyone else
    // (default deny) is refused by the receiver's zenoh before the bridge
    // sees a message.
    let key = names("a").2;
    let acl = tmp.path().join("acl.json5");
    std::fs::write(
        &acl,
        format!(
            r#"{{ access_control: {{
  enabled: true,
  default_permission: "deny",
  rules: [{{ id: "stream", permission: "allow", flows: ["ingress", "egress"],
    messages: ["put", "delete", "declare_subscriber", "query", "reply", "declare_queryable",
               "liveliness_token", "liveliness_query", "declare_liveliness_subscriber"],
    key_exprs: ["{key}", "{key}/@alive/*", "{key}/@recv/*", "{key}/@geometry", "{key}/@ack"] }}],
  subjects: [{{ id: "sender", cert_common_names: ["sender"] }}],
  policies: [{{ rules: ["stream"], subjects: ["sender"] }}],
}} }}"#
        ),
    )
    .unwrap();
    let run = TlsRun::start("a", tmp.path(), &["--zenoh-config", acl.to_str().unwrap()]);
    // A peer the CA certified, but as "intruder": TLS lets it in, the
    // access control does not let it speak on the key.
    let intruder = certified_peer(
        tmp.path(),
        "intruder",
        &format!("tls/127.0.0.1:{}", run.port),
    );
    wait_until("the intruder connected", STATE_WAIT, || {
        intruder.info().peers_zid().wait().next().is_some()
    });
    for _ in 0..20 {
        intruder
            .put(run.key.as_str(), vec![0u8; 120 * 160 * 3])
            .attachment(forged_end())
            .wait()
            .unwrap();
    }
    let (recv, r) = run.finish();
    // Without the access control these would be counted as `foreign`
    // (see the forged-frames test): the receiver never saw them.
    assert_eq!(r["skipped"].get("foreign"), None, "{r}: {}", stderr(&recv));
}

/// Two network namespaces joined by a veth pair shaped by `tc … tbf` each
/// way; removed on drop.
struct Netns {
    a: String,
    b: String,
}

impl Netns {
    /// `None` (with a loud message) when not root or iproute2 is missing;
    /// `tbf`: the `tc qdisc … tbf` parameters of both ends.
    fn new(tag: &str, tbf: &[&str]) -> Option<Netns> {
        let root = nix::unistd::geteuid().is_root();
        let ip = Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        let tc = Command::new("tc")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !(root && ip && tc) {
            eprintln!(
                "\n!!!!! SKIPPED: the network-namespace bridge test needs root and iproute2 (ip, tc); root={root} ip={ip} tc={tc} !!!!!\n"
            );
            return None;
        }
        let id = std::process::id() % 100_000;
        let n = Netns {
            a: format!("frb{tag}a{id}"),
            b: format!("frb{tag}b{id}"),
        };
        let (va, vb) = (format!("fa{tag}{id}"), format!("fb{tag}{id}"));
        let run = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        run(&["netns", "add", &n.a]);
        run(&["netns", "add", &n.b]);
        run(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        for (ns, dev, addr) in [(&n.a, &va, "10.251.0.1/24"), (&n.b, &vb, "10.251.0.2/24")] {
            run(&["link", "set", dev, "netns", ns]);
            run(&["-n", ns, "addr", "add", addr, "dev", dev]);
            run(&["-n", ns, "link", "set", dev, "up"]);
            run(&["-n", ns, "link", "set", "lo", "up"]);
            let o = Command::new("tc")
                .args(["-n", ns, "qdisc", "add", "dev", dev, "root", "tbf"])
                .args(tbf)
                .output()
                .unwrap();
            assert!(o.status.success(), "tc: {}", stderr(&o));
        }
        Some(n)
    }

    /// `cmd` run inside namespace `ns`.
    fn exec(ns: &str, cmd: Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn across_namespaces_live_stays_fresh_and_lossless_loses_nothing() {
    let _serial = serial();
    let _reaper = Reaper;
    let Some(net) = Netns::new("n", &["rate", "1gbit", "burst", "256kb", "latency", "20ms"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let listen = "tcp/10.251.0.2:7447";
    // Live: 30 fps of 1080p (1.5 Gbit/s) into a 1 Gbit/s link.
    {
        let (src, dst, key) = names("nl");
        let recv_json = tmp.path().join("live-recv.json");
        let send_json = tmp.path().join("live-send.json");
        let recv = Netns::exec(
            &net.b,
            bridge(
                "recv",
                &key,
                &[
                    "--ring",
                    &dst,
                    "--groups",
                    "check",
                    "--listen",
                    listen,
                    "--stats-json",
                ],
            ),
        )
        .arg(&recv_json)
        .spawn_reaped();
        // 8 × 12 = 96 frames at 30 fps: 3.2 s.
        let prod = producer(&src, 1080, 1920, 12, "probe", &["--fps-limit", "30"]).spawn_reaped();
        let sender = Netns::exec(
            &net.a,
            bridge(
                "send",
                &key,
                &[&src, "--live", "--connect", listen, "--stats-json"],
            ),
        )
        .arg(&send_json)
        .spawn_reaped();
        let reader = std::thread::spawn({
            let dst = dst.clone();
            move || hashes(&dst, "check", Duration::from_secs(60))
        });
        let probe = hashes(&src, "probe", Duration::from_secs(60));
        let sender = wait_with_timeout(sender, Duration::from_secs(30));
        assert_eq!(exit_code(&sender), Some(0), "sender: {}", stderr(&sender));
        let recv = wait_with_timeout(recv, Duration::from_secs(30));
        assert_eq!(exit_code(&recv), Some(0), "receiver: {}", stderr(&recv));
        let _ = wait_with_timeout(prod, Duration::from_secs(30));
        let got = reader.join().unwrap();
        let (r, s) = (json(&recv_json), json(&send_json));
        let age_p50_ms = r["latency"]["p50_us"].as_f64().unwrap() / 1e3;
        let dropped = s["dropped"].as_u64().unwrap();
        eprintln!(
            "live over 1 Gbit/s: {} of {} frames arrived, {dropped} dropped by the sender, age p50 {age_p50_ms:.1} ms",
            got.len(),
            probe.len()
        );
        assert!(got.len() >= 10, "{} frames", got.len());
        assert!(
            dropped > 0,
            "1.5 Gbit/s into 1 Gbit/s drops frames, counted"
        );
        assert!(
            got.len() as u64 + dropped <= probe.len() as u64,
            "frames sent and dropped are frames of the ring"
        );
        assert!(
            age_p50_ms <= 2.0 * 1000.0 / 30.0,
            "frame age p50 {age_p50_ms:.1} ms"
        );
    }
    // Lossless over TLS: every frame arrives, whatever the link's rate; a
    // peer on the other host without a certificate gets nothing.
    {
        let (src, dst, key) = names("nb");
        certificates(tmp.path());
        let file = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
        let tls = |who: &str| {
            [
                "--tls-root-ca".to_string(),
                file("ca.pem"),
                "--tls-certificate".into(),
                file(&format!("{who}.pem")),
                "--tls-private-key".into(),
                file(&format!("{who}.key")),
            ]
        };
        let listen = "tls/10.251.0.2:7447";
        let args = |first: &[&str], who: &str| {
            let mut a: Vec<String> = first.iter().map(|a| a.to_string()).collect();
            a.extend(tls(who));
            a
        };
        let recv_args = args(
            &["--ring", &dst, "--groups", "check", "--listen", listen],
            "receiver",
        );
        let recv = Netns::exec(
            &net.b,
            bridge(
                "recv",
                &key,
                &recv_args.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
        )
        .spawn_reaped();
        // Plain TCP to the TLS port from the sending host, on a ring of its
        // own: it never connects, so it never receives a frame.
        let (intruder_ring, intruder_json) = (name("nbx"), tmp.path().join("intruder.json"));
        let intruder = Netns::exec(
            &net.a,
            bridge(
                "recv",
                &key,
                &[
                    "--ring",
                    &intruder_ring,
                    "--connect",
                    "tcp/10.251.0.2:7447",
                    "--stats-json",
                    intruder_json.to_str().unwrap(),
                ],
            ),
        )
        .spawn_reaped();
        let prod = producer(&src, 1080, 1920, 5, "bridge,ref", &[]).spawn_reaped();
        let send_args = args(&[&src, "--connect", listen], "sender");
        let sender = Netns::exec(
            &net.a,
            bridge(
                "send",
                &key,
                &send_args.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
        )
        .spawn_reaped();
        let reference = std::thread::spawn({
            let src = src.clone();
            move || hashes(&src, "ref", Duration::from_secs(60))
        });
        let got = hashes(&dst, "check", Duration::from_secs(60));
        let reference = reference.join().unwrap();
        let sender = wait_with_timeout(sender, Duration::from_secs(30));
        assert_eq!(exit_code(&sender), Some(0), "sender: {}", stderr(&sender));
        let recv = wait_with_timeout(recv, Duration::from_secs(30));
        assert_eq!(exit_code(&recv), Some(0), "receiver: {}", stderr(&recv));
        let _ = wait_with_timeout(prod, Duration::from_secs(30));
        assert_eq!(reference.len(), 40);
        assert!(
            got == reference,
            "{} of {} frames, in order",
            got.len(),
            reference.len()
        );
        signal(&intruder, Signal::SIGTERM);
        let intruder = wait_with_timeout(intruder, Duration::from_secs(30));
        let x = json(&intruder_json);
        assert_eq!(x["frames"].as_u64(), Some(0), "{x}: {}", stderr(&intruder));
    }
}

/// A long, slow link: two namespaces joined at 50 Mbit/s each way (`tbf`
/// with a 64 KB queue, so that TCP meets real drops) and 20 ms each way (a
/// relay in the sending namespace that holds every chunk 20 ms,
/// `tests/data/delay_relay.py`: this kernel has no netem). The receiver
/// listens on `tcp/10.251.0.2:7447`; the sender connects to `connect`.
struct LongLink {
    net: Netns,
    relay: Option<Child>,
    connect: String,
}

impl LongLink {
    fn new(tag: &str) -> Option<LongLink> {
        let net = Netns::new(tag, &["rate", "50mbit", "burst", "32kb", "limit", "64kb"])?;
        let relay_py = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/delay_relay.py");
        let mut c = Command::new("python3");
        c.args([relay_py, "127.0.0.1:7448", "10.251.0.2:7447", "20"]);
        let mut relay = Netns::exec(&net.a, c).spawn_reaped();
        let lines = stderr_lines(&mut relay);
        wait_line(&lines, "listening", STATE_WAIT);
        Some(LongLink {
            net,
            relay: Some(relay),
            connect: "tcp/127.0.0.1:7448".into(),
        })
    }

    /// One stream of `loops` passes over the assets at `h`×`w`×3 (`fps`: the
    /// source's rate, 0 unlimited) from namespace a to b, the sender with
    /// `send_extra`; returns the receiver's summary and the sender's stderr.
    fn run(
        &self,
        tag: &str,
        (h, w, loops, fps): (u32, u32, u32, u32),
        send_extra: &[&str],
    ) -> (serde_json::Value, String) {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst, key) = names(tag);
        let recv_json = tmp.path().join("recv.json");
        let recv = Netns::exec(
            &self.net.b,
            bridge(
                "recv",
                &key,
                &[
                    "--ring",
                    &dst,
                    "--groups",
                    "check",
                    "--listen",
                    "tcp/10.251.0.2:7447",
                    "--stats-json",
                ],
            ),
        )
        .arg(&recv_json)
        .spawn_reaped();
        let limit = fps.to_string();
        let prod_extra: &[&str] = if fps > 0 {
            &["--fps-limit", &limit]
        } else {
            &[]
        };
        let prod = producer(&src, h, w, loops, "bridge", prod_extra).spawn_reaped();
        let mut send_args = vec![src.as_str(), "--connect", &self.connect];
        send_args.extend(send_extra);
        let sender = Netns::exec(&self.net.a, bridge("send", &key, &send_args))
            .env("RUST_LOG", "info")
            .spawn_reaped();
        let got = hashes(&dst, "check", STATE_WAIT);
        let sender = wait_with_timeout(sender, Duration::from_secs(60));
        assert_eq!(exit_code(&sender), Some(0), "sender: {}", stderr(&sender));
        let recv = wait_with_timeout(recv, Duration::from_secs(60));
        assert_eq!(exit_code(&recv), Some(0), "receiver: {}", stderr(&recv));
        let prod = wait_with_timeout(prod, Duration::from_secs(60));
        assert_eq!(exit_code(&prod), Some(0), "producer: {}", stderr(&prod));
        let r = json(&recv_json);
        assert_eq!(r["frames"].as_u64(), Some(got.len() as u64), "{r}");
        (r, stderr(&sender))
    }
}

impl Drop for LongLink {
    fn drop(&mut self) {
        if let Some(mut relay) = self.relay.take() {
            signal(&relay, Signal::SIGKILL);
            let _ = relay.wait();
        }
    }
}

/// The sender's "live window" line (its final window and estimates).
fn window_line(sender_stderr: &str) -> &str {
    sender_stderr
        .lines()
        .find(|l| l.contains("live window"))
        .unwrap_or("(no live window line)")
}

#[test]
fn live_mode_fills_a_long_link_as_lossless_does() {
    let _serial = serial();
    let _reaper = Reaper;
    let Some(link) = LongLink::new("w") else {
        return;
    };
    // 240×320×3 = 230 KB: 37 ms at 50 Mbit/s, plus 40 ms of round trip:
    // one frame in flight carries ~13 fps of the link's ~27.
    let lossless = link.run("wb", (240, 320, 12, 0), &[]);
    let live = link.run("wl", (240, 320, 30, 60), &["--live"]);
    let fps = |r: &serde_json::Value| r["fps"].as_f64().unwrap();
    let (lossless_fps, live_fps) = (fps(&lossless.0), fps(&live.0));
    eprintln!(
        "over 50 Mbit/s, 20 ms each way: lossless {lossless_fps:.1} fps ({} frames), live {live_fps:.1} fps ({} frames); {}",
        lossless.0["frames"],
        live.0["frames"],
        window_line(&live.1)
    );
    assert_eq!(lossless.0["frames"].as_u64(), Some(96), "{}", lossless.0);
    assert!(
        live_fps >= 0.7 * lossless_fps,
        "live {live_fps:.1} fps against lossless {lossless_fps:.1} on the same link; {}",
        window_line(&live.1)
    );
}

/// Run by hand (`cargo test --release --features bridge --test bridge --
/// --ignored --nocapture live_window_on_a_long_link`): live with one frame
/// in flight (`--window 1`), live with its window, and lossless, over the
/// long link, for two frame sizes, three runs each.
#[test]
#[ignore]
fn live_window_on_a_long_link() {
    let _serial = serial();
    let _reaper = Reaper;
    let Some(link) = LongLink::new("v") else {
        return;
    };
    for (h, w) in [(240, 320), (120, 160)] {
        for run in 0..3 {
            let kinds: [(&str, &[&str], u32, u32); 3] = [
                ("lossless", &[], 12, 0),
                ("live, window 1", &["--live", "--window", "1"], 60, 200),
                ("live", &["--live"], 60, 200),
            ];
            for (what, extra, loops, fps) in kinds {
                let (r, sender) = link.run(&format!("v{run}"), (h, w, loops, fps), extra);
                println!(
                    "{h}x{w}x3 run {run} {what}: {:.1} fps, {} frames, age p50 {:.1} ms; {}",
                    r["fps"].as_f64().unwrap(),
                    r["frames"],
                    r["latency"]["p50_us"].as_f64().unwrap_or(0.0) / 1e3,
                    window_line(&sender)
                );
            }
        }
    }
}
