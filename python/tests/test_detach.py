"""The natural loop `for f in c: a = f.array()` keeps the previous frame's
view alive while the next frame is awaited: a view that outlives its frame
is copied out of its slot (at the same address) when the ring would
otherwise stall, and costs nothing when it would not.

The producer is the Rust `framering-producer` reading bare raw frames on
stdin; frame i is `expected(i)`, different from every other frame, so a view
whose slot was rewritten under it shows."""

import json
import signal
import subprocess
import threading

import numpy as np
import pytest

import framering
from conftest import binary, in_forked_child, python_child, wait_for

SHAPE = (60, 80, 3)

# Frame i's pixels (the children define the same function).
EXPECTED = """
import numpy as np
SHAPE = (60, 80, 3)
def expected(i):
    n = SHAPE[0] * SHAPE[1] * SHAPE[2]
    return ((np.arange(n, dtype=np.uint32) * 7 + i * 13) % 251).astype(np.uint8).reshape(SHAPE)
"""
exec(EXPECTED)

# The README's loop, run by each consumer process: every frame's view is
# checked when made, and the previous frame's view — alive while `for`
# waited for this frame — is checked again before it is dropped.
README_LOOP = EXPECTED + """
import sys, framering
c = framering.Consumer(sys.argv[1], group=sys.argv[2], timeout=60)
seen = []
copies = 0
for f in c:
    if seen:
        assert (a == expected(seen[-1])).all(), f"the view of frame {seen[-1]} changed"
    a = f.array()
    assert (a == expected(f.seq)).all(), f"frame {f.seq} has wrong pixels"
    seen.append(f.seq)
    copies = c.detached
print(" ".join(map(str, seen)))
# Copies made until the last frame, and in all: at the end of the stream the
# last frame's view `a` is still alive, and the draining producer waits for it.
print(copies, c.detached, flush=True)
"""


def raw_producer(ring, config, slots, frames, group="g", start=None):
    """The Rust producer publishing `frames` raw frames from its stdin to
    the declared group `group`; stdin is fed (then closed) by a thread, once
    the event `start` (if given) is set."""
    p = subprocess.Popen(
        [binary("framering-producer"), "--config", config, "--ring", ring, "-q",
         "--height", str(SHAPE[0]), "--width", str(SHAPE[1]), "--channels", str(SHAPE[2]),
         "--slots", str(slots), "--groups", group, "--input", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed():
        try:
            if start is not None:
                start.wait()
            for i in range(frames):
                p.stdin.write(expected(i).tobytes())
            p.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the producer was killed (a failing test)

    threading.Thread(target=feed, daemon=True).start()
    return p


def status(ring, *args):
    return subprocess.run([binary("framering"), "status", ring, *args], capture_output=True,
                          text=True).stdout


def attached(ring):
    """Consumers attached to the ring, as `framering status` shows them."""
    out = status(ring, "--json", "--interval", "0.05")
    return len(json.loads(out)["consumers"]) if out else 0


@pytest.fixture
def reaper():
    """Processes to kill at the end of the test, should it fail."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def bounded(ring):
    """Ends a test whose consumer waits forever (`for f in c` has no
    timeout) with TimeoutError after 60 s: the consumer's waits run Python's
    signal handlers every 50 ms."""

    def expired(signum, frame):
        raise TimeoutError(f"the consumer is stuck after 60 s:\n{status(ring)}")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run_consumers(ring, config, consumers, slots, frames, timeout=90, groups=None):
    """`consumers` processes running the README loop, in one group or in
    `groups` (one name per consumer, each declared); returns each one's
    (frames seen, copies made). Fails, with the ring's status, if they have
    not finished within `timeout` seconds."""
    groups = groups or ["g"] * consumers
    start = threading.Event()
    producer = raw_producer(ring, config, slots, frames, start=start,
                            group=",".join(sorted(set(groups))))
    children = [python_child(README_LOOP, ring, g) for g in groups]
    results = []
    try:
        # Every consumer attached before the first frame: otherwise the first
        # ones could take every frame before the others are there.
        wait_for(lambda: attached(ring) == consumers, timeout=timeout,
                 what=f"{consumers} consumers to attach")
        start.set()
        for c in children:
            try:
                out, err = c.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                out = None
            if out is None:
                pytest.fail(f"the consumers did not finish within {timeout} s:\n{status(ring)}")
            assert c.returncode == 0, err
            seen, copies = out.splitlines()
            results.append((list(map(int, seen.split())), *map(int, copies.split())))
        assert producer.wait(timeout=30) == 0, producer.stderr.read()
    finally:
        for p in (producer, *children):
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


@pytest.mark.parametrize("consumers", [8, 16])
def test_readme_loop_with_as_many_consumers_as_slots_or_more(ring, empty_config, consumers):
    frames = 240
    results = run_consumers(ring, empty_config, consumers, slots=8, frames=frames)
    seen = sorted(s for frames_seen, _, _ in results for s in frames_seen)
    # Every frame exactly once in the group, each with its own pixels, and
    # every view kept its pixels while the ring went on.
    assert seen == list(range(frames))
    # The views that outlived their frames were copied out (the ring would
    # have stalled otherwise).
    assert sum(copies for _, copies, _ in results) > 0


def test_readme_loop_on_a_ring_of_one_slot(ring, empty_config):
    frames = 30
    [(seen, copies, _)] = run_consumers(ring, empty_config, 1, slots=1, frames=frames)
    assert seen == list(range(frames))
    # Every frame's view but the last outlived its frame while the producer
    # waited for the only slot.
    assert copies >= frames - 1


@pytest.mark.parametrize("slots", [1, 2])
def test_readme_loop_in_two_groups_sharing_the_slots(ring, empty_config, slots):
    # Each group's consumer keeps a view of a frame the other group reads
    # too: on one slot both wait for the other's share unless both let go.
    frames = 30
    results = run_consumers(ring, empty_config, 2, slots=slots, frames=frames,
                            groups=["a", "b"])
    for seen, _, _ in results:
        assert seen == list(range(frames))


def test_the_natural_loop_at_full_rate_makes_no_copy(ring, empty_config):
    frames = 2000
    [(seen, copies, total)] = run_consumers(ring, empty_config, 1, slots=8, frames=frames)
    assert seen == list(range(frames))
    assert copies == 0
    # The view of the last frame, alive after the loop, while the producer
    # drains.
    assert total == 1


def test_arrays_kept_in_a_list_stay_equal_to_their_frames(ring, empty_config, bounded, reaper):
    frames = 50
    producer = raw_producer(ring, empty_config, 8, frames)
    reaper.append(producer)
    c = framering.Consumer(ring, group="g", timeout=60)
    kept = []
    for f in c:
        kept.append(f.array())
        for i, a in enumerate(kept):
            np.testing.assert_array_equal(a, expected(i))
    assert len(kept) == frames
    # 50 frames kept: each copied out of its slot once (the ones the loop
    # ended with at the end of the stream, for the producer to drain); the
    # consumer holds no slot and the producer exits.
    assert c.detached == frames
    assert c.held == 0
    assert producer.wait(timeout=30) == 0, producer.stderr.read()
    ptrs = [a.ctypes.data for a in kept]
    for i, a in enumerate(kept):
        np.testing.assert_array_equal(a, expected(i))
    del a
    kept.clear()  # the copies go (no way to look, but nothing may crash)
    assert len(set(ptrs)) == frames  # each its own memory


def test_frames_kept_open_and_their_dlpack_tensors_and_memoryviews(ring, empty_config, bounded,
                                                                   reaper):
    """Frames the user keeps (not only views of them) while taking more than
    the ring has slots: detached too; their arrays, DLPack tensors and
    memoryviews keep the frames' pixels and addresses, and the frames still
    make views and give their metadata."""
    frames = 20
    producer = raw_producer(ring, empty_config, 4, frames)
    reaper.append(producer)
    c = framering.Consumer(ring, group="g", timeout=60)
    kept = []
    while (f := c.take()) is not None:
        a = f.array()
        kept.append((f, a, np.from_dlpack(f), memoryview(f), a.ctypes.data))
    assert [f.seq for f, *_ in kept] == list(range(frames))
    assert c.detached == frames and c.held == 0
    for i, (f, a, t, m, ptr) in enumerate(kept):
        for view in (a, t, np.asarray(m)):
            np.testing.assert_array_equal(view, expected(i))
            assert view.ctypes.data == ptr
        # A new view of a detached frame: the same memory.
        assert f.array().ctypes.data == ptr
        assert f.meta == b"" and not f.released
    assert producer.wait(timeout=30) == 0, producer.stderr.read()
    for f, *_ in kept:
        with pytest.raises(BufferError):
            f.release()  # views alive
    kept.clear()


def test_threads_sharing_a_consumer_read_their_views_while_others_detach_them(
        ring, empty_config, bounded, reaper):
    """Two threads take from one consumer of a 2-slot ring, each keeping its
    previous frame's view while it takes the next: a thread's wait copies
    the other's view out of its slot (with the GIL released) while that one
    may be reading it; neither ever sees other pixels."""
    frames = 200
    reaper.append(raw_producer(ring, empty_config, 2, frames))
    c = framering.Consumer(ring, group="g", timeout=60)
    seen, errors = [], []

    def worker():
        try:
            a = prev = None
            while (f := c.take()) is not None:
                with f:
                    if a is not None:
                        np.testing.assert_array_equal(a, expected(prev))
                    a, prev = f.array(), f.seq
                    np.testing.assert_array_equal(a, expected(prev))
                    seen.append(prev)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    # Daemons: a thread stuck in take() must not keep pytest from exiting.
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(seen) == list(range(frames))
    assert c.detached > 0


def test_a_forked_child_reads_the_parents_copies_and_hands_nothing_back(ring, bounded):
    p = framering.Producer(ring, shape=SHAPE, slots=1, groups=["default"])
    c = framering.Consumer(ring, timeout=10)
    p.publish(expected(0))
    with c.take(timeout=10) as f0:
        a = f0.array()
    # The producer waits for the only slot, which `a` keeps: the next take
    # copies frame 0 out of it.
    publisher = threading.Thread(target=p.publish, args=(expected(1),),
                                 kwargs={"timeout": 60}, daemon=True)
    publisher.start()
    f1 = c.take(timeout=30)
    publisher.join()
    assert (f1.seq, c.detached, c.held) == (1, 1, 1)

    def child():
        with pytest.raises(RuntimeError):
            c.take(timeout=0)
        return (a == expected(0)).all() and (f1.array() == expected(1)).all()

    assert in_forked_child(child)
    # The child's exit handed nothing back and unmapped nothing of ours.
    np.testing.assert_array_equal(a, expected(0))
    np.testing.assert_array_equal(f1.array(), expected(1))
    assert c.held == 1
    f1.release()
    del a
    assert p.close(timeout=10)
