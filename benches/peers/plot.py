#!/usr/bin/env python3
"""fps against frame size, framering and its peers in the same run
(producer writes every byte, one consumer reads one byte per 4 KiB page;
GStreamer's fakesink reads none), medians of RUNS runs, interleaved; writes
benches/peers/fps-vs-size.png and .csv.
    python3 benches/peers/plot.py [--runs 3] [--seconds 2]
Needs numpy and matplotlib (pip), gst-launch-1.0 (apt), cargo (the iceoryx2
peer)."""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FR = os.path.join(ROOT, "target/release/framering")
SIZES = [(64, 64), (256, 256), (640, 480), (1280, 720), (1920, 1080)]


def framering(w, h, s):
    out = subprocess.run([FR, "bench", "--json", "--seconds", str(s), "--width", str(w),
                          "--height", str(h)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["roles"][1]["fps"]


def python_pool(w, h, s):
    out = subprocess.run([sys.executable, os.path.join(HERE, "python_peers.py"), "--seconds", str(s),
                          "--width", str(w), "--height", str(h), "--only", "pool:1:stride"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["fps"]


IOX_DIR = os.path.join(HERE, "iceoryx2")
IOX = os.path.join(IOX_DIR, "target/release/iceoryx2-peer")


def iceoryx2(w, h, s):
    out = subprocess.run([IOX, "--seconds", str(s), "--width", str(w), "--height", str(h)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[0])["fps"]


def gstreamer(w, h, s):
    # 20,000 frames (well under a second at the sizes where it runs); a run
    # that does not finish in 20 s is a hang (64x64 deadlocks here) and
    # plotted as a gap.
    out = subprocess.run(["bash", os.path.join(HERE, "gstreamer.sh"), "20000", str(w), str(h)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, GST_TIMEOUT="20")).stdout
    return json.loads(out).get("fps", float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bins"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=IOX_DIR, check=True)
    rows = []
    for w, h in SIZES:
        f, p, i, g = [], [], [], []
        for _ in range(a.runs):
            f.append(framering(w, h, a.seconds))
            p.append(python_pool(w, h, a.seconds))
            i.append(iceoryx2(w, h, a.seconds))
            g.append(gstreamer(w, h, a.seconds))
        fr, py, iox = (statistics.median(x) for x in (f, p, i))
        g = [x for x in g if x == x]  # hung runs are NaN
        gst = statistics.median(g) if g else float("nan")
        rows.append((w, h, w * h * 3, fr, py, iox, gst))
        print(f"{w}x{h}: framering {fr:,.0f} fps; Python pool {py:,.0f} ({fr / py:.1f}x); "
              f"iceoryx2 {iox:,.0f} ({fr / iox:.2f}x); GStreamer {gst:,.0f} ({fr / gst:.1f}x)", flush=True)
    with open(os.path.join(HERE, "fps-vs-size.csv"), "w", newline="") as f:
        c = csv.writer(f)
        c.writerow(["width", "height", "frame_bytes", "framering_fps", "python_pool_fps",
                    "iceoryx2_event_fps", "gstreamer_shm_fps"])
        c.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r[2] for r in rows]
    ax.loglog(xs, [r[3] for r in rows], "o-", label="framering (default wait)")
    ax.loglog(xs, [r[5] for r in rows], "^-", label="iceoryx2 pub-sub, event wake-ups")
    ax.loglog(xs, [r[6] for r in rows], "d-", label="GStreamer shmsink/shmsrc")
    ax.loglog(xs, [r[4] for r in rows], "s-", label="Python shm 100-slot pool + mp.Queue")
    ax.set_xticks(xs, [f"{r[0]}x{r[1]}" for r in rows])
    ax.set_xlabel("frame size (x3 bytes)")
    ax.set_ylabel("frames/s (median of %d)" % a.runs)
    ax.set_title("Producer writes every byte, 1 consumer strided; 2-vCPU VM")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "fps-vs-size.png"), dpi=110)


if __name__ == "__main__":
    main()
