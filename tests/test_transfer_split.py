"""The tail of a split file: an idle connection takes half of the largest part in
flight (work stealing), and the hasher reads parts back without holding up writes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from asynchub._transfer import Engine, FileSpec
from asynchub._transfer.assembler import READBACK_STEP, Assembler
from asynchub._transfer.download import SPLIT_RESERVE
from asynchub._transfer.parts import Segment, split_largest
from asynchub.config import Limits

from .harness import Behavior, Server, fast_config, file_server, sha
from .test_transfer_engine import blob

__all__ = ("file_server",)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 4 * MiB  # above SPLIT_RESERVE plus two smallest halves: a part can be split


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


# the rule, without sockets ---------------------------------------------------------
def test_split_takes_the_second_half_of_the_largest_range() -> None:
    small, big = Segment(0, 4 * MiB, 1 * MiB), Segment(4 * MiB, 12 * MiB, 4 * MiB)
    stolen = split_largest([small, big], MiB, 2 * MiB)
    assert stolen is not None
    assert (stolen.start, stolen.end) == (9 * MiB, 12 * MiB)  # 2 MiB + half of 6
    assert big.end == 9 * MiB and small.end == 4 * MiB


def test_no_split_when_a_half_would_be_below_the_minimum() -> None:
    seg = Segment(0, 4 * MiB, 0)
    assert split_largest([seg], 2 * MiB, 0) is not None  # two halves of 2 MiB
    seg = Segment(0, 4 * MiB - 1, 0)
    assert split_largest([seg], 2 * MiB, 0) is None and seg.end == 4 * MiB - 1
    assert split_largest([], MiB, 0) is None


def test_whole_file_and_open_ended_segments_are_never_split() -> None:
    whole = Segment(0, 64 * MiB, 0, whole=True)
    open_ended = Segment(0, None, 0)
    assert split_largest([whole, open_ended], MiB, 0) is None
    assert whole.end == 64 * MiB and open_ended.end is None


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
