"""Python consumers: zero-copy views, their lifetime, crashes, fork, threads,
signals, DLPack."""

import gc
import os
import signal
import struct
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

import framering
from conftest import REPO, binary, finish, in_forked_child, python_child, python_producer


def mapping_of(ring):
    """(start, end, file offset) of this process's mappings of
    /dev/shm/RING."""
    spans = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(f"/dev/shm/{ring}"):
                addresses, _, offset = line.split()[:3]
                lo, hi = addresses.split("-")
                spans.append((int(lo, 16), int(hi, 16), int(offset, 16)))
    return spans


def test_array_is_the_slot_and_holds_what_the_rust_producer_decoded(ring, tmp_path, empty_config):
    rng = np.random.default_rng(7)
    images = tmp_path / "images"
    images.mkdir()
    expected = []
    for i in range(3):
        img = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
        Image.fromarray(img).save(images / f"{i}.png")
    (images / "3.png").write_bytes((REPO / "assets" / "02-exact-480x360.png").read_bytes())
    for i in range(4):
        # An independent decode (Pillow) of what the Rust producer decodes.
        expected.append(np.asarray(Image.open(images / f"{i}.png").convert("RGB")))
    producer = subprocess.Popen(
        [binary("framering-producer"), "--config", empty_config, "--ring", ring, "-q",
         "--height", "360", "--width", "480", "--channels", "3", "--slots", "4",
         "--groups", "default", "--input", str(images)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    c = framering.Consumer(ring, timeout=10)
    assert (c.shape, c.dtype) == ((360, 480, 3), "uint8")
    with open(f"/dev/shm/{ring}", "rb") as seg:
        header = seg.read(512)
    assert header[:8] == b"FRAMERNG"
    (slots,) = struct.unpack_from("=I", header, 40)
    (stride,) = struct.unpack_from("=Q", header, 64)
    (frames_offset,) = struct.unpack_from("=Q", header, 152)
    seen = 0
    for f in c:
        a = f.array()
        assert a.shape == (360, 480, 3) and a.dtype == np.uint8
        assert not a.flags.writeable and not a.flags.owndata
        # The data pointer is a slot's start in a mapping of the ring's
        # segment (at file offset frames offset + k x slot stride, the
        # offsets read from the header as the README's layout gives them),
        # and the same for every view of the frame.
        ptr = a.ctypes.data
        [offset] = [off + ptr - lo for lo, hi, off in mapping_of(ring)
                    if lo <= ptr and ptr + a.nbytes <= hi]
        k, rest = divmod(offset - frames_offset, stride)
        assert rest == 0 and 0 <= k < slots, (offset, frames_offset, stride)
        assert f.array().ctypes.data == ptr
        assert np.from_dlpack(f).ctypes.data == ptr
        assert f.source.endswith(f"{f.seq}.png")
        assert f.src_size == (480, 360)
        np.testing.assert_array_equal(a, expected[f.seq])
        seen += 1
    assert seen == 4
    del a  # the last view: its slot goes back, the producer drains
    finish(producer)


def test_views_stay_valid_while_alive_and_their_slots_come_back_after(ring):
    producer = python_producer(ring, 53, slots=8)
    c = framering.Consumer(ring, timeout=10)
    kept, copies = [], []
    for f in c:
        if f.seq < 3:
            a = f.array()
            kept.append(a[1:, :, :])  # a slice keeps the slot too
            copies.append(a.copy())
        else:
            assert (f.array() == f.seq % 251).all()
        assert c.held <= 4
        if f.seq == 52:
            break
    # 50 frames went through 5 free slots while 3 stayed held: pixels unchanged.
    assert c.held == 4  # the three kept and the current one
    for a, copy in zip(kept, copies):
        np.testing.assert_array_equal(a, copy[1:])
    del a, f
    c.__exit__(None, None, None)  # done with the current frame
    assert c.held == 3
    kept.clear()
    assert c.held == 0
    finish(producer)


def test_release_with_a_live_view_or_slice_raises_and_is_fine_after_del(ring):
    p = framering.Producer(ring, shape=(4, 4, 1), slots=2)
    c = framering.Consumer(ring)
    p.publish(np.arange(16, dtype=np.uint8).reshape(4, 4, 1))
    f = c.take(timeout=5)
    a = f.array()
    s = a[::2]
    del a
    with pytest.raises(BufferError):
        f.release()
    with pytest.raises(ValueError):
        s[0, 0, 0] = 1  # a consumer's view is read-only
    with pytest.raises(TypeError):
        memoryview(f).cast("B")[0:1] = b"x"
    m = memoryview(f)
    assert m.readonly and m.shape == (4, 4, 1)
    del s
    with pytest.raises(BufferError):
        f.release()
    m.release()
    assert f.views == 0
    f.release()
    assert f.released
    # A released frame gives no view (and never a 0-d object array).
    with pytest.raises(BufferError):
        f.array()
    with pytest.raises(BufferError):
        np.asarray(f)
    assert p.close(timeout=5)


def test_a_frame_nobody_releases_goes_back_when_collected(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=1)
    c = framering.Consumer(ring)
    p.publish(np.zeros((2, 2, 1), np.uint8))
    f = c.take(timeout=5)
    with pytest.raises(TimeoutError):
        p.loan(timeout=0.1)  # the only slot is held
    del f
    gc.collect()
    p.loan(timeout=5).discard()
    assert c.held == 0
    assert p.close(timeout=5)


def test_for_loop_ends_at_end_of_stream_while_views_are_held(ring):
    producer = python_producer(ring, 5, slots=8)
    c = framering.Consumer(ring, timeout=10)
    arrays = [f.array() for f in c]
    assert [int(a[0, 0, 0]) for a in arrays] == [0, 1, 2, 3, 4]
    # At the end of the stream the frames still viewed were copied out of
    # their slots (the producer drains: it waits for every slot), once each.
    assert (c.held, c.detached) == (0, 5)
    assert "drained True" in finish(producer)
    assert [int(a[0, 0, 0]) for a in arrays] == [0, 1, 2, 3, 4]


KILLED_CONSUMER = """
import sys, time, framering
c = framering.Consumer(sys.argv[1], timeout=10)
held = [c.take(timeout=10) for _ in range(3)]
views = [f.array() for f in held]
print(" ".join(str(f.seq) for f in held), flush=True)
time.sleep(60)
"""


def test_frames_of_a_sigkilled_python_consumer_go_to_another_none_lost(ring):
    n = 40
    producer = python_producer(ring, n, slots=8)
    victim = python_child(KILLED_CONSUMER, ring)
    held = [int(s) for s in victim.stdout.readline().split()]
    assert len(held) == 3, victim.stderr.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    c = framering.Consumer(ring, timeout=10)
    seen = {}
    for f in c:
        assert (f.array() == f.seq % 251).all()
        assert f.meta == str(f.seq).encode()
        seen[f.seq] = f.redeliveries
    assert sorted(seen) == list(range(n)), "every frame arrives, none lost"
    assert all(seen[s] == 1 for s in held), seen
    assert "drained True" in finish(producer)


def test_a_forked_child_never_hands_back_the_parents_frames(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=1)
    c = framering.Consumer(ring)
    p.publish(np.full((2, 2, 1), 5, np.uint8))
    f = c.take(timeout=5)
    held = [f, f.array()]  # the frame and a view, dropped in the child
    del f

    def child():
        with pytest.raises(RuntimeError):
            c.take(timeout=0)
        held.clear()
        gc.collect()
        return True

    assert in_forked_child(child)
    # The slot is still ours: the producer cannot loan it, the view is intact.
    with pytest.raises(TimeoutError):
        p.loan(timeout=0.2)
    f, a = held
    assert (a == 5).all() and f.views == 1 and not f.released
    del a, held[1]
    f.release()
    p.loan(timeout=5).discard()
    assert p.close(timeout=5)


def test_take_lets_other_threads_run_while_it_waits(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=2)
    c = framering.Consumer(ring)
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    with pytest.raises(TimeoutError):
        c.take(timeout=0.5)
    during = counter[0]
    stop.set()
    t.join()
    # Holding the GIL for 0.5 s would leave the thread a few switch
    # intervals (5 ms each) at most.
    assert during > 100_000, during
    # And a frame published by another thread wakes the waiting take.
    threading.Timer(0.2, lambda: p.publish(np.ones((2, 2, 1), np.uint8))).start()
    f = c.take(timeout=5)
    assert (f.array() == 1).all()
    f.release()
    assert p.close(timeout=5)


CTRL_C = """
import sys, time, framering
c = framering.Consumer(sys.argv[1], timeout=10)
print("waiting", flush=True)
try:
    c.take()
except KeyboardInterrupt:
    print(time.monotonic(), flush=True)
"""


# The futex(2) syscall's number, for /proc/PID/syscall where wchan is hidden.
SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "riscv64": 98}.get(os.uname().machine)


def blocked_in_futex(pid):
    """Whether process `pid` (one thread) sleeps in futex(2): a take()
    waiting for a frame, with the GIL released."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            if "futex" in f.read():
                return True
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == str(SYS_FUTEX)
    except (OSError, IndexError):
        return False


def test_ctrl_c_interrupts_a_waiting_take(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=2)
    child = python_child(CTRL_C, ring)
    assert child.stdout.readline().strip() == "waiting", child.stderr.read()
    # Inside take(): asleep on the ring's futex.
    deadline = time.monotonic() + 30
    while not blocked_in_futex(child.pid):
        assert time.monotonic() < deadline, "the child never waited in take()"
        time.sleep(0.005)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out = finish(child, timeout=10)
    interrupted = float(out.strip())
    assert interrupted - sent < 0.1 + 0.05, interrupted - sent  # one 50 ms slice + slack
    p.close(timeout=1)


def test_the_legacy_dlpack_capsule_is_refused_for_a_read_only_frame(ring):
    # The legacy capsule (no max_version) has no read-only flag: an importer
    # would get a writable tensor over a frame other consumers read.
    p = framering.Producer(ring, shape=(2, 2, 1), slots=2)
    c = framering.Consumer(ring)
    p.publish(np.full((2, 2, 1), 5, dtype=np.uint8))
    f = c.take(timeout=5)
    for kwargs in ({}, {"max_version": None}, {"max_version": (0, 8)}):
        with pytest.raises(BufferError, match=r"DLPack 1\.0.*max_version=\(1, 0\)"):
            f.__dlpack__(**kwargs)
    assert f.views == 0  # nothing exported, nothing to hand back
    t = np.from_dlpack(f)  # numpy asks for DLPack 1.0
    assert not t.flags.writeable and (t == 5).all()
    del t
    f.release()
    assert p.close(timeout=5)


def test_dlpack_is_read_only_zero_copy_and_hands_the_view_back(ring):
    p = framering.Producer(ring, shape=(3, 4, 2), dtype="float32", slots=2)
    c = framering.Consumer(ring)
    src = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    p.publish(src)
    f = c.take(timeout=5)
    assert f.__dlpack_device__() == (1, 0)
    t = np.from_dlpack(f)
    assert t.dtype == np.float32 and t.shape == (3, 4, 2)
    assert not t.flags.writeable
    np.testing.assert_array_equal(t, src)
    assert t.ctypes.data == f.array().ctypes.data
    assert f.views == 1
    with pytest.raises(BufferError):
        f.release()
    del t
    assert f.views == 0
    # DLPack 1.0, unused: it hands back its view.
    capsule = f.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(capsule)
    assert f.views == 1
    del capsule
    assert f.views == 0
    f.release()
    assert p.close(timeout=5)


def test_a_timeout_beyond_the_clock_means_no_deadline(ring):
    # Seconds past what the clock can add (about 9.2e18) used to
    # panic; they wait as long as None does.
    forever = 1e19
    p = framering.Producer(ring, shape=(2, 2, 1), slots=1)
    c = framering.Consumer(ring, timeout=forever)
    later = threading.Timer(0.3, lambda: p.publish(np.ones((2, 2, 1), np.uint8), timeout=forever))
    later.start()
    f = c.take(timeout=forever)
    later.join()
    assert f is not None and f.array()[0, 0, 0] == 1
    f.release()
    assert p.close(timeout=forever)
