"""Resume across cancellations and processes; two processes racing for one file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from asynchub._transfer import Engine, FileSpec
from asynchub._transfer.partial import Partial
from asynchub._transfer.state import PART_SUFFIX, STATE_SUFFIX

from .harness import PART, Behavior, Server, fast_config, file_server, split_limits
from .test_transfer_engine import blob, leftovers, sha

__all__ = ("file_server",)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, json, sys
from pathlib import Path
from asynchub._transfer import Engine, FileSpec
from tests.harness import fast_config, split_limits

async def main(url, dest, sha, size, threshold, nolock="0"):
    if nolock == "1":  # a filesystem where locks silently do nothing
        import asynchub._transfer.lockfile as lockfile

        lockfile._try_lock = lambda fd: True
    config = fast_config(read=2.0, limits=split_limits(split_threshold=int(threshold)))
    async with Engine(config) as engine:
        spec = FileSpec((url,), Path(dest), sha, int(size))
        r = await engine.fetch(spec)
    print(json.dumps({"resumed": r.bytes_resumed, "downloaded": r.bytes_downloaded}))

asyncio.run(main(*sys.argv[1:]))
"""


def states(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + STATE_SUFFIX))


def recorded(folder: Path) -> int:
    """Bytes the resume sidecars of ``folder`` say are on disk."""
    total = 0
    for path in states(folder):
        with contextlib.suppress(OSError, ValueError):
            total += sum(b - a for a, b in json.loads(path.read_text())["done"])
    return total


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# cancellation ----------------------------------------------------------------
@pytest.mark.parametrize("threshold", [PART, 100 * PART])  # parts / one stream
async def test_cancel_leaves_no_final_file_and_resumes(
    file_server: Server, tmp_path: Path, threshold: int
) -> None:
    data = blob(8 * PART)
    url = file_server.add("/f", data, Behavior(rate=8 * PART))
    config = fast_config(read=2.0, limits=split_limits(split_threshold=threshold))
    dest = tmp_path / "f"
    spec = FileSpec((url,), dest, sha(data), len(data))
    async with Engine(config) as engine:
        task = asyncio.create_task(engine.fetch(spec))
        await wait_for(lambda: file_server.stats("/f").bytes_served >= 3 * PART)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not dest.exists()
    assert (
        len(states(tmp_path)) == 1 and len(list(tmp_path.glob("*" + PART_SUFFIX))) == 1
    )
    kept = recorded(tmp_path)
    assert kept >= 2 * PART

    first_run = file_server.stats("/f").bytes_served
    file_server.files["/f"].behavior = Behavior()  # full speed now
    async with Engine(config) as engine:
        result = await engine.fetch(spec)
    assert dest.read_bytes() == data
    assert result.bytes_resumed == kept
    second_run = file_server.stats("/f").bytes_served - first_run
    assert second_run == len(data) - kept  # only the missing bytes
    assert leftovers(tmp_path) == ["f"]


async def test_resume_after_remote_change_starts_over(
    file_server: Server, tmp_path: Path
) -> None:
    old, new = blob(6 * PART, seed=1), blob(6 * PART, seed=2)
    url = file_server.add("/f", old, Behavior(rate=8 * PART))
    dest = tmp_path / "f"
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        task = asyncio.create_task(engine.fetch(FileSpec((url,), dest, None, len(old))))
        await wait_for(lambda: file_server.stats("/f").bytes_served >= 2 * PART)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recorded(tmp_path) > 0
    file_server.add("/f", new)  # re-uploaded: new ETag, If-Range fails -> 200
    file_server.reset_stats()
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        result = await engine.fetch(FileSpec((url,), dest, None, len(new)))
    assert dest.read_bytes() == new and result.sha256 == sha(new)
    assert result.bytes_resumed == 0
    first = file_server.stats("/f").requests[0]
    assert first.if_range is not None and first.status == 200


async def test_leftover_for_another_sha_is_removed(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    partial = Partial.open(dest, ("http://x/f",), "a" * 64, 10)
    partial.state.total = 10
    partial.assembler.write(0, b"12345")
    partial.keep()
    os.utime(next(iter(states(tmp_path))), (0, 0))
    partial._LIVE = None  # type: ignore[attr-defined]
    fresh = Partial.open(dest, ("http://x/f",), "b" * 64, 10)
    assert fresh.resumed == 0
    fresh.discard()
    assert leftovers(tmp_path) == []


def test_only_one_claimer_wins_a_leftover(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    partial = Partial.open(dest, ("http://x/f",), None, 10)
    partial.state.total = 10
    partial.assembler.write(0, b"12345")
    partial.keep()
    winners = [Partial.open(dest, ("http://x/f",), None, 10) for _ in range(2)]
    assert sorted(p.resumed for p in winners) == [0, 5]
    assert winners[0].token != winners[1].token
    for p in winners:
        p.discard()


def test_live_partial_of_this_process_is_not_claimed(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    owner = Partial.open(dest, ("http://x/f",), None, 10)
    owner.state.total = 10
    owner.assembler.write(0, b"12345")
    owner.save()
    other = Partial.open(dest, ("http://x/f",), None, 10)
    assert other.resumed == 0 and owner.part_path.exists()
    owner.discard()
    other.discard()


# processes -------------------------------------------------------------------
async def test_sigkill_then_second_run_fetches_only_missing_bytes(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(16 * PART)
    url = file_server.add("/f", data, Behavior(rate=PART))  # 1 s per part
    dest = tmp_path / "f"
    args = (url, str(dest), sha(data), str(len(data)), str(PART))
    child = await spawn(*args)
    await wait_for(lambda: recorded(tmp_path) >= 4 * PART)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    assert not dest.exists()
    kept = recorded(tmp_path)
    served_first = file_server.stats("/f").bytes_served

    file_server.files["/f"].behavior = Behavior()
    child = await spawn(*args)
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    assert dest.read_bytes() == data
    assert report["resumed"] == kept >= 4 * PART
    served_second = file_server.stats("/f").bytes_served - served_first
    assert served_second == report["downloaded"] == len(data) - kept
    assert leftovers(tmp_path) == ["f"]


async def test_two_processes_racing_for_one_file(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(12 * PART)
    # 3 s in all: the second child must start (imports, ~1 s on a loaded machine)
    # while the first still downloads, or it fetches the file itself
    url = file_server.add("/f", data, Behavior(rate=PART))
    dest = tmp_path / "f"
    args = (url, str(dest), sha(data), str(len(data)), str(PART))
    children = [await spawn(*args)]
    await wait_for(lambda: file_server.stats("/f").count > 0)
    children.append(await spawn(*args))
    outputs = [await c.communicate() for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    assert dest.read_bytes() == data
    reports = sorted(json.loads(out)["downloaded"] for out, _ in outputs)
    assert reports == [0, len(data)]  # the waiter found the verified file
    assert file_server.stats("/f").bytes_served == len(data)
    assert leftovers(tmp_path) == ["f"]


async def test_two_processes_without_working_locks_stay_correct(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(12 * PART)
    url = file_server.add("/f", data, Behavior(rate=4 * PART))
    dest = tmp_path / "f"
    args = (url, str(dest), sha(data), str(len(data)), str(PART), "1")
    children = [await spawn(*args)]
    await wait_for(lambda: file_server.stats("/f").count > 0)
    children.append(await spawn(*args))
    outputs = [await c.communicate() for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    assert dest.read_bytes() == data
    assert leftovers(tmp_path) == ["f"]


async def test_416_on_resume_restarts_cleanly(
    file_server: Server, tmp_path: Path
) -> None:
    old, new = blob(8 * PART, seed=1), blob(2 * PART, seed=2)
    plain = Behavior(rate=2 * PART, etag=False, last_modified=False)
    url = file_server.add("/f", old, plain)
    dest = tmp_path / "f"
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        task = asyncio.create_task(engine.fetch(FileSpec((url,), dest)))
        await wait_for(lambda: recorded(tmp_path) >= PART)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    file_server.add("/f", new, Behavior(etag=False, last_modified=False))
    file_server.reset_stats()
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        result = await engine.fetch(FileSpec((url,), dest))
    assert dest.read_bytes() == new and result.bytes_resumed == 0
    statuses = [r.status for r in file_server.stats("/f").requests]
    assert statuses[0] == 416 and file_server.stats("/f").requests[0].if_range is None
    assert leftovers(tmp_path) == ["f"]
