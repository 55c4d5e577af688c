"""Zero-copy numpy frames over framering's crash-safe shared-memory ring.

    c = framering.Consumer("cam")            # waits for the ring, adopts its shape
    for f in c:                              # ends at the end of the stream
        a = f.array()                        # read-only view of the slot itself
        work(a)                              # the slot goes back once `a` is gone

    with framering.Producer("cam", shape=(720, 1080, 3)) as p:
        with p.loan() as s:
            s.array()[:] = img               # write in place; published on exit
        p.publish(img, meta=b"...")          # or copy one array in
"""

from types import TracebackType
from typing import Iterator, Literal, Self

import numpy as np
import numpy.typing as npt

__version__: str
DTYPES: list[str]
"""The element types a ring can hold: uint8, uint16, float32."""

class Error(Exception):
    """An error of the ring (attaching, taking, publishing)."""

class RingCorrupt(Error):
    """The shared segment holds garbage: the ring cannot be used."""

class ProducerFailed(Error):
    """The producer marked the ring failed (its input failed)."""

class Frame:
    """A frame taken from a ring, read in place.

    Its slot goes back to the producer when the ``with`` block ends, at the
    next iteration of ``for f in consumer``, or when the frame is
    garbage-collected — each time only once no view of it (array, slice,
    memoryview, DLPack tensor) is alive; a live view never dangles and its
    pixels never change. A frame kept (or viewed) while its consumer waits
    for another one, with the producer waiting for its slot, or at the end
    of the stream, is copied out of the slot at the same address (once) and
    the slot goes back: ``Consumer.detached`` counts those copies.
    """

    def array(self) -> npt.NDArray[np.generic]:
        """A read-only (H, W, C) array whose memory is the slot."""
    def release(self) -> None:
        """Hands the slot back now. BufferError while views are alive."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def __array__(self, dtype: object = None, copy: bool | None = None) -> npt.NDArray[np.generic]: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def __dlpack__(
        self,
        *,
        stream: object = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> object:
        """DLPack 1.0 with the read-only flag; needs max_version >= (1, 0) (the legacy capsule cannot say read-only: BufferError)."""
    def __dlpack_device__(self) -> tuple[int, int]: ...
    @property
    def seq(self) -> int:
        """0, 1, 2, … in publish order."""
    @property
    def publish_ns(self) -> int:
        """When it was published, CLOCK_MONOTONIC ns."""
    @property
    def capture_ns(self) -> int:
        """When it was captured, CLOCK_REALTIME ns (the publish time unless the producer said)."""
    @property
    def pts_ns(self) -> int | None:
        """Presentation timestamp (video), ns."""
    @property
    def source(self) -> str:
        """Where it came from (a path, a URL), as the producer said."""
    @property
    def src_size(self) -> tuple[int, int]:
        """(width, height) of the source before it was fitted to the ring."""
    @property
    def redeliveries(self) -> int:
        """Deliveries before this one, to consumers that died holding it."""
    @property
    def slot(self) -> int: ...
    @property
    def meta(self) -> bytes:
        """The producer's per-frame user metadata (a copy)."""
    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def views(self) -> int:
        """Views of the slot alive now."""
    @property
    def released(self) -> bool:
        """Whether the slot went back."""

class Consumer:
    """A consumer of the ring ``ring`` in consumer group ``group``.

    Waits up to ``timeout`` seconds for the ring to appear. Every group gets
    every frame; the consumers of one group share its frames. ``latest``:
    skip to the newest frame on every take (previews). A consumer belongs to
    the process that made it: in a forked child, make a new one.
    """

    def __init__(
        self, ring: str, group: str = "default", timeout: float = 30.0, latest: bool = False
    ) -> None: ...
    def take(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout`` s (None: no limit) with
        the GIL released; None at the end of the stream. TimeoutError after
        ``timeout``; Ctrl-C interrupts it within 100 ms."""
    def __iter__(self) -> Iterator[Frame]: ...
    def __next__(self) -> Frame: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def slots(self) -> int: ...
    @property
    def user_meta_capacity(self) -> int: ...
    @property
    def frames_taken(self) -> int: ...
    @property
    def held(self) -> int:
        """Frames taken and not handed back yet."""
    @property
    def detached(self) -> int:
        """Frames copied out of their slots so far (kept, or viewed, while
        this consumer waited and the producer needed their slots; or at the
        end of the stream). 0 in ``for f in c: a = f.array()`` while the
        ring has a free slot."""

class Loan:
    """A free slot loaned by ``Producer.loan()``: fill ``array()`` in place;
    published when the ``with`` block ends (BufferError while views of it are
    alive: ``del`` them first), handed back unpublished if the block raised
    or the loan is garbage-collected."""

    def array(self) -> npt.NDArray[np.generic]:
        """A writable (H, W, C) array whose memory is the slot."""
    def publish(self) -> int:
        """Publishes now; returns the sequence number."""
    def discard(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    meta: bytes
    source: str
    capture_ns: int
    pts_ns: int | None
    @property
    def views(self) -> int: ...

class Producer:
    """Creates the ring ``ring`` (``/dev/shm/RING``) of ``slots`` frames of
    ``shape`` (H, W, C) and ``dtype``; ``groups`` are declared (they get
    every frame from the first one on). ``backpressure``: "block" (lossless)
    or "drop-oldest" (live). ``reuse``: which free slot a loan takes, the
    one handed back last ("last-freed", in the caches: for copies) or first
    ("first-freed": for frames decoded into the slot, which the consumers'
    cores read longest ago). A producer killed at any point leaves the same
    guarantees as the Rust one: consumers take what was published, then see
    the producer gone; the next producer reclaims the ring."""

    def __init__(
        self,
        ring: str,
        shape: tuple[int, int, int],
        dtype: Literal["uint8", "uint16", "float32"] = "uint8",
        slots: int = 8,
        groups: list[str] | None = None,
        user_meta_bytes: int = 256,
        backpressure: Literal["block", "drop-oldest"] = "block",
        max_consumers: int = 16,
        reuse: Literal["last-freed", "first-freed"] = "last-freed",
    ) -> None: ...
    def loan(self, timeout: float | None = None) -> Loan:
        """A free slot, waiting up to ``timeout`` s with the GIL released."""
    def publish(
        self,
        array: npt.NDArray[np.generic],
        meta: bytes | None = None,
        source: str | None = None,
        capture_ns: int = 0,
        pts_ns: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Copies ``array`` (the ring's shape and dtype exactly) into a slot
        and publishes it; returns its sequence number."""
    def close(self, timeout: float = 10.0, keep: bool = False) -> bool:
        """Ends the stream, waits at most ``timeout`` s for the consumers to
        hand every frame back, removes the ring unless ``keep``. Returns
        whether every frame came back."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def slots(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def user_meta_capacity(self) -> int: ...
