#!/usr/bin/env python3
"""Two builds of framering, before and after a change, measured in the same
run: `framering bench` hand-off workloads, the two binaries interleaved run
by run, figures as medians and the after/before ratio as the median of the
per-run ratios (machine speed drifts between runs, not within one pair).

    python3 benches/compare_builds.py BEFORE/framering AFTER/framering [--runs 5] [--seconds 3] [--only NAME]

Workloads: the write-bound hand-off of 720x1080x3 frames (producer writes
every byte, consumer reads with a stride, default wait), the small-frame
hand-off (16x16x1, spin, no work), the wake-up latency of a sleeping
(futex) and of a spinning consumer (16x16x1, 1000 frames/s), and that of a
consumer with the default wait while one busy process per core competes for
the CPUs (as decoders do in the main job; a consumer that yields there
takes its frames a time slice late).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

SMALL = ["--height", "16", "--width", "16", "--channels", "1", "--producer-work", "none",
         "--consumer-work", "none"]
WORKLOADS = {
    "write/stride 720x1080x3 (fps)": ([], "fps"),
    "hand-off 16x16x1 spin (fps)": (SMALL + ["--wait", "spin"], "fps"),
    "asleep wake-up p50 (us)": (SMALL + ["--rate", "1000", "--wait", "futex"], "latency"),
    "spinning wake-up p50 (us)": (SMALL + ["--rate", "1000", "--wait", "spin"], "latency"),
    "default wake-up p50, cores busy (us)": (SMALL + ["--rate", "1000"], "latency-busy"),
}


def busy_cores(seconds):
    """One process per core that spins for `seconds` (it never yields)."""
    spin = "import time\nend = time.monotonic() + %f\nwhile time.monotonic() < end: pass" % seconds
    return [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]


def consumer(binary, seconds, args):
    out = subprocess.run([binary, "bench", "--json", "--seconds", str(seconds), *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["roles"][1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", action="append", default=[],
                    help="run only the workloads whose name contains this (repeatable)")
    a = ap.parse_args()
    chosen = {w: v for w, v in WORKLOADS.items() if not a.only or any(o in w for o in a.only)}
    got = {w: {"before": [], "after": []} for w in chosen}
    for run in range(a.runs):
        print(f"run {run + 1}/{a.runs}", flush=True)
        for w, (args, what) in chosen.items():
            for side in ("before", "after"):
                hogs = busy_cores(a.seconds + 1) if what == "latency-busy" else []
                r = consumer(getattr(a, side), a.seconds, args)
                for h in hogs:
                    h.wait()
                got[w][side].append(r["fps"] if what == "fps" else r["latency_us"][0])
    print(f"\n| workload | before | after | after/before (median of per-run ratios) | per-run ratios |")
    print("|---|---|---|---|---|")
    for w, d in got.items():
        ratios = [x / y for x, y in zip(d["after"], d["before"]) if y]
        print(f"| {w} | {statistics.median(d['before']):,.2f} | {statistics.median(d['after']):,.2f} "
              f"| {statistics.median(ratios):.3f} | {', '.join(f'{r:.2f}' for r in ratios)} |")


if __name__ == "__main__":
    main()
