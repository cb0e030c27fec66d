"""The transfer engine against local servers: parts, faults, retries, verification."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from asynchub._transfer import (
    Engine,
    FileFailed,
    FileProgress,
    FileSpec,
    FileStarted,
    FileVerified,
    ProgressEvent,
)
from asynchub._transfer.state import LOCK_SUFFIX
from asynchub._transfer.verify import verify
from asynchub.config import HubConfig, Timeouts
from asynchub.errors import (
    HTTPStatusError,
    IntegrityError,
    NetworkError,
    RemoteFileNotFoundError,
    TransferTimeoutError,
    UnexpectedContentError,
)

from .harness import PART, Behavior, Ctx, Server, fast_config, file_server, split_limits

__all__ = ("file_server",)  # fixtures used here

pytestmark = pytest.mark.anyio


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (no two parts alike)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` other than lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(LOCK_SUFFIX))


async def fetch(
    config: HubConfig, urls: tuple[str, ...], dest: Path, data: bytes, **kw: object
):  # type: ignore[no-untyped-def]
    spec = FileSpec(urls, dest, kw.pop("sha256", sha(data)), kw.pop("size", len(data)))
    async with Engine(config) as engine:
        return await engine.fetch(spec, **kw)  # type: ignore[arg-type]


# sizes and parts --------------------------------------------------------------
@pytest.mark.parametrize(
    "size", [0, 1, PART - 1, PART, PART + 1, 3 * PART + 7, 5 * PART, 9 * PART - 1]
)
async def test_sizes_around_part_boundaries(
    file_server: Server, tmp_path: Path, size: int
) -> None:
    data = blob(size, seed=size)
    url = file_server.add("/f.bin", data)
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f.bin", data
    )
    assert (tmp_path / "f.bin").read_bytes() == data
    assert (result.sha256, result.size, result.bytes_downloaded) == (
        sha(data),
        size,
        size,
    )
    stats = file_server.stats("/f.bin")
    assert stats.bytes_served == size  # every byte exactly once
    parts = -(-size // PART) if size > PART else 1
    assert stats.count == parts
    if size > PART:
        expected = {
            f"bytes={a}-{min(a + PART, size) - 1}" for a in range(0, size, PART)
        }
        assert set(stats.ranges) == expected
        assert all(r.if_range for r in stats.requests[1:])  # later parts: If-Range
    assert leftovers(tmp_path) == ["f.bin"]


async def test_parts_run_concurrently_up_to_the_cap(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(8 * PART)
    url = file_server.add("/f", data, Behavior(rate=2 * PART))  # 0.5 s per part
    config = fast_config(read=2.0, limits=split_limits(max_parts_per_file=4))
    started = time.monotonic()
    await fetch(config, (url,), tmp_path / "f", data)
    elapsed = time.monotonic() - started
    assert file_server.stats("/f").count == 8
    assert elapsed < 2.0  # 8 parts × 0.5 s over 4 connections, not 4 s in a row


async def test_small_file_is_one_plain_request(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data)
    await fetch(
        fast_config(read=2.0, limits=split_limits(split_threshold=4 * PART)),
        (url,),
        tmp_path / "f",
        data,
    )
    assert file_server.stats("/f").ranges == [None]
    assert file_server.stats("/f").requests[0].headers["Accept-Encoding"] == "identity"


async def test_unknown_size_and_no_sha_hashes_anyway(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(4 * PART + 3)
    url = file_server.add("/f", data, Behavior(chunked=True))
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (url,),
        tmp_path / "f",
        data,
        sha256=None,
        size=None,
    )
    assert result.sha256 == sha(data) and result.size == len(data)
    assert (tmp_path / "f").read_bytes() == data


# servers that misbehave ----------------------------------------------------
async def test_range_ignoring_server_streams_the_whole_file_once(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(6 * PART + 5)
    url = file_server.add("/f", data, Behavior(ignore_range=True))
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert (tmp_path / "f").read_bytes() == data
    stats = file_server.stats("/f")
    assert stats.count == 1 and stats.bytes_served == len(data)


async def test_range_ignoring_server_that_drops_restarts_from_zero(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(6 * PART)
    behavior = Behavior(ignore_range=True, truncate_after=100_000)
    url = file_server.add("/f", data, behavior)
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert (tmp_path / "f").read_bytes() == data
    stats = file_server.stats("/f")
    assert stats.ranges[1] == f"bytes=100000-{len(data) - 1}"  # asked to resume
    assert stats.bytes_served == 100_000 + len(data)  # ... got 200: all again, once


async def test_dropped_connection_resumes_from_last_byte(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data, Behavior(truncate_after=40_000, truncate_times=2))
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert (tmp_path / "f").read_bytes() == data
    stats = file_server.stats("/f")
    assert stats.bytes_served == len(data)  # nothing fetched twice
    assert stats.ranges[0] == f"bytes=0-{PART - 1}"
    resumed = [r for r in stats.requests if r.range == f"bytes=40000-{PART - 1}"]
    assert len(resumed) == 1 and resumed[0].if_range == f'"{sha(data)[:16]}"'
    assert stats.count == 3 + 2  # three parts, two of them dropped once


async def test_single_stream_drop_resumes_with_open_range(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    url = file_server.add("/f", data, Behavior(truncate_after=50_000))
    config = fast_config(read=2.0, limits=split_limits(split_threshold=10 * PART))
    await fetch(config, (url,), tmp_path / "f", data)
    stats = file_server.stats("/f")
    assert stats.ranges == [None, f"bytes=50000-{len(data) - 1}"]
    assert stats.requests[1].if_range is not None
    assert stats.bytes_served == len(data)


@pytest.mark.parametrize("ignore_if_range", [False, True])
async def test_etag_change_between_parts_restarts_cleanly(
    file_server: Server,
    tmp_path: Path,
    ignore_if_range: bool,
) -> None:
    old, new = blob(4 * PART, seed=1), blob(4 * PART, seed=2)
    behavior = Behavior(versions=[old, new], ignore_if_range=ignore_if_range)
    url = file_server.add("/f", old, behavior)  # request 1 sees old, later ones new
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", new
    )
    assert (tmp_path / "f").read_bytes() == new
    requests = file_server.stats("/f").requests
    old_tag = f'"{sha(old)[:16]}"'
    assert requests[1].if_range == old_tag  # asked for the version it started with
    assert any(r.range == f"bytes=0-{PART - 1}" for r in requests[2:])  # restarted


async def test_bad_content_range_restarts_without_ranges(
    file_server: Server, tmp_path: Path
) -> None:
    from aiohttp import web

    data = blob(3 * PART)
    calls = []

    async def liar(ctx: Ctx) -> web.Response:
        request = ctx.request
        calls.append(request.headers.get("Range"))
        if "Range" in request.headers:
            headers = {"Content-Range": f"bytes 5-{PART + 4}/{len(data)}"}
            return web.Response(status=206, body=data[5 : PART + 5], headers=headers)
        return web.Response(body=data)

    url = file_server.route("/liar", liar)
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert (tmp_path / "f").read_bytes() == data
    assert calls == [f"bytes=0-{PART - 1}", None]


async def test_429_with_retry_after_is_honoured(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(PART // 2)
    behavior = Behavior(fail_first=1, fail_status=429, retry_after="1")
    url = file_server.add("/f", data, behavior)
    started = time.monotonic()
    await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert time.monotonic() - started >= 0.95
    assert [r.status for r in file_server.stats("/f").requests] == [429, 200]


async def test_5xx_burst_is_retried(file_server: Server, tmp_path: Path) -> None:
    data = blob(PART // 2)
    url = file_server.add("/f", data, Behavior(fail_statuses=(500, 502, 503, 504)))
    config = fast_config(read=2.0, limits=split_limits())
    config = config.model_copy(
        update={"retry": config.retry.model_copy(update={"attempts": 5})}
    )
    await fetch(config, (url,), tmp_path / "f", data)
    statuses = [r.status for r in file_server.stats("/f").requests]
    assert statuses == [500, 502, 503, 504, 200]


async def test_persistent_503_fails_after_the_budget_and_keeps_nothing(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(100)
    url = file_server.add("/f", data, Behavior(fail_first=100))
    with pytest.raises(HTTPStatusError) as info:
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
        )
    assert info.value.status == 503 and url in str(info.value)
    assert (
        file_server.stats("/f").count
        == fast_config(read=2.0, limits=split_limits()).retry.attempts
    )
    assert leftovers(tmp_path) == []


async def test_403_fails_at_once(file_server: Server, tmp_path: Path) -> None:
    url = file_server.add("/f", b"x", Behavior(fail_first=10, fail_status=403))
    with pytest.raises(HTTPStatusError) as info:
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", b"x"
        )
    assert info.value.status == 403
    assert file_server.stats("/f").count == 1


async def test_stall_hits_the_read_timeout_and_resumes(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(3 * PART)
    behavior = Behavior(stall_after=30_000, stall_seconds=10)
    url = file_server.add("/f", data, behavior)
    config = fast_config(read=2.0, limits=split_limits()).model_copy(
        update={"timeouts": Timeouts(read=0.3)}
    )
    started = time.monotonic()
    await fetch(config, (url,), tmp_path / "f", data)
    assert time.monotonic() - started < 3
    stats = file_server.stats("/f")
    assert f"bytes=30000-{PART - 1}" in stats.ranges
    assert stats.bytes_served == len(data)


async def test_stall_forever_raises_timeout_error(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(1000)
    behavior = Behavior(stall_after=0, stall_seconds=10, stall_times=100)
    url = file_server.add("/f", data, behavior)
    config = fast_config(read=2.0, limits=split_limits()).model_copy(
        update={"timeouts": Timeouts(read=0.2)}
    )
    with pytest.raises(TransferTimeoutError):
        await fetch(config, (url,), tmp_path / "f", data)
    assert not (tmp_path / "f").exists()


# URLs in order -------------------------------------------------------------
async def test_404_falls_back_to_the_next_url(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(1000)
    good = file_server.add("/good", data)
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (file_server.url("/missing"), good),
        tmp_path / "f",
        data,
    )
    assert result.url == good
    assert file_server.stats("/missing").count == 1  # 404 is not retried


async def test_connection_refused_falls_back_to_the_next_url(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(1000)
    good = file_server.add("/good", data)
    dead = Server()
    await dead.start()
    dead_url = dead.url("/x")
    await dead.stop()
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (dead_url, good),
        tmp_path / "f",
        data,
    )
    assert result.url == good


async def test_all_urls_missing_raises_not_found(
    file_server: Server, tmp_path: Path
) -> None:
    urls = (file_server.url("/a"), file_server.url("/b"))
    with pytest.raises(RemoteFileNotFoundError) as info:
        await fetch(
            fast_config(read=2.0, limits=split_limits()), urls, tmp_path / "f", b"data"
        )
    assert info.value.status == 404 and "/a" in str(info.value)
    assert leftovers(tmp_path) == []


async def test_unreachable_raises_network_error(tmp_path: Path) -> None:
    dead = Server()
    await dead.start()
    url = dead.url("/x")
    await dead.stop()
    with pytest.raises(NetworkError):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "f",
            b"data",
        )


# verification ----------------------------------------------------------------
async def test_integrity_error_names_everything_and_leaves_nothing(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(5 * PART)
    url = file_server.add("/f", data)
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as info:
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "m.onnx",
            data,
            sha256=wrong,
        )
    err = info.value
    assert (err.expected, err.actual, err.path) == (
        wrong,
        sha(data),
        str(tmp_path / "m.onnx"),
    )
    assert wrong in str(err) and sha(data) in str(err)
    assert leftovers(tmp_path) == []


async def test_announced_size_mismatch_fails_before_downloading(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(20 * PART)
    url = file_server.add("/f", data)
    with pytest.raises(IntegrityError, match="announces"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "f",
            data,
            size=len(data) + 1,
        )
    assert file_server.stats("/f").bytes_served < 2 * PART
    assert leftovers(tmp_path) == []


async def test_lfs_pointer_is_named(file_server: Server, tmp_path: Path) -> None:
    pointer = (
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:" + b"a" * 64 + b"\nsize 435852734\n"
    )
    url = file_server.add("/f", pointer, Behavior(content_type="text/plain"))
    with pytest.raises(UnexpectedContentError, match="Git LFS pointer") as info:
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "f",
            b"",
            sha256="a" * 64,
            size=435852734,
        )
    assert "quota" in str(info.value)
    with pytest.raises(UnexpectedContentError, match="Git LFS pointer"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "f",
            b"",
            sha256=None,
            size=None,
        )
    assert leftovers(tmp_path) == []


async def test_html_page_is_named(file_server: Server, tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    url = file_server.add("/f", page, Behavior(content_type="text/html"))
    with pytest.raises(UnexpectedContentError, match="HTML page"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            tmp_path / "f",
            b"",
            sha256="b" * 64,
            size=None,
        )


# local files -----------------------------------------------------------------
async def test_file_url_is_copied_and_verified(tmp_path: Path) -> None:
    data = blob(3 * 1024 * 1024 + 17)
    src = tmp_path / "src" / "model file.onnx"
    src.parent.mkdir()
    src.write_bytes(data)
    dest = tmp_path / "out" / "m.onnx"
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()), (src.as_uri(),), dest, data
    )
    assert dest.read_bytes() == data and result.url == src.as_uri()
    with pytest.raises(IntegrityError):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (src.as_uri(),),
            tmp_path / "out" / "x",
            data,
            sha256="1" * 64,
        )
    assert leftovers(tmp_path / "out") == ["m.onnx"]


async def test_missing_file_url_falls_back(file_server: Server, tmp_path: Path) -> None:
    data = blob(100)
    url = file_server.add("/f", data)
    missing = (tmp_path / "nope").as_uri()
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (missing, url),
        tmp_path / "f",
        data,
    )
    assert result.url == url


# dedupe and progress ---------------------------------------------------------
async def test_concurrent_fetches_of_one_dest_download_once(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(6 * PART)
    url = file_server.add("/f", data, Behavior(rate=8 * PART))
    spec = FileSpec((url,), tmp_path / "f", sha(data), len(data))
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        results = await asyncio.gather(*(engine.fetch(spec) for _ in range(5)))
    assert len({r.sha256 for r in results}) == 1
    stats = file_server.stats("/f")
    assert stats.count == 6 and stats.bytes_served == len(data)


async def test_cancelling_one_of_two_waiters_keeps_the_download(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(4 * PART)
    url = file_server.add("/f", data, Behavior(rate=4 * PART))
    spec = FileSpec((url,), tmp_path / "f", sha(data), len(data))
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        first = asyncio.create_task(engine.fetch(spec))
        second = asyncio.create_task(engine.fetch(spec))
        await asyncio.sleep(0.2)
        first.cancel()
        result = await second
    assert first.cancelled() and result.size == len(data)
    assert file_server.stats("/f").bytes_served == len(data)


async def test_progress_events(file_server: Server, tmp_path: Path) -> None:
    data = blob(8 * PART)
    url = file_server.add("/f", data, Behavior(rate=16 * PART))
    events: list[ProgressEvent] = []
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (url,),
        tmp_path / "f",
        data,
        progress=events.append,
    )
    assert isinstance(events[0], FileStarted) and events[0].total == len(data)
    assert isinstance(events[-1], FileVerified) and events[-1].result == result
    done = [e.done for e in events if isinstance(e, FileProgress)]
    assert done and done == sorted(done) and done[-1] <= len(data)
    url2 = file_server.add("/g", data)
    events.clear()
    with pytest.raises(IntegrityError):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url2,),
            tmp_path / "g",
            data,
            sha256="2" * 64,
            progress=events.append,
        )
    assert isinstance(events[-1], FileFailed)
    assert isinstance(events[-1].error, IntegrityError)


async def test_progress_callback_errors_do_not_break_downloads(
    file_server: Server, tmp_path: Path
) -> None:
    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("bug in a progress bar")

    data = blob(2 * PART)
    url = file_server.add("/f", data)
    await fetch(
        fast_config(read=2.0, limits=split_limits()),
        (url,),
        tmp_path / "f",
        data,
        progress=broken,
    )
    assert (tmp_path / "f").read_bytes() == data


async def test_existing_dest_is_replaced_atomically(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(2 * PART)
    url = file_server.add("/f", data)
    dest = tmp_path / "f"
    dest.write_bytes(b"old")
    await fetch(fast_config(read=2.0, limits=split_limits()), (url,), dest, data)
    assert dest.read_bytes() == data
    with pytest.raises(IntegrityError):
        await fetch(
            fast_config(read=2.0, limits=split_limits()),
            (url,),
            dest,
            data,
            sha256="3" * 64,
        )
    assert dest.read_bytes() == data  # a failed fetch never touches dest


async def test_read_only_folder_fails_before_any_request(
    file_server: Server, tmp_path: Path
) -> None:
    from asynchub.errors import ReadOnlyCacheError

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    url = file_server.add("/f", b"x")
    try:
        with pytest.raises(ReadOnlyCacheError):
            await fetch(
                fast_config(read=2.0, limits=split_limits()), (url,), folder / "f", b"x"
            )
    finally:
        folder.chmod(0o755)
    assert file_server.stats("/f").count == 0


def _head_reader(head: bytes, calls: list[int]) -> Callable[[], bytes]:
    def read() -> bytes:
        calls.append(1)
        return head

    return read


def test_verify_reads_the_head_only_when_it_can_change_the_verdict(
    tmp_path: Path,
) -> None:
    body = b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n"
    digest = hashlib.sha256(body).hexdigest()
    pinned = FileSpec(("u",), tmp_path / "m.onnx", digest, len(body))
    calls: list[int] = []
    # The expected hash matches: a pointer that is the expected file is that file.
    verify(pinned, "u", len(body), digest, _head_reader(body, calls))
    assert calls == []
    # No expected hash: the head decides (a pointer is never taken for a model).
    unpinned = FileSpec(("u",), tmp_path / "m.onnx", None, None)
    with pytest.raises(UnexpectedContentError, match="Git LFS pointer"):
        verify(unpinned, "u", len(body), digest, _head_reader(body, calls))
    # A mismatch is named for what the body is.
    other = FileSpec(("u",), tmp_path / "m.onnx", "0" * 64, len(body))
    with pytest.raises(UnexpectedContentError, match="Git LFS pointer"):
        verify(other, "u", len(body), digest, _head_reader(body, calls))
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        verify(other, "u", len(body), digest, _head_reader(b"\x08\x07", calls))
    assert len(calls) == 3
