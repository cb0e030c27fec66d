"""The file writer and the hasher: parts written at their offsets, hashed in order.

SHA-256 cannot be parallelised, so the :class:`Assembler` keeps a watermark
``hashed``: bytes written at the watermark are hashed straight from the buffer; when a
write closes a gap, the parts already on disk beyond it are read back (from the page
cache) and hashed, and the watermark jumps. All methods run in worker threads
(``hashlib`` releases the GIL), never on the event loop; one lock keeps the hasher
consistent, while ``pwrite`` and the read-back run outside it: one thread at a time
reads back, and writes of other parts go on meanwhile (they used to wait for it, a
stall of tens of milliseconds on every connection of a split file, which a paced
link never gets back). :func:`sha256_file` hashes a file already on disk (the cache
uses it too).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from .._fs import open_regular

__all__ = ("BATCH_SIZE", "Assembler", "BufferPool", "Intervals", "sha256_file")

BATCH_SIZE = 1024 * 1024
"""Bytes a stream gathers before one thread hop (write + hash)."""

READBACK_SIZE = 1024 * 1024
"""Chunk size when hashing bytes back from disk (resume, out-of-order parts)."""

READBACK_STEP = 4 * READBACK_SIZE
"""Most bytes one write reads back and hashes before it returns (a few ms): the
stream that closed a gap does not wait for the whole read-back; the next writes go
on with it, and :meth:`Assembler.catch_up` finishes it."""


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file, read in 1 MiB blocks (blocking: call it in a
    thread). A link, FIFO or device at ``path`` raises NotRegularFileError."""
    return sha256_fd(open_regular(path))


def sha256_fd(fd: int) -> str:
    """SHA-256 of the open file ``fd`` from its start; closes ``fd`` (blocking)."""
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as file:
        while block := file.read(READBACK_SIZE):
            digest.update(block)
    return digest.hexdigest()


class BufferPool:
    """Reusable batch buffers, used on the loop thread only.

    Recycling fixed-size buffers keeps the allocator from fragmenting (freshly
    allocated megabyte buffers freed in worker threads made RSS grow with file size).
    """

    def __init__(self, size: int = BATCH_SIZE, keep: int = 64) -> None:
        self.size, self.keep = size, keep
        self._free: list[bytearray] = []

    def get(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(self.size)

    def put(self, buf: bytearray) -> None:
        if len(self._free) < self.keep and len(buf) == self.size:
            self._free.append(buf)


class Intervals:
    """Sorted, merged half-open byte ranges ``[start, end)``."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Mark ``[start, end)`` as present, merging with touching ranges."""
        if end <= start:
            return
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def run_end(self, pos: int) -> int:
        """End of the range holding ``pos``, or ``pos`` when it is in a gap."""
        i = bisect.bisect_right(self._starts, pos) - 1
        return self._ends[i] if i >= 0 and self._ends[i] > pos else pos

    def gaps(self, total: int) -> list[tuple[int, int]]:
        """The missing ranges of ``[0, total)``."""
        missing, pos = [], 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if start > pos:
                missing.append((pos, min(start, total)))
            pos = max(pos, end)
        if pos < total:
            missing.append((pos, total))
        return [(a, b) for a, b in missing if a < b]

    def clip(self, size: int) -> Intervals:
        """A copy without anything at or beyond ``size``."""
        return Intervals((s, min(e, size)) for s, e in self.as_list() if s < size)

    def covered(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def as_list(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


class Assembler:
    """One temporary file filled at offsets and hashed in order; thread-safe."""

    def __init__(self, fd: int, done: Intervals | None = None) -> None:
        self.fd = fd
        self._done = done or Intervals()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # no thread is reading back
        self._reading = False
        self._sha = hashlib.sha256()
        self.hashed = 0
        self._scratch: bytearray | None = None

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``offset``, then advance the hash as far as possible."""
        view = memoryview(data)
        _pwrite_all(self.fd, view, offset)
        end = offset + len(view)
        with self._lock:
            self._done.add(offset, end)
            if self._reading:  # that thread reads these bytes back too
                return
            if offset <= self.hashed < end:
                self._sha.update(view[self.hashed - offset :])
                self.hashed = end
            if self._done.run_end(self.hashed) == self.hashed:
                return
            self._reading = True
        self._read_back(READBACK_STEP)

    def catch_up(self) -> int:
        """Hash the contiguous prefix on disk (after a resume); return the watermark."""
        with self._lock:
            self._idle.wait_for(lambda: not self._reading)
            self._reading = True
        self._read_back(None)
        return self.hashed

    def _read_back(self, limit: int | None) -> None:
        """Hash the bytes on disk past the watermark (at most ``limit``), outside
        the lock: the caller set ``_reading``, and this thread alone touches the
        digest until it clears it."""
        try:
            while True:
                with self._lock:
                    end = self._done.run_end(self.hashed)
                    if limit is not None:
                        end = min(end, self.hashed + limit)
                        limit -= end - self.hashed
                    if end == self.hashed:  # done, in the lock a writer checks
                        self._stop_reading()
                        return
                self._hash_from_disk(end)
        except BaseException:
            with self._lock:
                self._stop_reading()
            raise

    def _stop_reading(self) -> None:
        self._reading = False
        self._idle.notify_all()

    def _hash_from_disk(self, end: int) -> None:
        if self._scratch is None:
            self._scratch = bytearray(READBACK_SIZE)
        while self.hashed < end:
            view = memoryview(self._scratch)[: min(READBACK_SIZE, end - self.hashed)]
            count = _pread_into(self.fd, view, self.hashed)
            if not count:
                raise OSError(f"temporary file shorter than recorded ({self.hashed})")
            self._sha.update(view[:count])
            with self._lock:
                self.hashed += count

    def reset(self) -> None:
        """Forget everything and empty the file (the remote changed)."""
        with self._lock:
            self._idle.wait_for(lambda: not self._reading)
            os.ftruncate(self.fd, 0)
            self._done = Intervals()
            self._sha = hashlib.sha256()
            self.hashed = 0

    def snapshot(self) -> list[tuple[int, int]]:
        """The ranges written so far (for the resume sidecar)."""
        with self._lock:
            return self._done.as_list()

    def gaps(self, total: int) -> list[tuple[int, int]]:
        with self._lock:
            return self._done.gaps(total)

    def covered(self) -> int:
        with self._lock:
            return self._done.covered()

    def hexdigest(self) -> str:
        with self._lock:
            self._idle.wait_for(lambda: not self._reading)
            return self._sha.hexdigest()

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes on disk (to name an LFS pointer or HTML page)."""
        buf = bytearray(size)
        return bytes(buf[: _pread_into(self.fd, memoryview(buf), 0)])


_SEEK_LOCK = threading.Lock()  # serialises lseek+read/write where pread is missing


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = _pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _pwrite(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, view, offset)
    with _SEEK_LOCK:  # Windows
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, view)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    with _SEEK_LOCK:  # Windows, old macOS
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)
