#!/usr/bin/env python3
"""What a view that outlives its frame costs: the README's natural loop
`for f in c: a = f.array()` in one process (a Python Producer on a thread
loaning 720x1080x3 slots without writing them, the Consumer on the main
thread), on a ring of 8 slots (no copy: the ring has free slots while the
loop waits) and of 1 slot (every frame but the last is copied out of its
slot when the loop waits for the next). Prints frames/s, µs per frame and
the copies (`Consumer.detached`). Needs `pip install ./python numpy`.

    .venv/bin/python benches/peers/python_detach.py [--frames 2000]
"""
import argparse
import os
import threading
import time

import framering


def run(slots, frames, shape):
    ring = f"detach-bench-{os.getpid()}-{slots}"
    p = framering.Producer(ring, shape=shape, slots=slots, groups=["default"])
    c = framering.Consumer(ring, timeout=5)

    def produce():
        for _ in range(frames):
            with p.loan(timeout=30):
                pass

    t = threading.Thread(target=produce)
    t0 = time.perf_counter()
    t.start()
    seen = 0
    for f in c:
        a = f.array()  # noqa: F841 (alive while the loop waits for the next frame)
        seen += 1
        if seen == frames:
            break
    dt = time.perf_counter() - t0
    t.join()
    copies = c.detached
    del a, f
    p.close(timeout=5)
    print(f"slots={slots}: {seen / dt:,.0f} frames/s, {dt / seen * 1e6:.1f} us/frame, "
          f"{copies} copies of {seen} frames")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    a = ap.parse_args()
    for slots in (8, 1):
        run(slots, a.frames, (720, 1080, 3))


if __name__ == "__main__":
    main()
