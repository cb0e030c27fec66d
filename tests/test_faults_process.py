"""Process and disk faults (rows P1-P6): kill -9, races, full and read-only disks,
later corruption, cancellation and Ctrl-C.

Children are real processes (``sys.executable`` running :data:`CHILD`) talking to a
:class:`~tests.harness.Server` in this process. Disk faults run the child
in a private mount namespace (``unshare -m``) on a small tmpfs, so ENOSPC and EROFS
are the kernel's own; where ``unshare``/``mount`` are not permitted the test is
skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asynchub import AsyncHub
from asynchub._fs.stamp import NAME, is_stamped
from asynchub._transfer.state import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX
from asynchub.cache._admin import verify
from asynchub.cache._layout import STATE_DIR, cache_path
from asynchub.cli import _main as cli
from asynchub.mirror import amirror

from .harness import (
    Server,
    cache_files,
    fast_config,
    paced,
    serve,
    sha,
    stall,
    temp_files,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
PATH = "vision/big/big.onnx"
ROUTE = f"/hub/{PATH}"


def blob(size: int, seed: int = 7) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


DATA = blob(4 * MiB)

CHILD = r"""
import asyncio, json, os, signal, sys
from pathlib import Path

# Ctrl-C as a terminal delivers it, whatever the test runner inherited: a job that
# a non-interactive shell started in the background ignores SIGINT, and so would we.
signal.signal(signal.SIGINT, signal.default_int_handler)

args = json.loads(sys.argv[1])
if args.get("nolock"):  # a filesystem where file locks silently do nothing
    import asynchub._transfer.lockfile as lockfile

    lockfile._try_lock = lambda fd: True

from asynchub import AsyncHub, HubConfig
from asynchub.config import RetryPolicy, Timeouts

config = HubConfig(
    cache_dir=Path(args["cache"]),
    offline=bool(args.get("offline")),
    retry=RetryPolicy(attempts=3, backoff_base=0.01, backoff_max=0.05),
    timeouts=Timeouts(connect=2, read=args.get("read", 10)),
    fsync=False,
)

def listing(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

async def main():
    try:
        if args.get("mirror"):
            from asynchub.mirror import mirror
            report = await asyncio.to_thread(
                mirror, args["mirror"], args["repo"], silent=True, config=config,
                check_space=False,
            )
            result = {"ok": report.summary()}
        else:
            async with AsyncHub(config) as hub:
                path = await hub.download_model(
                    args["model"], repo=args["repo"], silent=True
                )
            result = {"ok": str(path)}
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    result["files"] = listing(args["cache"])
    print(json.dumps(result), flush=True)

if args.get("sync_mirror"):
    from asynchub.mirror import mirror
    print("STARTED", flush=True)
    mirror(
        args["sync_mirror"], args["repo"], silent=True, config=config,
        check_space=False,
    )
    print(json.dumps({"ok": "done"}), flush=True)
else:
    asyncio.run(main())
"""


@pytest.fixture(scope="module")
def child_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("child") / "child.py"
    path.write_text(CHILD)
    return path


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCHUB_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(
    script: Path, prefix: list[str] | None = None, **args: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*(prefix or []), sys.executable, str(script), json.dumps(args)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(proc: subprocess.Popen[str], timeout: float = 60) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, f"child printed nothing (rc {proc.returncode}): {err[-2000:]}"
    return lines


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def states(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in folder.rglob(f"*{STATE_SUFFIX}"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        srv.hub({PATH: DATA})
        yield srv


def final(cache: Path, data: bytes = DATA) -> Path:
    return cache_path(cache, PATH, sha(data))


async def download(server: Server, cache: Path, **config: Any) -> Path:
    async with AsyncHub(fast_config(cache, **config)) as hub:
        path = await hub.download_model("big", repo=server.hub_url, silent=True)
    assert path is not None
    return path


# P1 SIGKILL ---------------------------------------------------------------------------


async def test_sigkill_mid_body_then_resume_fetches_only_the_rest(
    server: Server, cache_dir: Path, child_script: Path
) -> None:
    """Two 1 MiB batches arrive more than a second apart, so the sidecar records
    them; the child is killed while the server stalls; the next run resumes."""
    steps = [(MiB, 1.2), (MiB, 1.2), (MiB, 0.0)]
    server.route(ROUTE, paced(DATA, steps, stall_after=30), serve(DATA))
    proc = spawn(child_script, cache=str(cache_dir), repo=server.hub_url, model="big")
    wait_for(lambda: any(s["done"] for s in states(cache_dir)), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not final(cache_dir).exists()
    (state,) = states(cache_dir)
    assert state["total"] == len(DATA) and state["etag"] == '"v1"'
    recorded = state["done"][0][1]
    assert state["done"] == [[0, recorded]] and recorded >= MiB
    served_before = server.log(ROUTE)[0].sent

    path = await download(server, cache_dir)
    assert path == final(cache_dir) and path.read_bytes() == DATA
    resume = server.log(ROUTE)[1]
    assert resume.range_start == recorded
    assert resume.header("if-range") == '"v1"'
    assert resume.sent == len(DATA) - recorded
    assert served_before >= recorded
    assert cache_files(cache_dir) == [path.relative_to(cache_dir).as_posix()]


async def test_sigkill_before_the_first_byte_restarts_cleanly(
    server: Server, cache_dir: Path, child_script: Path
) -> None:
    server.route(ROUTE, stall(DATA, after=0, seconds=30), serve(DATA))
    proc = spawn(child_script, cache=str(cache_dir), repo=server.hub_url, model="big")
    wait_for(lambda: bool(server.log(ROUTE)) and bool(temp_files(cache_dir)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not final(cache_dir).exists()
    assert states(cache_dir) == []  # a sidecar comes with the first save
    path = await download(server, cache_dir)
    assert path.read_bytes() == DATA
    assert server.log(ROUTE)[1].header("range") is None
    assert temp_files(cache_dir) == []  # the dead owner's part was removed


async def test_a_verified_file_without_its_record_is_rehashed_not_refetched(
    server: Server, cache_dir: Path, child_script: Path, stamps: None
) -> None:
    """Simulated: the child completes, then the record that it was verified (its
    stamp, and any marker) is removed, as after a crash before the marker was
    written, or a copy that dropped extended attributes. The next run re-hashes
    instead of refetching, and records the file again."""
    proc = spawn(child_script, cache=str(cache_dir), repo=server.hub_url, model="big")
    (out,) = result_of(proc)
    assert out["ok"] == str(final(cache_dir))
    assert is_stamped(final(cache_dir), sha(DATA))  # stamped before its rename
    os.removexattr(final(cache_dir), NAME)
    shutil.rmtree(cache_dir / STATE_DIR / "verified", ignore_errors=True)
    path = await download(server, cache_dir)
    assert path.read_bytes() == DATA
    assert len(server.log(ROUTE)) == 1  # only the child's download
    assert is_stamped(path, sha(DATA))


# P2 races -----------------------------------------------------------------------------


SLOW = [(256 * 1024, 0.1)] * 8


async def test_two_processes_download_once_with_a_working_lock(
    server: Server, cache_dir: Path, child_script: Path
) -> None:
    server.route(ROUTE, paced(DATA, SLOW))
    procs = [
        spawn(child_script, cache=str(cache_dir), repo=server.hub_url, model="big")
        for _ in range(2)
    ]
    outs = [result_of(p)[0] for p in procs]
    assert [o.get("ok") for o in outs] == [str(final(cache_dir))] * 2
    assert final(cache_dir).read_bytes() == DATA
    assert len(server.log(ROUTE)) == 1  # the loser waited and reused the file
    assert temp_files(cache_dir) == []


async def test_two_processes_stay_correct_when_locks_do_nothing(
    server: Server, cache_dir: Path, child_script: Path
) -> None:
    """flock silently succeeding for everyone (some NFS/Lustre): both download, into
    their own temporary files; the atomic rename keeps the final file whole."""
    server.route(ROUTE, paced(DATA, SLOW))
    procs = [
        spawn(
            child_script,
            cache=str(cache_dir),
            repo=server.hub_url,
            model="big",
            nolock=True,
        )
        for _ in range(2)
    ]
    outs = [result_of(p)[0] for p in procs]
    assert [o.get("ok") for o in outs] == [str(final(cache_dir))] * 2, outs
    assert final(cache_dir).read_bytes() == DATA
    assert 1 <= len(server.log(ROUTE)) <= 2
    assert temp_files(cache_dir) == []


def _together(count: int, then: Any) -> Any:
    """A handler that holds every request until ``count`` have arrived (at most
    5 s, under the children's read timeout), then answers each with ``then``."""
    arrived: list[int] = []
    everyone: list[asyncio.Event] = []

    async def handler(ctx: Any) -> None:
        if not everyone:
            everyone.append(asyncio.Event())
        arrived.append(1)
        if len(arrived) >= count:
            everyone[0].set()
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(everyone[0].wait(), 5)
        await then(ctx)

    return handler


async def test_two_processes_fetching_one_small_file_at_once_both_succeed(
    cache_dir: Path, child_script: Path
) -> None:
    """A file too small to split takes no lock (docs/design.md, Per-file cost): two
    processes that fetch it at once each download it into their own temporary file,
    and both renames leave the one verified file, with nothing else behind."""
    small = blob(512 * 1024, seed=7)
    with Server() as srv:
        srv.hub({PATH: small})
        srv.route(ROUTE, _together(2, serve(small)))
        procs = [
            spawn(child_script, cache=str(cache_dir), repo=srv.hub_url, model="big")
            for _ in range(2)
        ]
        outs = [result_of(p)[0] for p in procs]
        requests = len(srv.log(ROUTE))
    path = final(cache_dir, small)
    assert [o.get("ok") for o in outs] == [str(path)] * 2, outs
    assert path.read_bytes() == small
    assert requests == 2  # no lock: neither waited for the other
    assert temp_files(cache_dir) == []
    assert not list(cache_dir.rglob("*" + LOCK_SUFFIX))


async def test_many_tasks_and_two_clients_in_one_process_download_once(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, paced(DATA, SLOW))
    paths: list[Path] = []
    async with (
        AsyncHub(fast_config(cache_dir)) as one,
        AsyncHub(fast_config(cache_dir)) as two,
    ):

        async def get(hub: AsyncHub) -> None:
            path = await hub.download_model("big", repo=server.hub_url, silent=True)
            assert path is not None
            paths.append(path)

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(get, one if i % 2 else two)
    assert paths == [final(cache_dir)] * 20
    assert final(cache_dir).read_bytes() == DATA
    assert len(server.log(ROUTE)) == 1
    assert temp_files(cache_dir) == []


# P3 / P4 disk full, read-only ---------------------------------------------------------


def _namespace_works() -> str | None:
    """None if a private mount namespace with tmpfs works here, else the reason."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
        capture_output=True,
        timeout=20,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"no private mount namespace: {probe.stderr.decode().strip()}"
    return None


needs_mounts = pytest.mark.skipif(
    _namespace_works() is not None, reason=str(_namespace_works())
)


def in_namespace(shell: str, mount_point: Path) -> list[str]:
    """Run ``shell`` (then the child command) in a private mount namespace."""
    mount_point.mkdir(parents=True, exist_ok=True)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh"]


@needs_mounts
async def test_disk_full_is_a_clear_error_and_leaves_nothing(
    server: Server, tmp_path: Path, child_script: Path
) -> None:
    mnt = tmp_path / "small"
    shell = f'mount -t tmpfs -o size=1m tmpfs {mnt} && exec "$@"'
    args = {"cache": str(mnt), "repo": server.hub_url, "model": "big"}
    proc = spawn(child_script, in_namespace(shell, mnt), **args)
    (out,) = result_of(proc)
    assert out["error"] == "DiskFullError", out
    assert "no space left on the device while writing" in out["message"]
    assert "big.onnx" in out["message"]
    assert "free some space" in out["message"]
    assert not any(f.endswith((PART_SUFFIX, STATE_SUFFIX)) for f in out["files"])
    assert not any(f.endswith("_big.onnx") for f in out["files"])
    assert len(server.log(ROUTE)) == 1  # a full disk is not retried


@needs_mounts
async def test_read_only_cache_is_a_clear_error_before_any_model_request(
    server: Server, tmp_path: Path, child_script: Path
) -> None:
    mnt = tmp_path / "ro"
    shell = (
        f"mount -t tmpfs tmpfs {mnt} && mkdir {mnt}/hub && "
        f'mount -o remount,ro {mnt} && exec "$@"'
    )
    args = {"cache": str(mnt / "hub"), "repo": server.hub_url, "model": "big"}
    proc = spawn(child_script, in_namespace(shell, mnt), **args)
    (out,) = result_of(proc)
    assert out["error"] == "ReadOnlyCacheError", out
    assert "Read-only file system" in out["message"]
    assert "hub.set_dir()" in out["message"]
    assert server.log(ROUTE) == []
    assert out["files"] == []


@needs_mounts
async def test_read_only_prepared_cache_still_loads_offline(
    server: Server, tmp_path: Path, child_script: Path
) -> None:
    mnt = tmp_path / "prepared"
    first = json.dumps({"cache": str(mnt), "repo": server.hub_url, "model": "big"})
    shell = (
        f"mount -t tmpfs tmpfs {mnt} && {sys.executable} \"$1\" '{first}' && "
        f'mount -o remount,ro {mnt} && exec {sys.executable} "$@"'
    )
    mnt.mkdir()
    args = {"cache": str(mnt), "repo": server.hub_url, "model": "big", "offline": 1}
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh",
         str(child_script), json.dumps(args)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    online, offline = result_of(proc)
    assert online["ok"] == offline["ok"] == str(final(mnt))
    assert len(server.log(ROUTE)) == 1


# P5 corruption later ------------------------------------------------------------------


def _flip(path: Path, keep_mtime: bool) -> None:
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:  # same inode
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


async def test_bit_flip_is_caught_on_load_and_refetched(
    server: Server, cache_dir: Path
) -> None:
    path = await download(server, cache_dir)
    _flip(path, keep_mtime=False)
    again = await download(server, cache_dir)
    assert again == path and again.read_bytes() == DATA
    assert len(server.log(ROUTE)) == 2


async def test_truncation_is_caught_on_load(server: Server, cache_dir: Path) -> None:
    path = await download(server, cache_dir)
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert (await download(server, cache_dir)).read_bytes() == DATA
    assert len(server.log(ROUTE)) == 2


async def test_stealthy_flip_is_caught_by_verify_and_force_reload(
    server: Server, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same size, mtime and inode: the verified marker still matches (documented),
    so only ``cache verify`` and ``force_reload=True`` re-hash."""
    path = await download(server, cache_dir)
    _flip(path, keep_mtime=True)
    result = verify(cache_dir)
    assert [(c.path, c.expected) for c in result.corrupt] == [
        (path.relative_to(cache_dir).as_posix(), sha(DATA))
    ]
    assert result.corrupt[0].actual == sha(path.read_bytes())
    argv = ["--cache-dir", str(cache_dir), "cache", "verify"]
    code = await anyio.to_thread.run_sync(cli.main, argv)
    assert code == 1
    assert "CORRUPT" in capsys.readouterr().out
    async with AsyncHub(fast_config(cache_dir)) as hub:
        fixed = await hub.download_model(
            "big", repo=server.hub_url, silent=True, force_reload=True
        )
    assert fixed == path and path.read_bytes() == DATA
    assert verify(cache_dir).corrupt == []
    assert await anyio.to_thread.run_sync(cli.main, argv) == 0


async def test_cached_file_replaced_by_a_symlink_is_not_followed(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    path = await download(server, cache_dir)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret, do not overwrite")
    path.unlink()
    path.symlink_to(outside)
    again = await download(server, cache_dir)
    assert not again.is_symlink() and again.read_bytes() == DATA
    assert outside.read_bytes() == b"secret, do not overwrite"


# P6 cancellation and Ctrl-C -----------------------------------------------------------


async def test_cancel_mid_download_leaves_resumable_state(
    server: Server, cache_dir: Path
) -> None:
    steps = [(MiB, 1.2), (MiB, 1.2), (MiB, 0.0)]
    server.route(ROUTE, paced(DATA, steps, stall_after=30), serve(DATA))
    patient = fast_config(cache_dir).timeouts.model_copy(update={"read": 5.0})
    with anyio.move_on_after(2.8) as scope:
        await download(server, cache_dir, timeouts=patient)
    assert scope.cancelled_caught
    assert not final(cache_dir).exists()
    parts = [f for f in temp_files(cache_dir) if f.endswith(PART_SUFFIX)]
    (state,) = states(cache_dir)
    assert len(parts) == 1 and state["total"] == len(DATA)
    kept = state["done"][0][1]
    assert kept >= MiB
    assert (cache_dir / parts[0]).stat().st_size >= kept
    path = await download(server, cache_dir)
    assert path.read_bytes() == DATA
    assert server.log(ROUTE)[1].range_start == kept
    assert temp_files(cache_dir) == []


MIRROR_FILES = {f"v/m{i}.onnx": blob(200_000, seed=i) for i in range(6)}
STUCK = "v/m5.onnx"


def _mirror_hub(server: Server) -> None:
    server.hub(MIRROR_FILES)
    steps = [(MiB // 8, 1.2), (MiB // 16, 0.0)]
    data = MIRROR_FILES[STUCK]
    stuck = paced(data, steps, stall_after=30)
    server.route(f"/hub/{STUCK}", stuck, paced(data, [], stall_after=30))


def _check_mirror_folder(dest: Path) -> None:
    """Every file under a final name is verified; temps are a consistent pair."""
    assert not (dest / "ONNX_HUB_MANIFEST.json").exists()
    for rel, data in MIRROR_FILES.items():
        if (dest / rel).exists():
            assert (dest / rel).read_bytes() == data
    for state in states(dest):
        assert state["done"] == [] or state["done"][0][1] <= state["total"]


async def test_cancel_mid_mirror_keeps_finished_files_and_resumes(
    cache_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    with Server() as srv:
        _mirror_hub(srv)
        config = fast_config(
            cache_dir,
            timeouts=fast_config(cache_dir).timeouts.model_copy(update={"read": 5.0}),
        )
        with anyio.move_on_after(2.5):
            await amirror(
                dest, srv.hub_url, silent=True, config=config, check_space=False
            )
        _check_mirror_folder(dest)
        assert not (dest / STUCK).exists()
        srv.route(f"/hub/{STUCK}", serve(MIRROR_FILES[STUCK]))
        report = await amirror(
            dest, srv.hub_url, silent=True, config=config, check_space=False
        )
        assert report.ok and [f.path for f in report.done] == [STUCK]
        *before, resume = srv.log(f"/hub/{STUCK}")
        assert resume.range_start == sum(r.sent for r in before)  # nothing refetched
    for rel, data in MIRROR_FILES.items():
        assert (dest / rel).read_bytes() == data
    assert json.loads((dest / "ONNX_HUB_MANIFEST.json").read_text())
    assert temp_files(dest) == []


async def test_ctrl_c_mid_mirror_stops_and_leaves_no_partial_under_a_final_name(
    tmp_path: Path, child_script: Path
) -> None:
    dest = tmp_path / "mirror"
    with Server() as srv:
        _mirror_hub(srv)
        proc = spawn(
            child_script, cache=str(tmp_path / "cache"), repo=srv.hub_url,
            sync_mirror=str(dest), read=1.5,
        )  # fmt: skip
        wait_for(lambda: any(s["done"] for s in states(dest)), timeout=20)
        assert proc.poll() is None, "the child finished before the Ctrl-C"
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("Ctrl-C did not stop a sync mirror within 15 s")
        assert proc.returncode != 0
        assert "KeyboardInterrupt" in err
        assert '"ok"' not in out
        _check_mirror_folder(dest)
        assert not (dest / STUCK).exists()
        srv.route(f"/hub/{STUCK}", serve(MIRROR_FILES[STUCK]))
        config = fast_config(tmp_path / "cache")
        report = await amirror(
            dest, srv.hub_url, silent=True, config=config, check_space=False
        )
        assert report.ok and STUCK in [f.path for f in report.done]
        *before, resume = srv.log(f"/hub/{STUCK}")
        assert resume.range_start == sum(r.sent for r in before) > 0  # resumed
    for rel, data in MIRROR_FILES.items():
        assert (dest / rel).read_bytes() == data
    assert temp_files(dest) == []
