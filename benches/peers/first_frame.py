#!/usr/bin/env python3
"""Where the time to the first frame goes: a Python consumer waits for the
ring (`framering.Consumer`, in a thread), then framering-producer starts with
`--wait-groups 1` and the producer's debug events (RUST_LOG) mark its way to
the first frame; the consumer marks when it attached and when it held
frame 0. Every time is CLOCK_REALTIME, in ms from starting the producer;
each stage is the gap to the milestone before it; medians over the starts.

    python benches/peers/first_frame.py [--starts 15] [--kind jpeg|png]
        [--producer target/release/framering-producer] [--raw FILE]
    python benches/peers/first_frame.py --summarize FILE

--raw appends every start's milestones to FILE (one JSON line each), so
that two builds can be interleaved (each venv's framering package with its
own producer, a few starts at a time) and summarized together afterwards.

Needs numpy and the framering package in the interpreter's environment, the
producer (--producer), and the inputs of examples/bench_inputs.rs in
target/bench-inputs (loaders.py makes them).
"""
import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path



ROOT = Path(__file__).resolve().parent.parent.parent

# The producer's debug events, in the order it reaches them, and the
# consumer's marks (in brackets), each with the stage that ends there.
MILESTONES = [
    ("listing inputs", "process start, flags, config"),
    ("creating the ring", "list the inputs"),
    ("ring created", "create the ring"),
    ("[attached]", "consumer notices the ring, attaches"),
    ("consumer groups joined", "producer sees the group"),
    ("first slot loaned", "first loan"),
    ("first image decoded", "read + decode the first image"),
    ("first image copied into its slot", "copy into the first slot"),
    ("first frame published", "publish"),
    ("[took frame 0]", "consumer wakes, takes frame 0"),
]


def stamp(line):
    """The CLOCK_REALTIME ns of a tracing line, and its message."""
    ts, _, rest = line.partition(" ")
    level_msg = rest.strip().split(" ", 1)
    when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return ns, level_msg[1] if len(level_msg) > 1 else ""


def one_start(a, folder, ring):
    import framering
    import numpy as np

    got, fields = {}, {}

    def consume():
        with framering.Consumer(ring, group="g0", timeout=30) as c:
            got["[attached]"] = time.time_ns()
            f = c.take(30.0)
            got["[took frame 0]"] = time.time_ns()
            np.asarray(f.array()).sum()
            f.release()
            for f in c:
                pass

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)  # the consumer is up and waiting for the ring
    env = dict(os.environ, RUST_LOG="framering=debug", NO_COLOR="1")
    cmd = [str(a.producer), "--config", "/dev/null", "--height", "720",
           "--width", "1080", "--channels", "3", "--quiet", "--ring", ring, "--slots", "8",
           "--input", str(folder), "--loop", "1", "--decode-threads", "2", "--wait-groups", "1"]
    t0 = time.time_ns()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    _, err = p.communicate()
    t.join()
    for line in err.splitlines():
        if line[:2] != "20":
            continue
        ns, msg = stamp(line)
        for name, _ in MILESTONES:
            if msg.startswith(name) and name not in got:
                got[name] = ns
                # The first image's read and decode times (its fields).
                for field in msg.split()[len(name.split()):]:
                    k, _, v = field.partition("=")
                    if v.isdigit():
                        fields[k] = int(v)
    out = {k: (v - t0) / 1e6 for k, v in got.items()}
    out.update(fields)
    return out


def summarize(runs, kind):
    m = statistics.median
    rows, prev = [], None
    # In the order they are reached (the first image's decode may end
    # before the ring is created).
    order = sorted((m([r[n] for r in runs if n in r]), n, stage) for n, stage in MILESTONES
                   if any(n in r for r in runs))
    for _, name, stage in order:
        at = [r[name] for r in runs if name in r]
        gaps = [r[name] - r[prev] for r in runs if name in r and prev in r] if prev else at
        rows.append({"milestone": name, "stage": stage, "at_ms": round(m(at), 2),
                     "stage_ms": round(m(gaps), 2)})
        prev = name
    total = [r["[took frame 0]"] for r in runs]
    return {"kind": kind, "starts": len(runs), "load_average": os.getloadavg(),
            "first_frame_ms": {"median": round(m(total), 2), "min": round(min(total), 2),
                               "max": round(max(total), 2)},
            "first_image_us": {k: m(r[k] for r in runs) for k in ("read_us", "decode_us")
                               if all(k in r for r in runs)},
            "stages": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=15)
    ap.add_argument("--kind", default="jpeg", choices=["jpeg", "png"])
    ap.add_argument("--producer", type=Path, default=ROOT / "target/release/framering-producer")
    ap.add_argument("--raw", type=Path, help="append each start's milestones to this file")
    ap.add_argument("--summarize", type=Path, help="summarize the starts in this file")
    a = ap.parse_args()
    if a.summarize:
        with open(a.summarize) as f:
            runs = [json.loads(line) for line in f]
        print(json.dumps(summarize(runs, a.kind), indent=1))
        return
    folder = ROOT / "target/bench-inputs" / a.kind
    runs = [one_start(a, folder, f"fr-first-{os.getpid()}-{i}") for i in range(a.starts)]
    if a.raw:
        with open(a.raw, "a") as f:
            for r in runs:
                f.write(json.dumps(r) + "\n")
    print(json.dumps(summarize(runs, a.kind), indent=1))


if __name__ == "__main__":
    main()
