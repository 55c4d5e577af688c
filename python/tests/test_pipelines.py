"""Mixed pipelines (Rust and Python on either side), dtypes, metadata, the
producer API."""

import json
import os
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

import framering
from conftest import REPO, binary, finish, python_child


def test_rust_producer_to_python_consumers_of_two_groups(ring, empty_config):
    producer = subprocess.Popen(
        [binary("framering-producer"), "--config", empty_config, "--ring", ring, "-q",
         "--height", "90", "--width", "120", "--channels", "3", "--slots", "8",
         "--groups", "rec", "preview", "--input", str(REPO / "assets"), "--loop", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = """
import sys, framering
c = framering.Consumer(sys.argv[1], group=sys.argv[2], timeout=10)
print(" ".join(str(f.seq) for f in c), flush=True)
"""
    consumers = [python_child(code, ring, g) for g in ("rec", "preview")]
    seqs = [list(map(int, finish(c).split())) for c in consumers]
    finish(producer)
    # Broadcast between groups: each group gets every frame, in order.
    assert seqs[0] == seqs[1] == list(range(len(seqs[0])))
    assert len(seqs[0]) >= 3 * 7  # the decodable assets, three times


def test_python_producer_to_the_rust_consumer_writing_pngs(ring, tmp_path, empty_config):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    out = tmp_path / "out"
    consumer = subprocess.Popen(
        [binary("framering-consumer"), "--config", empty_config, "--ring", ring, "-q",
         "--output", str(out), "--format", "png", "--wait-timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with framering.Producer(ring, shape=(48, 64, 3), slots=4, groups=["default"]) as p:
        for i, frame in enumerate(frames):
            with p.loan(timeout=5) as s:
                s.array()[:] = frame
                s.source = f"frame{i}.raw"
        assert p.published == 3
    finish(consumer)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3, pngs
    for png, frame in zip(pngs, frames):
        np.testing.assert_array_equal(np.asarray(Image.open(png)), frame)


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_frames_of_other_dtypes_round_trip_between_processes(ring, dtype):
    code = """
import io, sys, numpy as np, framering
c = framering.Consumer(sys.argv[1], timeout=10)
for f in c:
    a = f.array()
    # Saved to memory, then written: np.save straight to a buffered pipe
    # fails in numpy 2.4 ("obtaining file position failed").
    buf = io.BytesIO()
    np.save(buf, a)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
"""
    child = subprocess.Popen(
        [__import__("sys").executable, "-c", code, ring],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rng = np.random.default_rng(5)
    if dtype == "float32":
        sent = [rng.standard_normal((5, 7, 2)).astype(np.float32) for _ in range(3)]
        sent[0][0, 0, 0] = np.inf
    else:
        sent = [rng.integers(0, 65536, (5, 7, 2), dtype=np.uint16) for _ in range(3)]
    with framering.Producer(ring, shape=(5, 7, 2), dtype=dtype, groups=["default"]) as p:
        assert p.dtype == dtype
        for a in sent:
            p.publish(a)
        # A transposed (not contiguous) array is copied in C order.
        p.publish(np.ascontiguousarray(sent[1].transpose(1, 0, 2)).transpose(1, 0, 2))
        with pytest.raises(ValueError):
            p.publish(sent[0].astype(np.float64))  # wrong dtype: refused, not cast
        with pytest.raises(ValueError):
            p.publish(sent[0][:4])  # wrong shape
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    import io
    buf = io.BytesIO(out)
    got = [np.load(buf) for _ in range(4)]
    for a, b in zip(got, sent + [sent[1]]):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


def test_metadata_round_trips(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=4, user_meta_bytes=64)
    c = framering.Consumer(ring)
    assert p.user_meta_capacity == 64 == c.user_meta_capacity
    before = time.time_ns()
    with p.loan(timeout=5) as s:
        s.array()[:] = 1
        s.meta = b'{"exposure_us": 8000}'
        s.pts_ns = 40_000_000
        s.source = "cam0/000123.jpg"
    p.publish(np.zeros((2, 2, 1), np.uint8), meta=b"\x00\xff" * 32, capture_ns=123)
    with pytest.raises(ValueError):
        p.publish(np.zeros((2, 2, 1), np.uint8), meta=b"x" * 65)
    f = c.take(timeout=5)
    assert f.meta == b'{"exposure_us": 8000}'
    assert f.pts_ns == 40_000_000
    assert f.source == "cam0/000123.jpg"
    assert before <= f.capture_ns <= time.time_ns()  # captured when published
    assert f.publish_ns > 0
    f.release()
    g = c.take(timeout=5)
    assert (g.meta, g.capture_ns, g.pts_ns) == (b"\x00\xff" * 32, 123, None)
    g.release()
    assert p.close(timeout=5)


def test_a_loan_refuses_to_publish_while_views_are_alive(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=2)
    c = framering.Consumer(ring)
    s = p.loan(timeout=5)
    a = s.array()
    a[:] = 9
    with pytest.raises(BufferError):
        s.__exit__(None, None, None)
    with pytest.raises(BufferError):
        s.publish()
    del a
    assert s.publish() == 0
    # A block that raises publishes nothing.
    with pytest.raises(KeyError):
        with p.loan(timeout=5) as s2:
            s2.array()[:] = 1
            raise KeyError
    f = c.take(timeout=5)
    assert (f.array() == 9).all()
    f.release()
    with pytest.raises(TimeoutError):
        c.take(timeout=0.1)
    assert p.close(timeout=5)
    assert not os.path.exists(f"/dev/shm/{ring}")


def test_held_frames_show_in_framering_status_and_close_is_bounded(ring):
    p = framering.Producer(ring, shape=(2, 2, 1), slots=2, groups=["default"])
    c = framering.Consumer(ring)
    p.publish(np.zeros((2, 2, 1), np.uint8))
    f = c.take(timeout=5)
    a = f.array()
    time.sleep(0.3)
    out = subprocess.run([binary("framering"), "status", ring, "--json", "--interval", "0.1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    me = [x for x in status["consumers"] if x["pid"] == os.getpid()]
    assert me and me[0]["slots_held"] == 1 and me[0]["oldest_held_age_s"] >= 0.2, status
    # A consumer that keeps its frame cannot make close() hang.
    started = time.monotonic()
    assert p.close(timeout=0.3) is False
    assert time.monotonic() - started < 2
    del a, f


@pytest.mark.parametrize("reuse,expected", [("last-freed", [1, 3, 0, 2]),
                                            ("first-freed", [2, 0, 3, 1])])
def test_reuse_picks_the_slot_handed_back_last_or_first(ring, reuse, expected):
    def address(loan):
        return loan.array().__array_interface__["data"][0]

    p = framering.Producer(ring, shape=(2, 2, 1), slots=4, groups=["default"], reuse=reuse)
    c = framering.Consumer(ring, group="default")
    slot_of = []  # the slot's address, by frame number
    for i in range(4):
        with p.loan(timeout=5) as s:
            slot_of.append(address(s))
            s.array()[:] = i
    frames = {f.seq: f for f in (c.take(timeout=5) for _ in range(4))}
    for seq in [2, 0, 3, 1]:  # handed back in this order
        frames.pop(seq).release()
    loaned = []
    for _ in range(4):
        with p.loan(timeout=5) as s:
            loaned.append(slot_of.index(address(s)))
    assert loaned == expected
    with pytest.raises(ValueError, match="reuse"):
        framering.Producer(ring + "-x", shape=(2, 2, 1), reuse="oldest")
