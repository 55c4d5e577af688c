#!/usr/bin/env python3
"""The main job against the loaders users pick instead, and against the
decode limit, in one run: a folder of 1080x720 photo-like JPEGs (or PNGs)
decoded into frames that a Python (or Rust) consumer reads, on the same 2
cores, every consumer reading every byte of every image (an XOR over the
image as uint64 words). Images/s are timed in the consumer from its first
image to its last (start-up is reported apart: framering's time to the first
frame). Per run, every peer once, in turn; figures are the medians over the
runs, ratios the medians of the per-run ratios.

    python benches/peers/loaders.py [--kind jpeg|png] [--runs 3] [--images 900]
        [--bin-dir target/release] [--only NAME,NAME]

Peers (each as its own docs recommend for throughput):
  framering-py     framering-producer (2 decode threads) -> a Python consumer
                   (the `framering` package: `for f in c: a = f.array()`);
                   also its latency from publication to the loop (p50, p99)
  framering-rust   framering-producer -> framering-consumer --output null
                   (a checksum of every byte); also the producer's peak
                   private memory (RssAnon + RssFile: besides the ring) and
                   the consumer's latency from publication to take (p50, p99)
  first-frame      ms from starting framering-producer to a waiting Python
                   consumer holding frame 0
  dataloader-*     torch.utils.data.DataLoader(num_workers=2), a map-style
                   Dataset decoding with torchvision.io.decode_jpeg (or
                   decode_image for PNG) or with PIL; batch_size None and 8
                   (default collate)
  spdl             SPDL 0.8: a PipelineBuilder pipe of spdl.io.load_image
                   (FFmpeg's decoders) with concurrency 2 on 2 threads
  pool             a Python shared-memory pool: 2 decoder processes, slot
                   indices over multiprocessing queues; simplejpeg (libjpeg-
                   turbo) decoding straight into the slot for JPEG, PIL for PNG
  limit-*          benches/peers/limits `decode`: the same files, in memory,
                   decoded on 2 threads into preallocated buffers with nothing
                   else (libjpeg-turbo and zune-jpeg; png and zune-png): one
                   buffer per thread (stays in the cache), or with -8slots 8
                   buffers written in turn, as the ring's 8 slots are; with
                   -8slots-reader (zune-jpeg, png) the 8 buffers in shared
                   memory and a third thread reading every byte of each
                   decoded image before it is written again: the pipeline
                   with nothing between decoder and consumer

Needs (in the interpreter's environment): numpy, torch, torchvision, pillow,
simplejpeg, spdl, and the framering package (`maturin build --release` in
python/ and `pip install` the wheel); framering's binaries in --bin-dir (e.g.
`cargo build --release --features turbojpeg`); the limit program is built
here with cargo. Missing Python peers are reported as missing, not fatal.
Inputs: examples/bench_inputs.rs (generated here when absent).
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
H, W, C = 720, 1080, 3
SHAPE = ["--config", "/dev/null", "--height", str(H), "--width", str(W), "--channels", "3",
         "--quiet"]
LIMIT = HERE / "limits/target/release/decode"


def touch(a):
    """Reads every byte of an image (contiguous, a multiple of 8 bytes)."""
    return np.bitwise_xor.reduce(np.ascontiguousarray(a).reshape(-1).view(np.uint64))


def rate(times):
    """Images/s between the first and the last of the consumer's images."""
    return (len(times) - 1) / (times[-1] - times[0])


def rss_private_mb(pid):
    kb = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    kb += int(line.split()[1])
    except OSError:
        pass
    return kb / 1024


def producer_cmd(a, folder, ring, loops, extra=()):
    return [str(a.bin_dir / "framering-producer"), *SHAPE, "--ring", ring, "--slots", "8",
            "--input", str(folder), "--loop", str(loops), "--decode-threads", "2", *extra]


def framering_py(a, folder, files, n, ring):
    import framering

    loops = max(1, n // len(files))
    p = subprocess.Popen(producer_cmd(a, folder, ring, loops, ["--wait-groups", "1"]),
                         stderr=subprocess.DEVNULL)
    times, lat = [], []
    with framering.Consumer(ring, group="g0", timeout=30) as c:
        clock, mono = time.perf_counter, time.clock_gettime_ns
        for f in c:
            # From publication to here (both CLOCK_MONOTONIC).
            lat.append(mono(time.CLOCK_MONOTONIC) - f.publish_ns)
            touch(f.array())
            times.append(clock())
    p.wait()
    if lat:
        lat.sort()
        a.py_latency.append({"p50_us": lat[len(lat) // 2] / 1e3,
                             "p99_us": lat[min(len(lat) - 1, len(lat) * 99 // 100)] / 1e3})
    return rate(times)


def framering_rust(a, folder, files, n, ring):
    loops = max(1, n // len(files))
    stats = f"/tmp/fr-loaders-{os.getpid()}.json"
    c = subprocess.Popen([str(a.bin_dir / "framering-consumer"), *SHAPE, "--ring", ring,
                          "--output", "null", "--stats-json", stats])
    p = subprocess.Popen(producer_cmd(a, folder, ring, loops, ["--stats-json", stats + ".p"]),
                         stderr=subprocess.DEVNULL)
    peak = 0.0
    while p.poll() is None:
        peak = max(peak, rss_private_mb(p.pid))
        time.sleep(0.01)
    if c.wait() != 0:
        raise RuntimeError(f"framering-consumer exited with {c.returncode}")
    with open(stats) as f:
        cs = json.load(f)
    fps = cs["fps"]
    if cs.get("latency"):
        a.consumer_latency.append(cs["latency"])
    with open(stats + ".p") as f:
        a.producer_stats.append(json.load(f))
    return fps, peak


def first_frame_ms(a, folder, ring):
    import framering

    # The consumer waits for the ring first, in a thread (its constructor
    # blocks until the ring exists), then the producer starts.
    import threading

    got = {}

    def consume():
        with framering.Consumer(ring, group="g0", timeout=30) as c:
            f = c.take(30.0)
            got["t"] = time.perf_counter()
            touch(f.array())
            f.release()
            for f in c:
                pass

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)  # the consumer is up and polling for the ring
    t0 = time.perf_counter()
    p = subprocess.Popen(producer_cmd(a, folder, ring, 1, ["--wait-groups", "1"]),
                         stderr=subprocess.DEVNULL)
    t.join()
    p.wait()
    return (got["t"] - t0) * 1e3


class Images:  # a map-style Dataset (torch imported in the workers too)
    def __init__(self, files, n, how):
        self.files, self.n, self.how = files, n, how

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch
        path = self.files[i % len(self.files)]
        if self.how == "torchvision":
            import torchvision.io as tio
            data = tio.read_file(path)
            if path.endswith(".jpg"):
                return tio.decode_jpeg(data)
            return tio.decode_image(data, mode=tio.ImageReadMode.RGB)
        from PIL import Image
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB")))


def dataloader(files, n, how, batch):
    import torch
    from torch.utils.data import DataLoader

    ds = Images(files, n, how)
    dl = DataLoader(ds, batch_size=batch, num_workers=2, shuffle=False)
    times = []
    clock = time.perf_counter
    for x in dl:
        if batch is None:
            touch(x.numpy())
            times.append(clock())
        else:
            for img in x:
                touch(img.numpy())
            t = clock()
            times.extend([t] * len(x))
    # Images/s: a batch's images arrive together, so count from the first
    # batch's arrival over the images after it.
    if batch is None:
        return rate(times)
    first = batch
    return (len(times) - first) / (times[-1] - times[0])


def spdl_load(path):
    import spdl.io
    return spdl.io.to_numpy(spdl.io.load_image(
        path, filter_desc=spdl.io.get_video_filter_desc(pix_fmt="rgb24")))


def spdl_pipeline(files, n):
    from spdl.pipeline import PipelineBuilder

    src = [files[i % len(files)] for i in range(n)]
    pipe = (PipelineBuilder().add_source(src).pipe(spdl_load, concurrency=2, output_order="input")
            .add_sink(buffer_size=8).build(num_threads=2))
    times = []
    clock = time.perf_counter
    with pipe.auto_stop():
        for img in pipe.get_iterator(timeout=60):
            touch(img)
            times.append(clock())
    return rate(times)


def pool_decoder(files, jobs, shm_name, slots, free, ready):
    shm = shared_memory.SharedMemory(name=shm_name)
    pool = np.ndarray((slots, H, W, C), np.uint8, buffer=shm.buf)
    jpeg = files[0].endswith(".jpg")
    if jpeg:
        import simplejpeg
    else:
        from PIL import Image
    while True:
        i = jobs.get()
        if i is None:
            break
        path = files[i % len(files)]
        s = free.get()
        if jpeg:
            with open(path, "rb") as f:
                simplejpeg.decode_jpeg(f.read(), colorspace="RGB", buffer=pool[s])
        else:
            with Image.open(path) as im:
                pool[s] = np.asarray(im.convert("RGB"))
        ready.put(s)
    del pool
    shm.close()


def python_pool(files, n, slots=8):
    shm = shared_memory.SharedMemory(create=True, size=slots * H * W * C)
    jobs, free, ready = mp.Queue(), mp.Queue(), mp.Queue()
    for s in range(slots):
        free.put(s)
    for i in range(n):
        jobs.put(i)
    decs = [mp.Process(target=pool_decoder, args=(files, jobs, shm.name, slots, free, ready))
            for _ in range(2)]
    for _ in decs:
        jobs.put(None)
    for d in decs:
        d.start()
    pool = np.ndarray((slots, H, W, C), np.uint8, buffer=shm.buf)
    times = []
    clock = time.perf_counter
    for _ in range(n):
        s = ready.get()
        touch(pool[s])
        times.append(clock())
        free.put(s)
    for d in decs:
        d.join()
    del pool
    shm.close()
    shm.unlink()
    return rate(times)


def limit(decoder, folder, seconds, slots=2, reader=False):
    env = dict(os.environ, DECODE_READER="1", DECODE_SHM="1") if reader else None
    out = subprocess.run([str(LIMIT), decoder, str(folder), "2", str(seconds), str(slots)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)["images_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="jpeg", choices=["jpeg", "png"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--images", type=int, default=0,
                    help="images per peer per run (default 900 JPEG, 300 PNG)")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target/release")
    ap.add_argument("--only", default="", help="comma-separated peer names")
    a = ap.parse_args()
    a.producer_stats = []
    a.consumer_latency = []
    a.py_latency = []
    n = a.images or (900 if a.kind == "jpeg" else 300)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "decode"], cwd=HERE / "limits",
                   check=True)
    data = ROOT / "target/bench-inputs"
    if not (data / "jpeg").is_dir():
        subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "bench_inputs", "--",
                        str(data), "10"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    folder = data / a.kind
    files = sorted(str(p) for p in folder.iterdir())
    secs = n / (300 if a.kind == "jpeg" else 90)  # about as long as a peer's run
    jpeg = a.kind == "jpeg"
    tv = "torchvision"
    peers = {
        "framering-py": lambda r: framering_py(a, folder, files, n, f"fr-loaders-{os.getpid()}-{r}"),
        "framering-rust": lambda r: framering_rust(a, folder, files, n, f"fr-loaders-r-{os.getpid()}-{r}"),
        "first-frame-ms": lambda r: first_frame_ms(a, folder, f"fr-loaders-ff-{os.getpid()}-{r}"),
        f"dataloader-{tv}-b1": lambda r: dataloader(files, n, tv, None),
        f"dataloader-{tv}-b8": lambda r: dataloader(files, n, tv, 8),
        "dataloader-pil-b1": lambda r: dataloader(files, n, "pil", None),
        "dataloader-pil-b8": lambda r: dataloader(files, n, "pil", 8),
        "spdl": lambda r: spdl_pipeline(files, n),
        "pool": lambda r: python_pool(files, n),
        "limit-turbojpeg" if jpeg else "limit-png": lambda r: limit("turbojpeg" if jpeg else "png", folder, secs),
        "limit-zune-jpeg" if jpeg else "limit-zune-png": lambda r: limit("zune-jpeg" if jpeg else "zune-png", folder, secs),
        # The same into 8 buffers in turn, as into the ring's 8 slots.
        "limit-turbojpeg-8slots" if jpeg else "limit-png-8slots": lambda r: limit("turbojpeg" if jpeg else "png", folder, secs, 8),
        "limit-zune-jpeg-8slots" if jpeg else "limit-zune-png-8slots": lambda r: limit("zune-jpeg" if jpeg else "zune-png", folder, secs, 8),
        # ... and a third thread reading every byte of each buffer before
        # its decoder writes it again (a pipeline with no ring, in one process).
        "limit-zune-jpeg-8slots-reader" if jpeg else "limit-png-8slots-reader": lambda r: limit("zune-jpeg" if jpeg else "png", folder, secs, 8, reader=True),
    }
    only = [p for p in a.only.split(",") if p]
    res = {k: [] for k in peers if not only or k in only}
    rss, errors = [], {}
    for r in range(a.runs):
        # Each run starts at another peer: the machine's load drifts.
        order = list(res)
        order = order[r % len(order):] + order[:r % len(order)]
        for k in order:
            if k in errors:
                continue
            try:
                v = peers[k](r)
            except Exception as e:  # a peer that cannot run here: say why
                errors[k] = f"{type(e).__name__}: {e}"
                print(json.dumps({"run": r, "peer": k, "error": errors[k]}), flush=True)
                continue
            if k == "framering-rust":
                v, peak = v
                rss.append(peak)
            res[k].append(v)
            print(json.dumps({"run": r, "peer": k, "value": round(v, 2)}), flush=True)
    m = statistics.median
    runs = {k: v for k, v in res.items() if v and len(v) == a.runs}
    out = {"kind": a.kind, "runs": a.runs, "images_per_peer_run": n,
           "load_average": os.getloadavg(),
           "medians": {k: round(m(v), 1) for k, v in runs.items()}, "errors": errors}
    if rss:
        out["producer_private_rss_mb"] = round(m(rss), 1)
    # Ratios of each framering figure to every other peer, per run.
    ratios = {}
    for mine in ("framering-py", "framering-rust"):
        if mine not in runs:
            continue
        for k, v in runs.items():
            if k == mine or k.startswith(("framering", "first")):
                continue
            ratios[f"{mine}/{k}"] = round(m([x / y for x, y in zip(runs[mine], v)]), 3)
    out["ratios"] = ratios
    # From publication to take: the Rust consumer's own figures; the Python
    # consumer's measured as each frame arrives in the loop.
    for key, lats in (("framering_rust_latency_us", a.consumer_latency),
                      ("framering_py_latency_us", a.py_latency)):
        if lats:
            out[key] = {q: round(m([l[q] for l in lats]), 1) for q in ("p50_us", "p99_us")}
    if a.producer_stats:
        out["producer_stages"] = a.producer_stats[-1].get("stages")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    mp.set_start_method("fork")
    main()
