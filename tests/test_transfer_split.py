"""The tail of a split file: an idle connection takes half of the part in flight
that would finish last (work stealing) when it is worth a connection, and the
hasher reads parts back without holding up writes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import tracemalloc
from pathlib import Path

import pytest

from asynchub._transfer import Engine, FileSpec
from asynchub._transfer.assembler import READBACK_STEP, Assembler
from asynchub._transfer.download import SPLIT_RESERVE
from asynchub._transfer.parts import (
    MEASURE_AFTER,
    Batch,
    Pace,
    Segment,
    split_largest,
)
from asynchub.config import Limits

from .harness import Behavior, File, Server, fast_config, file_server, sha
from .test_transfer_engine import blob

__all__ = ("file_server",)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 4 * MiB  # above SPLIT_RESERVE plus two smallest halves: a part can be split
SIZE_ONLY = Pace(now=0.0, fallback=None, min_seconds=0.0)  # no time rule
NOW = 1000.0


def stealing_limits(**limits: int) -> Limits:
    """Three parts of :data:`PART` over two connections: one of them is left
    without a part while the other still has a whole one."""
    values = {
        "part_size": PART,
        "split_threshold": PART,
        "max_parts_per_file": 2,
        "min_split_size": 256 * 1024,
    }
    values.update(limits)
    return Limits(**values)


def starts(server: Server, path: str) -> list[int | None]:
    return sorted(
        (r.range_start for r in server.stats(path).requests), key=lambda s: s or 0
    )


def running(start: int, left: int, rate: float, age: float = 1.0) -> Segment:
    """A part with ``left`` bytes to go whose body has run ``age`` seconds at
    ``rate`` bytes a second."""
    got = int(rate * age)
    seg = Segment(start, start + got + left, start + got)
    seg.began, seg.got = NOW - age, got
    return seg


def pace(fallback: float | None = None, min_seconds: float = 0.3) -> Pace:
    return Pace(now=NOW, fallback=fallback, min_seconds=min_seconds)


# the rule, without sockets ---------------------------------------------------------
def test_split_takes_the_second_half_of_the_largest_range() -> None:
    small, big = Segment(0, 4 * MiB, 1 * MiB), Segment(4 * MiB, 12 * MiB, 4 * MiB)
    stolen = split_largest([small, big], MiB, 2 * MiB, SIZE_ONLY)
    assert stolen is not None
    assert (stolen.start, stolen.end) == (9 * MiB, 12 * MiB)  # 2 MiB + half of 6
    assert big.end == 9 * MiB and small.end == 4 * MiB


def test_no_split_when_a_half_would_be_below_the_minimum() -> None:
    seg = Segment(0, 4 * MiB, 0)
    assert split_largest([seg], 2 * MiB, 0, SIZE_ONLY) is not None  # two of 2 MiB
    seg = Segment(0, 4 * MiB - 1, 0)
    assert split_largest([seg], 2 * MiB, 0, SIZE_ONLY) is None
    assert seg.end == 4 * MiB - 1
    assert split_largest([], MiB, 0, SIZE_ONLY) is None


def test_whole_file_and_open_ended_segments_are_never_split() -> None:
    whole = Segment(0, 64 * MiB, 0, whole=True)
    open_ended = Segment(0, None, 0)
    assert split_largest([whole, open_ended], MiB, 0, SIZE_ONLY) is None
    assert whole.end == 64 * MiB and open_ended.end is None


def test_a_part_that_drains_before_a_new_request_is_worth_it_is_not_split() -> None:
    fast = running(0, 16 * MiB, rate=100 * MiB)  # 0.16 s left
    assert split_largest([fast], MiB, 2 * MiB, pace()) is None
    assert fast.end == 16 * MiB + 100 * MiB
    capped = running(0, 16 * MiB, rate=16 * MiB)  # 1 s left
    stolen = split_largest([capped], MiB, 2 * MiB, pace())
    assert stolen is not None and stolen.start == 16 * MiB + 9 * MiB
    assert split_largest([fast], MiB, 2 * MiB, pace(min_seconds=0.1)) is not None


def test_the_part_that_would_finish_last_is_split_not_the_largest() -> None:
    big_fast = running(0, 12 * MiB, rate=64 * MiB)  # 0.19 s left
    small_slow = running(200 * MiB, 4 * MiB, rate=2 * MiB)  # 2 s left
    stolen = split_largest([big_fast, small_slow], MiB, 0, pace())
    assert stolen is not None and stolen.end == 200 * MiB + 2 * MiB + 4 * MiB
    assert big_fast.end == 64 * MiB + 12 * MiB


def test_a_stalled_part_is_split() -> None:
    stalled = running(0, 8 * MiB, rate=0)
    assert split_largest([stalled], MiB, 0, pace(fallback=1e12)) is not None


def test_a_young_part_is_taken_to_run_at_the_idle_connections_rate() -> None:
    young = running(0, 8 * MiB, rate=1000 * MiB, age=MEASURE_AFTER / 2)  # a burst
    assert split_largest([young], MiB, 0, pace(fallback=100 * MiB)) is None
    assert split_largest([young], MiB, 0, pace(fallback=None)) is None
    assert split_largest([young], MiB, 0, pace(fallback=8 * MiB)) is not None
    unanswered = Segment(0, 8 * MiB, 0)
    assert split_largest([unanswered], MiB, 0, pace(fallback=8 * MiB)) is not None
    assert split_largest([unanswered], MiB, 0, pace(fallback=1e12)) is None


# over sockets ----------------------------------------------------------------------
async def test_idle_connection_splits_the_part_in_flight(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data, Behavior(rate=8 * MiB))
    config = fast_config(read=5.0, limits=stealing_limits())
    async with Engine(config) as engine:
        result = await engine.fetch(
            FileSpec((url,), tmp_path / "f", sha(data), len(data))
        )
    assert (tmp_path / "f").read_bytes() == data and result.size == len(data)
    got = starts(file_server, "/f")
    assert len(got) == 4, got  # three parts and the half one connection took
    stolen = [s for s in got if s not in (0, PART, 2 * PART)]
    assert len(stolen) == 1 and 2 * PART + SPLIT_RESERVE <= stolen[0] < 3 * PART
    served = file_server.stats("/f").bytes_served
    assert served < len(data) + PART  # the cut request stopped early
    assert sorted(os.listdir(tmp_path)) == ["f"]


async def test_a_fast_link_keeps_its_connections(
    file_server: Server, tmp_path: Path
) -> None:
    """Uncapped, parts drain in milliseconds: no split, no connection dropped,
    so three files in a row reuse the first file's two connections."""
    data = blob(3 * PART)
    url = file_server.add("/f", data)
    limits = stealing_limits(max_connections_per_host=2)
    async with Engine(fast_config(read=5.0, limits=limits)) as engine:
        for name in ("a", "b", "c"):
            spec = FileSpec((url,), tmp_path / name, sha(data), len(data))
            assert (await engine.fetch(spec)).size == len(data)
    assert all((tmp_path / name).read_bytes() == data for name in "abc")
    assert file_server.stats("/f").count == 3 * 3  # three parts a file, no split
    assert file_server.connections == 2


async def test_a_much_slower_connection_is_split(
    file_server: Server, tmp_path: Path
) -> None:
    """The first part comes at 4 MiB/s, the other three at 64 MiB/s (in 50 ms
    steps: they take at least 0.15 s, so the slow one is measured by then); the
    idle connection takes half of what the slow one has left."""
    data = blob(4 * PART)
    slow, fast = File(data, Behavior(rate=4 * MiB)), File(data, Behavior(rate=64 * MiB))
    url = file_server.route("/f", slow, fast)
    config = fast_config(read=5.0, limits=stealing_limits())
    async with Engine(config) as engine:
        await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
    assert (tmp_path / "f").read_bytes() == data
    got = starts(file_server, "/f")
    stolen = [s for s in got if s not in (0, PART, 2 * PART, 3 * PART)]
    assert stolen and all(SPLIT_RESERVE <= s < PART for s in stolen), got
    assert file_server.stats("/f").requests[0].sent < PART  # cut short


async def test_no_split_below_the_minimum(file_server: Server, tmp_path: Path) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data, Behavior(rate=8 * MiB))
    limits = stealing_limits(min_split_size=PART)
    async with Engine(fast_config(read=5.0, limits=limits)) as engine:
        await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
    assert (tmp_path / "f").read_bytes() == data
    assert starts(file_server, "/f") == [0, PART, 2 * PART]


async def test_split_file_cancelled_then_resumed_verifies(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data, Behavior(rate=8 * MiB))
    dest, config = tmp_path / "f", fast_config(read=5.0, limits=stealing_limits())
    async with Engine(config) as engine:
        task = asyncio.create_task(
            engine.fetch(FileSpec((url,), dest, sha(data), len(data)))
        )
        while file_server.stats("/f").count < 4:  # the split request went out
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    file_server.reset_stats()
    async with Engine(config) as engine:
        result = await engine.fetch(FileSpec((url,), dest, sha(data), len(data)))
    assert dest.read_bytes() == data
    assert 0 < result.bytes_resumed < len(data)
    assert sorted(os.listdir(tmp_path)) == ["f"]


# the hasher ------------------------------------------------------------------------
def test_a_write_reads_back_a_bounded_step_and_catch_up_finishes(
    tmp_path: Path,
) -> None:
    data = random.Random(1).randbytes(READBACK_STEP * 3 + 12345)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assembler = Assembler(fd)
        assembler.write(1000, data[1000:])  # beyond the watermark: not hashed yet
        assert assembler.hashed == 0
        assembler.write(0, data[:1000])  # closes the gap: one step read back
        assert assembler.hashed == 1000 + READBACK_STEP
        assert assembler.catch_up() == len(data)
        assert assembler.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_concurrent_out_of_order_writes_hash_to_the_right_digest(
    tmp_path: Path,
) -> None:
    block = 64 * 1024
    data = random.Random(2).randbytes(block * 400)
    offsets = list(range(0, len(data), block))
    random.Random(3).shuffle(offsets)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assembler = Assembler(fd)

        def writer(mine: list[int]) -> None:
            for offset in mine:
                assembler.write(offset, data[offset : offset + block])

        threads = [
            threading.Thread(target=writer, args=(offsets[i::8],)) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert assembler.catch_up() == len(data)
        assert assembler.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_a_batch_takes_a_chunk_without_a_temporary_copy() -> None:
    """``bytearray[a:b] = memoryview`` copies the view into a temporary bytearray
    first (a second copy of every byte, and a 256 KiB allocation per read)."""
    chunk = memoryview(bytes(range(256)) * 1024)  # 256 KiB, as a read brings
    batch = Batch(bytearray(1024 * 1024))
    tracemalloc.start()
    try:
        rest = batch.fill(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not rest and batch.buf[: len(chunk)] == chunk
    assert peak < 16 * 1024, peak
