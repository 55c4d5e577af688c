#!/usr/bin/env python3
"""The Python ways of moving frames between processes, measured with the same
work as `framering bench`: the producer writes every byte of each frame
(`write`), each consumer reads nothing (`none`), one byte per 4 KiB page
(`stride`) or every byte (`full`). Prints one JSON object per line: {"peer", "consumers", "work",
"fps"}, fps being frames delivered to consumers per second (all consumers
together), measured from the first to the last frame.

    python3 benches/peers/python_peers.py [--seconds S] [--height H --width W]

Peers:
  queue    multiprocessing.Queue of numpy frames (pickled through a pipe)
  event    multiprocessing.shared_memory, one buffer, two Events (lockstep)
  pool     multiprocessing.shared_memory as a pool of 100 slots, slot indices
           over a multiprocessing.Queue, freed slots back over another
"""
import argparse
import json
import multiprocessing as mp
import time
from multiprocessing import shared_memory

import numpy as np

STOP = -1


def consume(frame, work):
    if work == "none":
        return 0
    if work == "stride":
        return int(frame.reshape(-1)[::4096].sum())
    # full: read every byte (as uint64 words)
    return int(np.bitwise_xor.reduce(frame.reshape(-1).view(np.uint64)))


# --- multiprocessing.Queue -------------------------------------------------
def queue_consumer(q, work, out):
    n, t0 = 0, None
    while True:
        f = q.get()
        if f is None:
            break
        if t0 is None:
            t0 = time.perf_counter()
        consume(f, work)
        n += 1
    out.put((n, t0, time.perf_counter()))


def run_queue(shape, seconds, consumers, work):
    q = mp.Queue(maxsize=8)
    out = mp.Queue()
    ps = [mp.Process(target=queue_consumer, args=(q, work, out)) for _ in range(consumers)]
    for p in ps:
        p.start()
    frame = np.empty(shape, np.uint8)
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        frame.fill(i & 255)
        q.put(frame)
        i += 1
    for _ in ps:
        q.put(None)
    return collect(out, ps)


# --- shared_memory + Event, lockstep ----------------------------------------
def event_consumer(name, shape, ready, free, stop, work, out):
    shm = shared_memory.SharedMemory(name=name)
    frame = np.ndarray(shape, np.uint8, buffer=shm.buf)
    n, t0 = 0, None
    while True:
        ready.wait()
        ready.clear()
        if stop.value:
            break
        if t0 is None:
            t0 = time.perf_counter()
        consume(frame, work)
        n += 1
        free.set()
    del frame
    shm.close()
    out.put((n, t0, time.perf_counter()))


def run_event(shape, seconds, consumers, work):
    assert consumers == 1, "a single buffer has a single reader"
    size = int(np.prod(shape))
    shm = shared_memory.SharedMemory(create=True, size=size)
    frame = np.ndarray(shape, np.uint8, buffer=shm.buf)
    ready, free, stop = mp.Event(), mp.Event(), mp.Value("b", 0)
    out = mp.Queue()
    p = mp.Process(target=event_consumer, args=(shm.name, shape, ready, free, stop, work, out))
    p.start()
    free.set()
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        free.wait()
        free.clear()
        frame.fill(i & 255)
        ready.set()
        i += 1
    free.wait()
    stop.value = 1
    ready.set()
    r = collect(out, [p])
    del frame
    shm.close()
    shm.unlink()
    return r


# --- shared_memory pool of 100 slots, indices over Queues --------------------
def pool_consumer(name, shape, slots, ready, free, work, out):
    shm = shared_memory.SharedMemory(name=name)
    pool = np.ndarray((slots,) + shape, np.uint8, buffer=shm.buf)
    n, t0 = 0, None
    while True:
        s = ready.get()
        if s == STOP:
            break
        if t0 is None:
            t0 = time.perf_counter()
        consume(pool[s], work)
        n += 1
        free.put(s)
    del pool
    shm.close()
    out.put((n, t0, time.perf_counter()))


def run_pool(shape, seconds, consumers, work, slots=100):
    size = int(np.prod(shape)) * slots
    shm = shared_memory.SharedMemory(create=True, size=size)
    pool = np.ndarray((slots,) + shape, np.uint8, buffer=shm.buf)
    ready, free, out = mp.Queue(), mp.Queue(), mp.Queue()
    for s in range(slots):
        free.put(s)
    ps = [
        mp.Process(target=pool_consumer, args=(shm.name, shape, slots, ready, free, work, out))
        for _ in range(consumers)
    ]
    for p in ps:
        p.start()
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        s = free.get()
        pool[s].fill(i & 255)
        ready.put(s)
        i += 1
    for _ in ps:
        ready.put(STOP)
    r = collect(out, ps)
    del pool
    shm.close()
    shm.unlink()
    return r


def collect(out, ps):
    res = [out.get() for _ in ps]
    for p in ps:
        p.join()
    n = sum(r[0] for r in res)
    t0 = min(r[1] for r in res if r[1] is not None)
    t1 = max(r[2] for r in res)
    return n / (t1 - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1080)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="peer:consumers:work, e.g. pool:2:full")
    a = ap.parse_args()
    shape = (a.height, a.width, a.channels)
    cases = a.only or ["queue:1:stride", "event:1:stride", "pool:1:stride", "pool:2:full", "pool:1:full"]
    runners = {"queue": run_queue, "event": run_event, "pool": run_pool}
    for case in cases:
        peer, consumers, work = case.split(":")
        fps = runners[peer](shape, a.seconds, int(consumers), work)
        print(json.dumps({"peer": "python-" + peer, "consumers": int(consumers), "work": work, "fps": fps}), flush=True)


if __name__ == "__main__":
    main()
