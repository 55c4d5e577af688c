#!/usr/bin/env python3
"""A Python consumer of framering (the `framering` package) against the Rust
consumer, iceoryx2's Python bindings and the Python `shared_memory` pool, in
the same run: 720x1080x3 uint8 frames, the producer writing every byte of
each frame, the consumer taking each frame, making a numpy view of it and
handing it back (no other work).

    .venv/bin/python benches/peers/python_consumer.py [--seconds 3] [--runs 3]
        [--bin-dir target/release]

Needs `pip install ./python numpy iceoryx2` in the interpreter's
environment and `cargo build --release`. Measures, per run:

  rust        `framering bench --consumer-work none`: the Rust consumer's fps
  python      the `framering-bench` Rust producer (`framering bench-role`,
              writing every byte) and a Python consumer: take + array() +
              release(); fps, and the time of each of those calls together
  python-queued  the same with the producer writing nothing and the
              consumer pausing 0.5 ms before every 4 frames, so that each take
              finds its frame queued: the cost of take + array() + release()
              alone, without waiting (p50, p99; fps is not comparable)
  iceoryx2    iceoryx2 publish-subscribe between two Python processes
              (loaned slices, lossless): the publisher fills every byte, the
              subscriber busy-polls receive(), views the payload with numpy
              and deletes the sample; fps and receive + view + delete time
  pool        python_peers.py's shared_memory pool of 100 slots (fps)

Prints one JSON line per measurement, then the medians of the runs and the
ratios. Not a test: nothing is asserted.
"""
import argparse
import ctypes
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import python_peers  # noqa: E402  (the shared_memory pool, reused)

SHAPE = (720, 1080, 3)


def percentiles(ns):
    ns = np.asarray(ns, dtype=np.float64) / 1e3
    return float(np.percentile(ns, 50)), float(np.percentile(ns, 99))


def rust(bin_dir, seconds):
    out = subprocess.run(
        [str(bin_dir / "framering"), "bench", "--seconds", str(seconds), "--consumer-work", "none",
         "--producer-work", "write", "--json"],
        check=True, capture_output=True, text=True).stdout
    consumer = [r for r in json.loads(out)["roles"] if r["role"].startswith("consumer")][0]
    return {"fps": consumer["fps"]}


def framering_python(bin_dir, seconds, producer_work, queued=False):
    import framering

    ring = f"pyconsumer-bench-{os.getpid()}"
    spec = {
        "height": SHAPE[0], "width": SHAPE[1], "channels": SHAPE[2], "slots": 8, "frames": 0,
        "seconds": seconds, "consumers": 1, "groups": 1, "producer_work": producer_work,
        "consumer_work": "none", "wait": "spin-then-futex", "max_queued": 8 if queued else 0,
        "drop_oldest": False, "rate": 0.0, "ring": ring,
    }
    producer = subprocess.Popen(
        [str(bin_dir / "framering"), "bench-role", "--role", "producer", "--index", "0",
         "--group", "0", "--spec", json.dumps(spec)],
        stdout=subprocess.DEVNULL)
    c = framering.Consumer(ring, group="g0", timeout=30)
    times = []
    clock = time.perf_counter_ns
    first = last = None
    take = c.take
    n = 0
    while True:
        if queued and n % 4 == 0:
            # Spin 0.5 ms (a sleep would let the core's caches go cold): the
            # producer queues up to 8 frames meanwhile.
            until = clock() + 500_000
            while clock() < until:
                pass
        n += 1
        t0 = clock()
        f = take(10.0)
        if f is None:
            break
        a = f.array()
        del a
        f.release()
        t1 = clock()
        times.append(t1 - t0)
        if first is None:
            first = t1
        last = t1
    producer.wait()
    times = times[1:]  # the first includes the wait for the producer to start
    p50, p99 = percentiles(times)
    return {"fps": (len(times)) / ((last - first) / 1e9), "p50_us": p50, "p99_us": p99}


def iox_subscriber(service_name, ready, out):
    import iceoryx2 as iox2

    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = iox_service(node, service_name)
    sub = service.subscriber_builder().create()
    ready.set()
    times, first, last = [], None, None
    clock = time.perf_counter_ns
    n = int(np.prod(SHAPE))
    receive = sub.receive
    while True:
        t0 = clock()
        sample = receive()
        if sample is None:
            continue
        payload = sample.payload()
        if payload.len() != n:
            sample.delete()
            break
        a = np.frombuffer(payload.as_memory_view(), dtype=np.uint8).reshape(SHAPE)
        del a
        sample.delete()
        t1 = clock()
        times.append(t1 - t0)
        if first is None:
            first = t1
        last = t1
    out.put((times, first, last))


def iox_service(node, name):
    import iceoryx2 as iox2

    return (node.service_builder(iox2.ServiceName.new(name))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .enable_safe_overflow(False)
            .subscriber_max_buffer_size(8)
            .history_size(0)
            .open_or_create())


def iceoryx2(seconds):
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    name = f"framering-bench/iox-{os.getpid()}-{time.monotonic_ns()}"
    n = int(np.prod(SHAPE))
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = iox_service(node, name)
    pub = (service.publisher_builder().initial_max_slice_len(n)
           .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
    ready, out = mp.Event(), mp.Queue()
    sub = mp.Process(target=iox_subscriber, args=(name, ready, out))
    sub.start()
    ready.wait()
    time.sleep(0.2)
    pub.update_connections()
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        s = pub.loan_slice_uninit(n)
        view = np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(s.payload_ptr))
        view.fill(i & 255)  # the producer writes every byte
        del view
        s.assume_init().send()
        i += 1
    s = pub.loan_slice_uninit(1)  # end marker
    s.assume_init().send()
    times, first, last = out.get()
    sub.join()
    times = times[1:]
    p50, p99 = percentiles(times)
    return {"fps": len(times) / ((last - first) / 1e9), "p50_us": p50, "p99_us": p99}


def pool(seconds):
    return {"fps": python_peers.run_pool(SHAPE, seconds, 1, "none")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin-dir", type=Path, default=HERE.parent.parent / "target" / "release")
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    cases = {
        "rust": lambda: rust(a.bin_dir, a.seconds),
        "python": lambda: framering_python(a.bin_dir, a.seconds, "write"),
        "python-queued": lambda: framering_python(a.bin_dir, a.seconds, "none", queued=True),
        "iceoryx2": lambda: iceoryx2(a.seconds),
        "pool": lambda: pool(a.seconds),
    }
    results = {k: [] for k in cases if not a.only or k in a.only}
    for run in range(a.runs):
        for k in results:
            r = cases[k]()
            results[k].append(r)
            print(json.dumps({"run": run, "case": k, **r}), flush=True)
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in results.items()}
    print(json.dumps({"median": med}), flush=True)
    fps = {k: v["fps"] for k, v in med.items()}
    if "python" in fps:
        ratios = {f"python/{k}": fps["python"] / fps[k] for k in fps
                  if k not in ("python", "python-queued")}
        print(json.dumps({"fps_ratio": ratios}), flush=True)


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
