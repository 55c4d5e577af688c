"""Shared helpers of the framering Python tests.

The tests run real processes: the Rust binaries (found through
``FRAMERING_BIN_DIR``, default ``../target/release`` from this package; this
file builds nothing), and Python producers/consumers in child interpreters.
"""

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN_DIR = Path(os.environ.get("FRAMERING_BIN_DIR", HERE.parent.parent / "target" / "release"))


def binary(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --release` or set FRAMERING_BIN_DIR")
    return str(path)


@pytest.fixture
def ring():
    """A fresh ring name; the segment is removed afterwards if left."""
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


@pytest.fixture
def empty_config(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    return str(path)


def python_child(code: str, *args: str, **kw) -> subprocess.Popen:
    """A child interpreter running `code` (dedented) with `args` in sys.argv."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# A Python producer in a child process: N frames of SHAPE/DTYPE, frame i
# filled with i % 251, then close (waits for the consumers).
PRODUCER = """
import sys, numpy as np, framering
ring, n, h, w, c, dtype, slots = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6], int(sys.argv[7])
groups = sys.argv[8].split(",") if len(sys.argv) > 8 else ["default"]
p = framering.Producer(ring, shape=(h, w, c), dtype=dtype, slots=slots, groups=groups)
print("created", flush=True)
for i in range(n):
    p.publish(np.full((h, w, c), i % 251, dtype=dtype), meta=str(i).encode())
print("drained", p.close(timeout=30), flush=True)
"""


def python_producer(ring, n, shape=(8, 8, 3), dtype="uint8", slots=8, groups=("default",)):
    p = python_child(PRODUCER, ring, str(n), *map(str, shape), dtype, str(slots), ",".join(groups))
    assert p.stdout.readline().strip() == "created", p.stderr.read()
    return p


def finish(proc: subprocess.Popen, timeout=30):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def in_forked_child(body) -> bool:
    """Runs `body()` in a forked child (which then exits at once, without
    Python's cleanup); whether it returned true there without raising."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
