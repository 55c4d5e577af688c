#!/usr/bin/env python3
"""The main job end to end: a folder of 1080x720 JPEGs (or PNGs) -> decoded
frames in a consumer process, in images/s, framering against the Python way
(a shared-memory pool filled by 2 decoder processes using OpenCV, slot
indices over multiprocessing.Queue; and multiprocessing.Pool(2).imap of
cv2.imdecode), in the same run; every consumer reads every byte. Also framering's time
to the first frame in a consumer, and the producer's private resident memory
(RssAnon + RssFile, i.e. besides the shared pool).

    python3 benches/peers/endtoend.py [--runs 3] [--kind jpeg|png]
Needs numpy, opencv-python-headless; inputs from examples/bench_inputs.rs.
"""
import argparse
import glob
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import time
from multiprocessing import shared_memory

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
B = os.path.join(ROOT, "target/release")
H, W, C = 720, 1080, 3
SHAPE = ["--config", "/dev/null", "--height", str(H), "--width", str(W), "--channels", "3", "--quiet",
         "--slots", "8"]  # as the shipped config.toml


def rss_private(pid):
    kb = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    kb += int(line.split()[1])
    except OSError:
        pass
    return kb / 1024


def framering(folder, loops, ring):
    c = subprocess.Popen([f"{B}/framering-consumer", *SHAPE, "--ring", ring, "--output", "null",
                          "--stats-json", "/tmp/fr-e2e-c.json"], stderr=subprocess.DEVNULL)
    p = subprocess.Popen([f"{B}/framering-producer", *SHAPE, "--ring", ring, "--input", folder,
                          "--loop", str(loops), "--decode-threads", "2"], stderr=subprocess.DEVNULL)
    peak = 0.0
    while p.poll() is None:
        peak = max(peak, rss_private(p.pid))
        time.sleep(0.02)
    c.wait()
    with open("/tmp/fr-e2e-c.json") as f:
        return json.load(f)["fps"], peak


def first_frame(folder, ring):
    """Seconds from starting the producer to a consumer holding frame 0."""
    c = subprocess.Popen([f"{B}/framering-consumer", *SHAPE, "--ring", ring, "--output", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # the consumer is up and waiting for the ring
    t0 = time.perf_counter()
    p = subprocess.Popen([f"{B}/framering-producer", *SHAPE, "--ring", ring, "--input", folder,
                          "--decode-threads", "2"], stderr=subprocess.DEVNULL)
    need, got = H * W * C, 0
    while got < need:
        got += len(c.stdout.read(need - got))
    t = time.perf_counter() - t0
    c.stdout.read()
    c.wait()
    p.wait()
    return t


def py_decoder(files, jobs, shm_name, slots, free, ready):
    import cv2
    cv2.setNumThreads(1)
    shm = shared_memory.SharedMemory(name=shm_name)
    pool = np.ndarray((slots, H, W, C), np.uint8, buffer=shm.buf)
    while True:
        i = jobs.get()
        if i is None:
            break
        img = cv2.imdecode(np.fromfile(files[i % len(files)], np.uint8), cv2.IMREAD_COLOR)
        s = free.get()
        pool[s] = img  # the decoder's buffer copied into the pool
        ready.put(s)
    del pool
    shm.close()


def py_consumer(shm_name, slots, ready, free, n, out):
    shm = shared_memory.SharedMemory(name=shm_name)
    pool = np.ndarray((slots, H, W, C), np.uint8, buffer=shm.buf)
    t0 = None
    for _ in range(n):
        s = ready.get()
        if t0 is None:
            t0 = time.perf_counter()
        np.bitwise_xor.reduce(pool[s].reshape(-1).view(np.uint64))
        free.put(s)
    out.put((n - 1) / (time.perf_counter() - t0))
    del pool
    shm.close()


def python_pool(files, n, slots=16):
    shm = shared_memory.SharedMemory(create=True, size=slots * H * W * C)
    jobs, free, ready, out = mp.Queue(), mp.Queue(), mp.Queue(), mp.Queue()
    for s in range(slots):
        free.put(s)
    for i in range(n):
        jobs.put(i)
    decs = [mp.Process(target=py_decoder, args=(files, jobs, shm.name, slots, free, ready)) for _ in range(2)]
    for _ in decs:
        jobs.put(None)
    con = mp.Process(target=py_consumer, args=(shm.name, slots, ready, free, n, out))
    con.start()
    for d in decs:
        d.start()
    fps = out.get()
    for d in decs + [con]:
        d.join()
    shm.close()
    shm.unlink()
    return fps


def imap_decode(path):
    import cv2
    cv2.setNumThreads(1)
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)


def python_imap(files, n):
    """multiprocessing.Pool(2).imap: decoded arrays pickled back to the parent."""
    with mp.Pool(2) as pool:
        t0, k = None, 0
        for img in pool.imap(imap_decode, (files[i % len(files)] for i in range(n)), chunksize=4):
            if t0 is None:
                t0 = time.perf_counter()
            np.bitwise_xor.reduce(img.reshape(-1).view(np.uint64))
            k += 1
        return (k - 1) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--kind", default="jpeg")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "turbojpeg", "--bins", "--examples"],
                   cwd=ROOT, check=True)
    data = os.path.join(ROOT, "target/bench-inputs")
    if not os.path.isdir(os.path.join(data, "jpeg")):
        subprocess.run([f"{B}/examples/bench_inputs", data, "10"], check=True, stdout=subprocess.DEVNULL)
    folder = os.path.join(data, a.kind)
    files = sorted(glob.glob(folder + "/*"))
    loops = 100 if a.kind == "jpeg" else 30
    fr, rss, ff, py, imap = [], [], [], [], []
    for r in range(a.runs):
        ring = f"framering-e2e-{os.getpid()}-{r}"
        f, peak = framering(folder, loops, ring)
        fr.append(f)
        rss.append(peak)
        ff.append(first_frame(folder, ring + "-ff"))
        py.append(python_pool(files, loops * len(files)))
        imap.append(python_imap(files, loops * len(files) // 2))
    m = statistics.median
    # Ratios: medians of the per-run ratios (the VM's speed drifts between
    # runs; both sides of a ratio are measured within the same run).
    print(json.dumps({"kind": a.kind, "framering_images_per_s": m(fr),
                      "python_pool_opencv_2_decoders_images_per_s": m(py),
                      "ratio": m([x / y for x, y in zip(fr, py)]),
                      "python_pool_imap_2_workers_images_per_s": m(imap),
                      "ratio_imap": m([x / y for x, y in zip(fr, imap)]),
                      "runs": {"framering": fr, "python_pool": py, "imap": imap},
                      "framering_first_frame_ms": m(ff) * 1e3, "producer_private_rss_mb": m(rss)}))


if __name__ == "__main__":
    main()
