#!/usr/bin/env python3
"""framering against its peers and limits, measured in the same run, as one
ratio table (medians of RUNS runs). Run on demand, not in CI:

    python3 benches/peers/run.py [--runs 3] [--seconds 4] [--json target/peers.json]

Installs nothing itself beyond what `benches/peers/setup.sh` did (numpy via
pip, GStreamer via apt). Every framering figure comes from `framering bench`
(real processes); peers from `python_peers.py`, `gstreamer.sh`, the
iceoryx2 program in `iceoryx2/` (built here with cargo); limits from
`limits/` (built here with cargo).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FR = os.path.join(ROOT, "target/release/framering")
LIMITS = os.path.join(ROOT, "benches/peers/limits/target/release/limits-peer")
RAW_RING = os.path.join(ROOT, "benches/peers/limits/target/release/raw_ring")
PEERS = os.path.join(ROOT, "benches/peers/python_peers.py")
GST = os.path.join(ROOT, "benches/peers/gstreamer.sh")
IOX_DIR = os.path.join(ROOT, "benches/peers/iceoryx2")
IOX = os.path.join(IOX_DIR, "target/release/iceoryx2-peer")


def bench(seconds, *args):
    out = subprocess.run([FR, "bench", "--json", "--seconds", str(seconds), *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(fig, runs, seconds):
    """The table. Each ratio is the median of the per-run ratios (both sides
    measured within the same run, seconds apart), which the VM's speed
    changes between runs do not skew the way a ratio of medians is skewed."""
    m = {k: med(v) for k, v in fig.items()}

    def ratio(a, b):
        return med([x / y for x, y in zip(fig[a], fig[b]) if y and x == x and y == y])

    def row(label, key, unit, peer_label=None, peer_key=None, target=None):
        if key not in fig or (peer_key and peer_key not in fig):
            return  # not measured in this run (--hand-off-only)
        value = m[key]
        peer = m[peer_key] if peer_key else None
        r = f"{ratio(key, peer_key):.2f}x" if peer_key else ""
        t = f"{target}" if target else ""
        print(f"| {label} | {value:,.1f} {unit} | {peer_label or ''} | {'' if peer is None else f'{peer:,.1f}'} | {r} | {t} |")

    print(f"\nmedians of {runs} runs, {seconds} s each; ratio = median of the per-run ratios; "
          "720x1080x3 u8 frames unless said\n")
    print("| framering workload | framering | peer / limit | peer | ratio | target |")
    print("|---|---|---|---|---|---|")
    w = "fr write/stride"
    row("write/stride, 1 consumer, default wait", w, "fps", "iceoryx2, event wake-ups", "iox event stride", "≥ 1.2x")
    row("write/stride, 1 consumer, spin", "fr write/stride spin", "fps", "iceoryx2, busy-polling", "iox spin stride")
    row("write/stride, 1 consumer, default wait", w, "fps", "Python shm 100-slot pool", "python-pool 1c stride", "≥ 4x")
    row("write/stride, 1 consumer, default wait", w, "fps", "Python shm + Event (lockstep)", "python-event 1c stride")
    row("write/stride, 1 consumer, default wait", w, "fps", "Python mp.Queue", "python-queue 1c stride")
    hangs = sum(fig.get("gstreamer-shm hang", []))
    if hangs:
        print(f"| write/stride, 1 consumer, default wait | {m[w]:,.1f} fps | GStreamer shmsink/shmsrc | hung {hangs}/{runs} runs | | ≥ 2x |")
    else:
        row("write/stride, 1 consumer, default wait", w, "fps", "GStreamer shmsink/shmsrc", "gstreamer-shm", "≥ 2x")
        row("write/none, 1 consumer (fakesink reads nothing)", "fr write/none", "fps", "GStreamer shmsink/shmsrc", "gstreamer-shm")
    row("write/stride, 1 consumer, default wait", w, "fps", "bare SPSC ring, same work, 8 slots, spinning", "raw write/stride")
    row("write/stride, 1 consumer, default wait", w, "fps", "memcpy into a 2-slot (cache-sized) ring", "memcpy-ring-2-slots fps")
    row("copy (from 128 MiB of sources)/stride", "fr copy/stride", "fps", "memcpy into a 64-slot ring (> LLC)", "memcpy-ring-64-slots fps")
    row("full readers: 2 consumers (work-sharing), producer none", "fr none/full 2c", "fps", "the same, 1 consumer", "fr none/full 1c", "≥ 1.8x")
    row("write/full, 2 consumers, 1 group", "fr write/full 2c", "fps", "Python pool, 2 consumers full", "python-pool 2c full")
    row("write/full, 1 consumer", "fr write/full 8 slots", "fps", "Python pool, 1 consumer full", "python-pool 1c full")
    row("write/full, 2 groups of 1 (each gets every frame)", "fr write/full 2 groups", "fps per group", "framering, 1 group of 1", "fr write/full 8 slots")
    row("write/full, 2 groups of 1 (broadcast)", "fr write/full 2 groups", "fps per group", "iceoryx2 broadcast to 2 subscribers, events", "iox event full 2 subs")
    for slots in (64, 256):
        row(f"write/full, {slots} slots", f"fr write/full {slots} slots", "fps", "the same, 8 slots", "fr write/full 8 slots", "≥ 1.0x")
    row("hand-off 16x16x1, spin", "fr handoff spin", "fps", "iceoryx2, busy-polling", "iox handoff spin", "≥ 1.5x")
    row("hand-off 16x16x1, spin", "fr handoff spin", "fps", "bare SPSC ring, spinning", "raw handoff")
    row("hand-off 16x16x1, default", "fr handoff default", "fps", "", None, "≥ 1 M")
    row("latency p50, consumer asleep (futex)", "fr latency futex p50", "us", "raw futex ping-pong, one way", "futex-ping-pong", "≤ 1.2x")
    row("latency p50, consumer asleep (futex)", "fr latency futex p50", "us", "iceoryx2 event wake-up", "iox latency event p50")
    row("latency p50, consumer spinning", "fr latency spin p50", "us", "iceoryx2 busy-polling", "iox latency spin p50", "≤ 0.3 us")
    row("latency p50, consumer spinning", "fr latency spin p50", "us", "spin ping-pong, one way", "spin-ping-pong", "≤ 2x")
    row("latency p50, consumer spinning", "fr latency spin p50", "us", "bare SPSC ring, 1000 frames/s", "raw latency spin p50")
    print(f"\nlimits: memcpy {m['memcpy-ring-64-slots']:.1f} GB/s into a ring > LLC, "
          f"{m['memcpy-ring-2-slots']:.1f} GB/s into a cache-sized one; futex ping-pong "
          f"{m['futex-ping-pong']:.2f} us, spin {m['spin-ping-pong']:.3f} us one way")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", default=os.path.join(ROOT, "target/peers.json"))
    ap.add_argument("--report-only", action="store_true", help="print the table of the saved --json run")
    ap.add_argument("--hand-off-only", action="store_true",
                    help="only the hand-off workloads (write/stride, small frames, latency) and their "
                         "peers and limits: iceoryx2, the bare SPSC ring, memcpy, ping-pong")
    a = ap.parse_args()
    if a.report_only:
        with open(a.json) as f:
            d = json.load(f)
        report(d["all"], d["runs"], d["seconds"])
        return
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"],
                   cwd=os.path.join(ROOT, "benches/peers/limits"), check=True)
    # The iceoryx2 peer is its own Cargo project (kept out of framering's build).
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=IOX_DIR, check=True)
    s = str(a.seconds)
    fig = {}

    def add(key, value):
        fig.setdefault(key, []).append(value)

    def consumers_fps(r):
        return sum(x["fps"] for x in r["roles"][1:]) / max(1, r["spec"]["groups"])

    for run in range(a.runs):
        print(f"run {run + 1}/{a.runs}", file=sys.stderr)
        # Write-bound pass-through: producer writes every byte, 1 consumer strided.
        add("fr write/stride", consumers_fps(bench(s)))
        if not a.hand_off_only:
            add("fr write/none", consumers_fps(bench(s, "--consumer-work", "none")))
            add("fr write/stride spin", consumers_fps(bench(s, "--wait", "spin")))
            add("fr copy/stride", consumers_fps(bench(s, "--producer-work", "copy")))
            # Full readers: 1 and 2 consumers, producer not the bottleneck.
            add("fr none/full 1c", consumers_fps(bench(s, "--producer-work", "none", "--consumer-work", "full")))
            add("fr none/full 2c", sum(x["fps"] for x in bench(s, "--producer-work", "none", "--consumer-work", "full", "--consumers", "2")["roles"][1:]))
            add("fr write/full 2c", sum(x["fps"] for x in bench(s, "--consumer-work", "full", "--consumers", "2")["roles"][1:]))
            add("fr write/full 2 groups", consumers_fps(bench(s, "--consumer-work", "full", "--consumers", "2", "--groups", "2")))
            # Cache-aware reuse: ring depth.
            for slots in (8, 64, 256):
                add(f"fr write/full {slots} slots", consumers_fps(bench(s, "--consumer-work", "full", "--slots", str(slots))))
        # Hand-off bound.
        small = ["--height", "16", "--width", "16", "--channels", "1", "--producer-work", "none", "--consumer-work", "none"]
        add("fr handoff spin", consumers_fps(bench(s, *small, "--wait", "spin")))
        add("fr handoff default", consumers_fps(bench(s, *small)))
        # Latency of a waking consumer (1000 frames/s, so it sleeps between).
        r = bench("3", *small, "--rate", "1000", "--wait", "futex")
        add("fr latency futex p50", r["roles"][1]["latency_us"][0])
        r = bench("3", *small, "--rate", "1000", "--wait", "spin")
        add("fr latency spin p50", r["roles"][1]["latency_us"][0])
        # The same work over a bare SPSC ring: what is left without the protocol.
        raw = lambda *args: lines([RAW_RING, "--seconds", s, *args])[0]
        add("raw write/stride", raw()["fps"])
        add("raw handoff", raw(*small)["fps"])
        add("raw latency spin p50", lines([RAW_RING, "--seconds", "3", *small, "--rate", "1000"])[0]["latency_us"][0])
        # Peers.
        if not a.hand_off_only:
            for p in lines([sys.executable, PEERS, "--seconds", s]):
                add(f"{p['peer']} {p['consumers']}c {p['work']}", p["fps"])
        def iox(*args):
            return lines([IOX, "--seconds", s, *args])
        add("iox event stride", iox("--wait", "event")[0]["fps"])
        if not a.hand_off_only:
            add("iox spin stride", iox("--wait", "spin")[0]["fps"])
            add("iox event full 2 subs", med([x["fps"] for x in iox("--work", "full", "--subscribers", "2")]))
        add("iox handoff spin", iox(*small[:6], "--work", "none", "--wait", "spin")[0]["fps"])
        add("iox latency event p50", lines([IOX, "--seconds", "3", *small[:6], "--work", "none", "--rate", "1000", "--wait", "event"])[0]["latency_us"][0])
        add("iox latency spin p50", lines([IOX, "--seconds", "3", *small[:6], "--work", "none", "--rate", "1000", "--wait", "spin"])[0]["latency_us"][0])
        if not a.hand_off_only:
            g = lines(["bash", GST])[0]
            add("gstreamer-shm", g.get("fps", float("nan")))
            add("gstreamer-shm hang", 1 if g.get("hang") else 0)
        # Limits.
        for l in lines([LIMITS]):
            add(l["limit"], l.get("gb_per_s", l.get("one_way_us")))
            if "frames_per_s" in l:
                add(l["limit"] + " fps", l["frames_per_s"])

    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"runs": a.runs, "seconds": a.seconds, "median": {k: med(v) for k, v in fig.items()},
                   "all": fig}, f, indent=1)
    report(fig, a.runs, a.seconds)


if __name__ == "__main__":
    main()
