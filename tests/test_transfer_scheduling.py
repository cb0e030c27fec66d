"""Engine mechanics that only cost or save time: admission order, lock files, the
once-per-engine proxy/netrc snapshot, write-back after parts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from asynchub._transfer import Engine, FileSpec, FileStarted, ProgressEvent
from asynchub._transfer import state as state_module
from asynchub._transfer.admission import Admission
from asynchub._transfer.lockfile import TargetLock, is_held
from asynchub._transfer.netenv import NetEnv
from asynchub._transfer.partial import Partial
from asynchub._transfer.state import LOCK_SUFFIX, STATE_SUFFIX
from asynchub.errors import CacheError

from .harness import PART, Behavior, Server, fast_config, file_server, split_limits
from .test_transfer_engine import blob, sha

__all__ = ("file_server",)

pytestmark = pytest.mark.anyio


# admission -------------------------------------------------------------------
async def test_admission_wakes_the_largest_waiter_first() -> None:
    admission, order = Admission(1), []

    async def job(size: int) -> None:
        async with admission.slot(size):
            order.append(size)
            await asyncio.sleep(0)

    await asyncio.gather(*(job(size) for size in (1, 5, 3, 5, 0)))
    assert order == [5, 5, 3, 1, 0]


async def test_admission_passes_a_cancelled_waiters_slot_on() -> None:
    admission, order = Admission(1), []

    async def job(size: int, hold: asyncio.Event | None = None) -> None:
        async with admission.slot(size):
            order.append(size)
            if hold is not None:
                await hold.wait()

    hold = asyncio.Event()
    first = asyncio.create_task(job(9, hold))
    await asyncio.sleep(0.01)
    doomed = asyncio.create_task(job(8))
    waiting = asyncio.create_task(job(1))
    await asyncio.sleep(0.01)
    doomed.cancel()
    hold.set()
    await asyncio.gather(first, waiting)
    assert doomed.cancelled() and order == [9, 1]


async def test_engine_starts_the_largest_file_first(
    file_server: Server, tmp_path: Path
) -> None:
    sizes = [1000, 50_000, 7, 20_000]
    started: list[int | None] = []

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, FileStarted):
            started.append(event.total)

    async with Engine(
        fast_config(read=2.0, limits=split_limits(max_files=1))
    ) as engine:
        specs = []
        for n, size in enumerate(sizes):
            data = blob(size, seed=n)
            url = file_server.add(f"/f{n}", data)
            specs.append(FileSpec((url,), tmp_path / f"f{n}", sha(data), size))
        await asyncio.gather(*(engine.fetch(s, progress) for s in specs))
    assert started == sorted(sizes, reverse=True)


# lock files ------------------------------------------------------------------
def test_lock_is_exclusive_and_removed_on_release(tmp_path: Path) -> None:
    path = tmp_path / "f.asynchub-lock"
    lock = TargetLock.acquire(path)
    assert lock is not None and not lock.existed
    assert TargetLock.acquire(path) is None and is_held(path)
    lock.release(remove=True)
    lock.release(remove=True)  # a second release does nothing
    assert not path.exists() and not is_held(path)


def test_lock_file_left_behind_is_reported_as_existing(tmp_path: Path) -> None:
    path = tmp_path / "f.asynchub-lock"
    first = TargetLock.acquire(path)
    assert first is not None
    first.release(remove=False)
    again = TargetLock.acquire(path)
    assert again is not None and again.existed and is_held(path) is not False
    again.release(remove=True)


def test_lock_retries_when_its_file_is_removed_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder removes the file after we opened it: lock the new file instead."""
    from asynchub._transfer import lockfile as _lockfile

    path = tmp_path / "f.asynchub-lock"
    path.write_text("")
    real_open = _lockfile._open
    calls: list[tuple[int, bool] | None] = []

    def racing_open(folder: Any, name: str) -> tuple[int, bool] | None:
        opened = real_open(folder, name)
        if not calls:
            os.unlink(folder.path / name)  # the previous holder finishes meanwhile
        calls.append(opened)
        return opened

    monkeypatch.setattr(_lockfile, "_open", racing_open)
    lock = TargetLock.acquire(path)
    assert lock is not None and len(calls) == 2 and path.exists()
    assert os.stat(path).st_ino == os.fstat(lock.fd).st_ino
    lock.release(remove=True)


async def test_success_leaves_no_lock_file(file_server: Server, tmp_path: Path) -> None:
    data = blob(3 * PART + 5)
    url = file_server.add("/f", data)
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


async def test_cancelled_download_keeps_its_lock_file_as_a_marker(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(8 * PART)
    url = file_server.add("/f", data, Behavior(rate=2 * PART))
    spec = FileSpec((url,), tmp_path / "f", sha(data), len(data))
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        task = asyncio.create_task(engine.fetch(spec))
        while file_server.stats("/f").bytes_served < PART:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "f" + LOCK_SUFFIX in names and any(n.endswith(STATE_SUFFIX) for n in names)
    file_server.files["/f"].behavior = Behavior()
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        result = await engine.fetch(spec)
    assert result.bytes_resumed > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_no_scan_for_leftovers_without_a_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[Path] = []
    real = state_module._candidates

    def counting(folder: Any, dest: Path) -> tuple[list[str], list[tuple[float, str]]]:
        scans.append(dest)
        return real(folder, dest)

    monkeypatch.setattr(state_module, "_candidates", counting)
    dest = tmp_path / "f"
    partial = Partial.begin(dest, ("http://x/f",), None, 10)
    assert partial is not None and scans == []
    partial.state.total = 10
    partial.assembler.write(0, b"12345")
    partial.keep()  # leaves the lock file: the next owner looks
    state_module._LIVE_TOKENS.clear()
    again = Partial.begin(dest, ("http://x/f",), None, 10)
    assert again is not None and scans == [dest] and again.resumed == 5
    again.discard()
    assert list(tmp_path.iterdir()) == []


async def test_a_small_file_takes_no_lock_file(
    file_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too small to split, with a SHA-256: no lock file created (one file creation
    per model instead of two), the final file alone left."""
    locks: list[str] = []
    real = TargetLock.acquire_in.__func__  # type: ignore[attr-defined]

    def counting(cls: type[TargetLock], folder: Any, name: str) -> Any:
        locks.append(name)
        return real(cls, folder, name)

    monkeypatch.setattr(TargetLock, "acquire_in", classmethod(counting))
    small, big = blob(PART), blob(3 * PART)
    urls = file_server.add("/small", small), file_server.add("/big", big)
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        await engine.fetch(FileSpec((urls[0],), tmp_path / "s", sha(small), PART))
        await engine.fetch(FileSpec((urls[1],), tmp_path / "b", sha(big), 3 * PART))
        await engine.fetch(FileSpec((urls[0],), tmp_path / "n", None, PART))
    assert locks == ["b" + LOCK_SUFFIX, "n" + LOCK_SUFFIX]  # split, or no SHA-256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "n", "s"]


def test_a_small_file_with_a_lock_file_there_looks_for_leftovers(
    tmp_path: Path,
) -> None:
    dest, data = tmp_path / "f", blob(PART)
    first = Partial.begin(dest, ("http://x/f",), sha(data), PART, small=True)
    assert first is not None and first.small and first.lock is None
    first.state.total = PART
    first.assembler.write(0, data[:100])
    first.keep()  # cancelled: the lock file appears, as the next run's cue
    assert (tmp_path / ("f" + LOCK_SUFFIX)).exists()
    state_module._LIVE_TOKENS.clear()
    again = Partial.begin(dest, ("http://x/f",), sha(data), PART, small=True)
    assert again is not None and not again.small and again.resumed == 100
    again.discard()
    assert list(tmp_path.iterdir()) == []


def _racing_commit(tmp_path: Path, other: bytes | None) -> Path:
    """Commit a small partial while another downloader renames its copy (``other``
    bytes; None: a link) over the final name just after ours."""
    dest, data = tmp_path / "f", blob(PART)
    partial = Partial.begin(dest, ("http://x/f",), sha(data), PART, small=True)
    assert partial is not None
    partial.assembler.write(0, data)
    real = partial.folder.rename

    def then_the_other(src: str, dst: str) -> None:
        real(src, dst)
        theirs = tmp_path / "theirs"
        if other is None:
            theirs.symlink_to(tmp_path / "elsewhere")
        else:
            theirs.write_bytes(other)
        os.replace(theirs, dest)

    partial.folder.rename = then_the_other  # type: ignore[method-assign]
    partial.prepare(PART, sha(data))
    partial.commit(fsync=False)
    return dest


def test_two_small_downloads_racing_to_the_final_name_both_succeed(
    tmp_path: Path,
) -> None:
    dest = _racing_commit(tmp_path, blob(PART))  # the other copy: the same bytes
    assert dest.read_bytes() == blob(PART)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


@pytest.mark.parametrize("other", [b"other bytes", None], ids=["content", "link"])
def test_a_small_file_replaced_by_something_else_is_still_refused(
    tmp_path: Path, other: bytes | None
) -> None:
    with pytest.raises(CacheError, match="was replaced while it was being written"):
        _racing_commit(tmp_path, other)
    assert not (tmp_path / "f").exists() and not (tmp_path / "f").is_symlink()


def test_begin_returns_none_while_another_owner_holds_the_lock(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f"
    owner = Partial.begin(dest, ("http://x/f",), None, 10)
    assert owner is not None
    assert Partial.begin(dest, ("http://x/f",), None, 10) is None
    owner.discard()
    assert list(dest.parent.iterdir()) == []


# write-back ------------------------------------------------------------------
@pytest.mark.parametrize("fsync", [True, False])
async def test_split_file_flushes_data_after_parts_only_with_fsync(
    file_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fsync: bool,
) -> None:
    calls: list[int] = []
    real = Partial.sync_data

    def counting(self: Partial) -> None:
        calls.append(self.fd)
        real(self)

    monkeypatch.setattr(Partial, "sync_data", counting)
    data = blob(6 * PART + 3)
    url = file_server.add("/f", data)
    config = fast_config(read=2.0, limits=split_limits()).model_copy(
        update={"fsync": fsync}
    )
    async with Engine(config) as engine:
        await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
    assert (tmp_path / "f").read_bytes() == data
    assert bool(calls) is fsync


# redirects -------------------------------------------------------------------
async def test_parts_go_straight_to_where_the_url_redirected(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(6 * PART + 3)
    file_server.add("/cdn/f", data)
    url = file_server.redirect("/resolve/f", "/cdn/f")
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
    assert (tmp_path / "f").read_bytes() == data
    assert [r.path for r in file_server.requests].count("/resolve/f") == 1
    assert file_server.stats("/cdn/f").count == 7  # the probe and six more parts


async def test_an_expired_redirect_target_sends_parts_back_to_the_url(
    file_server: Server, tmp_path: Path
) -> None:
    """A signed CDN URL that expires after two answers: the URL is asked again
    and redirects to a fresh one; the file still arrives whole."""
    data = blob(6 * PART + 3)
    file_server.add("/cdn/old", data, Behavior(expire_after=2, rate=4 * PART))
    file_server.add("/cdn/new", data)
    url = file_server.redirect("/resolve/f", "/cdn/old")
    async with Engine(
        fast_config(read=2.0, limits=split_limits(max_parts_per_file=1))
    ) as engine:
        task = asyncio.create_task(
            engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), len(data)))
        )
        while file_server.stats("/cdn/old").count < 1:
            await asyncio.sleep(0.005)
        file_server.redirect("/resolve/f", "/cdn/new")  # a fresh signature
        await task
    assert (tmp_path / "f").read_bytes() == data
    old = [r.status for r in file_server.stats("/cdn/old").requests]
    assert old[:2] == [206, 206] and set(old[2:]) <= {403}
    assert file_server.stats("/cdn/new").count >= 1


# proxies and netrc -----------------------------------------------------------
def test_netenv_reads_proxies_and_bypass_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://u:p@proxy.test:3128")
    monkeypatch.setenv("HTTPS_PROXY", "https://tls-proxy.test:443")  # unsupported
    monkeypatch.setenv("NO_PROXY", "internal.test")
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    env = NetEnv.read()
    monkeypatch.delenv("HTTP_PROXY")  # read once: later changes do not matter
    proxy, headers = env.proxy_for(URL("http://files.test/a"))
    assert proxy == URL("http://proxy.test:3128")
    assert headers == {"Proxy-Authorization": "Basic dTpw"}
    assert env.proxy_for(URL("http://internal.test/a")) == (None, None)
    assert env.proxy_for(URL("https://files.test/a")) == (None, None)


def test_netenv_netrc_credentials_only_for_their_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine files.test login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    env = NetEnv.read()
    assert (
        env.authorization_for(URL("https://files.test/x")) == "Basic YWxpY2U6czNjcmV0"
    )
    assert env.authorization_for(URL("https://other.test/x")) is None


def test_fresh_partial_writes_no_sidecar_until_saved(tmp_path: Path) -> None:
    partial = Partial.begin(tmp_path / "f", ("http://x/f",), None, 10)
    assert partial is not None
    assert not list(tmp_path.glob("*" + STATE_SUFFIX))
    partial.save()
    assert len(list(tmp_path.glob("*" + STATE_SUFFIX))) == 1
    partial.discard()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("foreign", "age", "removed"),
    [
        (False, 0.0, True),  # our host, owner dead: at once
        (True, 0.0, False),  # another host: the owner cannot be checked yet
        (True, 2 * state_module.ORPHAN_GRACE, True),  # ... until it is old
    ],
)
def test_orphan_part_without_sidecar_is_removed_when_its_owner_is_gone(
    tmp_path: Path, foreign: bool, age: float, removed: bool
) -> None:
    """An owner killed before its first save leaves a part and the lock file."""
    dest = tmp_path / "f"
    dead = Partial.begin(dest, ("http://x/f",), None, 10)
    assert dead is not None
    os.close(dead.fd)  # as if killed: no cleanup, the lock file stays
    dead.lock.release(remove=False)  # type: ignore[union-attr]
    state_module._LIVE_TOKENS.discard(dead.token)
    part = dead.part_path
    if foreign:
        part = part.rename(part.with_name(f"f.abcdef-1-00{state_module.PART_SUFFIX}"))
    stamp = part.stat().st_mtime - age
    os.utime(part, (stamp, stamp))
    fresh = Partial.begin(dest, ("http://x/f",), None, 10)
    assert fresh is not None and fresh.resumed == 0
    assert part.exists() is not removed
    fresh.discard()


@pytest.mark.parametrize("fsync", [True, False])
async def test_each_written_folder_is_fsynced_once_when_the_engine_closes(
    file_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fsync: bool,
) -> None:
    from asynchub._transfer import engine as engine_module

    synced: list[Path] = []
    monkeypatch.setattr(engine_module, "fsync_dir", synced.append)
    config = fast_config(read=2.0, limits=split_limits()).model_copy(
        update={"fsync": fsync}
    )
    async with Engine(config) as engine:
        for n, folder in enumerate(("a", "a", "b")):
            data = blob(100 + n, seed=n)
            url = file_server.add(f"/f{n}", data)
            dest = tmp_path / folder / f"f{n}"
            await engine.fetch(FileSpec((url,), dest, sha(data), len(data)))
        assert synced == []  # not per rename
    assert synced == ([tmp_path / "a", tmp_path / "b"] if fsync else [])


@pytest.mark.parametrize(
    ("cost", "fsync", "expected"),
    [
        ("disk", True, ["sync_all"]),
        ("disk", False, []),
        ("other", True, ["begin", "_sealed"]),
        ("other", False, ["begin", "_sealed"]),
    ],
)
async def test_a_small_files_worker_thread_hops(
    file_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cost: str,
    fsync: bool,
    expected: list[str],
) -> None:
    """On a local disk, open (partial) and seal (write, verify, stamp, rename) run
    on the loop and only the fsync, which may wait for the disk, goes to a worker;
    on a network file system (or one of unknown kind) open and seal are one hop
    each. The per-file cost that bounds a mirror of many small files (see
    docs/design.md); on tmpfs everything runs on the loop (test_transfer_tmpfs)."""
    from asynchub._transfer.context import Context

    monkeypatch.setattr(Context, "_cost_of", lambda self, folder: cost)
    hops: list[str] = []
    real = Context.submit

    def counting(self: Context, fn: object, *args: object) -> object:
        hops.append(getattr(getattr(fn, "func", fn), "__name__", repr(fn)))
        return real(self, fn, *args)  # type: ignore[arg-type]

    data = blob(64 * 1024)
    url = file_server.add("/small", data)
    config = fast_config(read=2.0, limits=split_limits(), fsync=fsync)
    async with Engine(config) as engine:
        monkeypatch.setattr(Context, "submit", counting)
        await engine.fetch(FileSpec((url,), tmp_path / "s", sha(data), len(data)))
        monkeypatch.setattr(Context, "submit", real)
    assert hops == expected


async def test_a_slow_step_sends_its_folders_later_steps_to_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network file system or a stalling disk holds the loop at most once."""
    import concurrent.futures
    import threading
    import time

    from asynchub._transfer import context as context_module
    from asynchub._transfer.context import SLOW_STEP, Context

    monkeypatch.setattr(Context, "_cost_of", lambda self, folder: "disk")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ctx = Context(fast_config(), None, pool)  # type: ignore[arg-type]
        where: list[bool] = []

        def step(pause: float) -> None:
            where.append(threading.current_thread() is threading.main_thread())
            time.sleep(pause)

        await ctx.run_step(tmp_path, step, 0)
        await ctx.run_step(tmp_path, step, SLOW_STEP * 2)
        await ctx.run_step(tmp_path, step, 0)
        await ctx.run_step(tmp_path / "other", step, 0)
    assert where == [True, True, False, True]
    assert context_module.SLOW_STEP <= 0.01


def test_prune_treats_parts_without_sidecar_by_their_token(tmp_path: Path) -> None:
    """``cache prune`` and a later download agree on which parts are orphans."""
    dead = _exited_pid()
    tag = state_module._HOST_TAG
    cases = {
        f"f.{tag}-{dead:x}-00": False,  # this host, owner gone
        f"f.{tag}-{os.getpid():x}-00": True,  # this process: never pruned
        "f.abcdef-1-00": True,  # another host, fresh: left for ORPHAN_GRACE
    }
    for stem, owned in cases.items():
        part = tmp_path / (stem + state_module.PART_SUFFIX)
        part.write_bytes(b"x")
        assert state_module.may_be_owned(part) is owned, stem


def _exited_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("size", [64 * 1024, 3 * PART + 5])
async def test_a_body_is_closed_by_its_reader_not_by_a_task_of_the_loop(
    file_server: Server, tmp_path: Path, size: int
) -> None:
    """A reader stops at its part's end without reading on: the body's chunks
    must leave nothing to close (an unfinished async generator is closed by the
    loop in a new task, one task and one self-pipe wake-up per file)."""
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        made.append(type(coro).__name__)
        return asyncio.Task(coro, loop=loop)

    data = blob(size)
    url = file_server.add("/f", data)
    loop.set_task_factory(factory)
    try:
        async with Engine(fast_config(limits=split_limits())) as engine:
            await engine.fetch(FileSpec((url,), tmp_path / "f", sha(data), size))
    finally:
        loop.set_task_factory(None)
    assert (tmp_path / "f").read_bytes() == data
    assert made and "async_generator_athrow" not in made
