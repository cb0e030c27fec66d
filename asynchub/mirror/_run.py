"""The machinery behind :mod:`asynchub.mirror`: check, plan, fetch, write, report.

One run: resolve the repo and read its manifest; select entries and their files
(:mod:`asynchub.mirror._plan`); find the files already in place (size, then the
verified marker or a hash); announce the plan; check trust, free space and any older
manifest; fetch the rest concurrently through one engine, recording each failure;
then, in mirror mode and only when nothing failed, write the manifest.
"""

from __future__ import annotations

import logging
import shutil
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anyio

from .._fs import write_if_changed
from .._transfer import Engine, FileResult, FileSpec, ProgressCallback
from ..cache import (
    Confirm,
    ManifestStore,
    admit,
    cache_path,
    check_writable_root,
    ensure_verified,
    is_regular,
    mark_verified,
    os_error,
    sha256_file,
    write_markers,
)
from ..config import HubConfig
from ..errors import (
    ArchiveUnavailableError,
    AsyncHubError,
    CacheError,
    DiskFullError,
    ManifestError,
    RemoteFileNotFoundError,
)
from ..manifest import Manifest, ManifestEntry
from ..sources import MANIFEST_NAME, Source
from ._plan import (
    PlannedFile,
    check_mirror_path,
    format_bytes,
    select_entries,
    shard_of,
    unique_files,
)
from ._report import (
    FileFailure,
    FileOutcome,
    MirrorPlan,
    MirrorReport,
    Mode,
    PlanCallback,
)
from ._selection import Selection, Switches

__all__ = ("Job", "ShardArg", "Target", "run")

_log = logging.getLogger("asynchub")
_CHECKERS = 4  # files checked (possibly hashed) at once before a run
MARKER_BATCH = 64  # verified markers written per thread hop
ShardArg = tuple[int, int] | str | None


@dataclass(frozen=True)
class Target:
    """Where files go: a hub folder (mirror) or the cache (onnx.hub layout)."""

    mode: Mode
    root: Path
    _dests: dict[tuple[str, str | None], Path] = field(
        default_factory=dict, compare=False, repr=False
    )

    def dest_of(self, file: PlannedFile) -> Path:
        """The file's place; checked and computed once per file (then remembered:
        a run asks for it at every step, and 2,000 checks were 0.4 s of planning)."""
        key = (file.path, file.sha256)
        dest = self._dests.get(key)
        if dest is None:
            dest = self._dest(file)
            self._dests[key] = dest
        return dest

    def _dest(self, file: PlannedFile) -> Path:
        if self.mode == "mirror":
            return self.root.joinpath(*check_mirror_path(file.path).split("/"))
        return cache_path(self.root, check_mirror_path(file.path), file.sha256)


@dataclass
class _Tally:
    done: list[FileOutcome] = field(default_factory=list)
    skipped: list[FileOutcome] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    unavailable: list[FileFailure] = field(default_factory=list)

    def fail(self, path: str, exc: AsyncHubError, official: bool = False) -> None:
        gone = unavailable_upstream(path, exc, official)
        if gone is not None:
            _log.warning("%s: %s", path, gone.message)
            exc = gone
        else:
            _log.info("%s failed: %s", path, exc)
        (self.unavailable if gone is not None else self.failed).append(
            FileFailure(
                path=path,
                error=type(exc).__name__,
                message=exc.message,
                hint=exc.hint,
                url=getattr(exc, "url", None),
            )
        )


async def run(
    engine: Engine,
    manifests: ManifestStore,
    source: Source,
    target: Target,
    job: Job,
) -> MirrorReport:
    """One mirror or cache fill, on the engine and manifest store of the hub that
    calls it (:meth:`~asynchub.client.AsyncHub.mirror`)."""
    started = time.monotonic()
    manifest, source = await manifests.resolve(source)
    entries, files, mine = _plan(manifest, job.selection, target.mode == "mirror")
    tally = _Tally()
    todo = await _sort_existing(
        target, mine, job.switches.verify_existing, tally, job.switches.force
    )
    if job.on_plan is not None:
        job.on_plan(_plan_event(mine, todo))
    if todo and not job.switches.dry_run:
        await _prepare(source, target, todo, job)
        await _fetch_all(engine, source, target, todo, job.progress, tally)
    written = False
    if target.mode == "mirror" and not job.switches.dry_run and not tally.failed:
        shard = job.selection.shard_pair
        written = await _finish_manifest(target, manifest.subset(entries), files, shard)
    elapsed = time.monotonic() - started
    return _report(target, source, job, entries, mine, todo, tally, elapsed, written)


@dataclass(frozen=True)
class Job:
    """What one run was asked: the selection, the switches, and who to tell."""

    selection: Selection
    switches: Switches
    config: HubConfig
    progress: ProgressCallback | None = None
    on_plan: PlanCallback | None = None
    confirm: Confirm | None = None


def _plan(
    manifest: Manifest, selection: Selection, data_by_default: bool
) -> tuple[list[ManifestEntry], list[PlannedFile], list[PlannedFile]]:
    """Selected entries, their files, and the files of this shard."""
    entries = select_entries(
        manifest,
        models=selection.models,
        tags=selection.tags,
        opsets=selection.opsets,
        latest_only=selection.latest_only,
    )
    if selection.filters_paths:
        entries = [e for e in entries if selection.wants(e.model_path)]
    files = unique_files(entries, selection.data_for(data_by_default))
    files = [f for f in files if selection.wants(f.path)]
    shard = selection.shard_pair
    if shard is None:
        return entries, files, files
    index, count = shard
    return entries, files, [f for f in files if shard_of(f.path, count) == index]


def _plan_event(mine: list[PlannedFile], todo: list[PlannedFile]) -> MirrorPlan:
    total, fetch = _size(mine), _size(todo)
    return MirrorPlan(
        total_files=len(mine),
        total_bytes=total,
        to_fetch_files=len(todo),
        to_fetch_bytes=fetch,
        skipped_files=len(mine) - len(todo),
        skipped_bytes=total - fetch,
    )


def _size(files: Sequence[PlannedFile]) -> int:
    return sum(f.size or 0 for f in files)


async def _sort_existing(
    target: Target,
    files: list[PlannedFile],
    rehash: bool,
    tally: _Tally,
    force: bool = False,
) -> list[PlannedFile]:
    """Files still to fetch; files already in place go to ``tally.skipped``."""
    safe = _safe(target, files, tally)
    if force:  # fetch every file again, whatever is in place
        return safe
    sizes = await anyio.to_thread.run_sync(_sizes, [target.dest_of(f) for f in safe])
    current = {f.path: False for f in safe}
    limiter = anyio.CapacityLimiter(_CHECKERS)

    async def check(file: PlannedFile) -> None:
        async with limiter:
            current[file.path] = await _is_current(target, file, rehash)

    async with anyio.create_task_group() as group:
        for file, size in zip(safe, sizes, strict=True):
            if size is not None and file.size in (None, size):
                group.start_soon(check, file)
    for file in files:
        if current.get(file.path):
            tally.skipped.append(
                FileOutcome(
                    path=file.path,
                    size=file.size or 0,
                    local_path=str(target.dest_of(file)),
                )
            )
    return [f for f in files if current.get(f.path) is False]


def _sizes(paths: list[Path]) -> list[int | None]:
    """Each path's size if it is a regular file, else None (one thread hop for all:
    in a fresh mirror nothing is there, and a hop per file cost more than the stat)."""
    sizes: list[int | None] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            sizes.append(None)
            continue
        sizes.append(info.st_size if stat.S_ISREG(info.st_mode) else None)
    return sizes


def _safe(target: Target, files: list[PlannedFile], tally: _Tally) -> list[PlannedFile]:
    """Files whose path is allowed; the others are recorded as failures."""
    safe = []
    for file in files:
        try:
            target.dest_of(file)
        except AsyncHubError as exc:
            tally.fail(file.path, exc)
        else:
            safe.append(file)
    return safe


async def _is_current(target: Target, file: PlannedFile, rehash: bool) -> bool:
    """True when ``file``, in place with its size (see _sizes), has its SHA-256."""
    dest = target.dest_of(file)
    if not rehash:
        return await ensure_verified(target.root, dest, file.sha256)
    if not await anyio.to_thread.run_sync(is_regular, dest):
        return False  # a link or FIFO in place of the file: fetch it again
    actual = await anyio.to_thread.run_sync(sha256_file, dest)
    if file.sha256 is not None and actual != file.sha256:
        _log.warning("%s is corrupt (SHA-256 %s): fetching it again", dest, actual)
        return False
    await mark_verified(target.root, dest, actual)
    return True


async def _prepare(
    source: Source, target: Target, todo: list[PlannedFile], job: Job
) -> None:
    """Checks and clean-up before fetching: trust, a writable folder, free space,
    stale manifest."""
    await admit(source, job.config, silent=job.switches.silent, confirm=job.confirm)
    if job.switches.check_space:
        await anyio.to_thread.run_sync(_check_space, target.root, _size(todo))
    await anyio.to_thread.run_sync(check_writable_root, target.root)
    if target.mode == "mirror":
        await anyio.to_thread.run_sync(_retire_manifest, target.root, todo)


def _check_space(root: Path, needed: int) -> None:
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    if usage.total == 0:  # /proc, /sys: a pseudo filesystem, not "0 B free"
        raise CacheError(
            f"the folder {root} cannot be used for downloads: {probe} is not on a "
            "filesystem that stores files",
            hint="choose a writable folder with hub.set_dir() or ONNX_HOME",
        )
    free = usage.free
    if needed > free:
        raise DiskFullError(
            f"{root} has {format_bytes(free)} free but the files still to fetch "
            f"need {format_bytes(needed)}",
            hint="free some space or choose another folder; pass check_space=False "
            "(--no-space-check) to try anyway",
        )


def _retire_manifest(root: Path, todo: list[PlannedFile]) -> None:
    """Remove an older manifest that lists a file this run will replace."""
    path = root / MANIFEST_NAME
    try:
        old = Manifest.parse(path.read_bytes(), source=str(path))
    except FileNotFoundError:
        return
    except ManifestError:
        old = Manifest([])
    listed = {e.model_path for e in old} | {
        e.metadata.model_with_data_path for e in old
    }
    if not old.entries or listed & {f.path for f in todo}:
        _log.info("removing %s until the mirror is complete again", path)
        path.unlink(missing_ok=True)


class _Markers:
    """Verified markers for fetched files the engine could not stamp (no extended
    attributes there), written MARKER_BATCH at a time: one thread hop per file was
    a large share of a mirror's per-file cost, and a batch lost to a crash only
    means those files are hashed again. A batch is one short file step of the
    engine (``Engine.file_step``), on the loop thread where that is cheap."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine, self.root = engine, root
        self.pending: list[tuple[Path, str]] = []

    async def add(self, result: FileResult) -> None:
        if not result.stamped:
            self.pending.append((result.path, result.sha256))
        if len(self.pending) >= MARKER_BATCH:
            await self.flush()

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            await self.engine.file_step(self.root, write_markers, self.root, batch)


def unavailable_upstream(
    path: str, exc: AsyncHubError, official: bool
) -> ArchiveUnavailableError | None:
    """The official zoo's test-data archive that every source answered 404 for.

    Such files are reported apart from failures (a rerun cannot fetch them: they
    are not on the Hugging Face mirror and GitHub LFS stopped serving them).
    """
    if not official or not path.endswith(".tar.gz"):
        return None
    if not isinstance(exc, RemoteFileNotFoundError):
        return None
    return ArchiveUnavailableError(
        "unavailable upstream: every source answered 404",
        status=exc.status,
        url=exc.url,
    )


async def _fetch_all(
    engine: Engine,
    source: Source,
    target: Target,
    todo: list[PlannedFile],
    progress: ProgressCallback | None,
    tally: _Tally,
) -> None:
    """Fetch ``todo`` through a few workers, largest file first.

    The engine admits ``max_files`` at once, largest first; a task per file made
    thousands of tasks before the first request (0.17 s of CPU for 2,000 files).
    Twice ``max_files`` workers keep the engine's queue full, and handing them the
    files largest first keeps its longest-first order.
    """
    markers = _Markers(engine, target.root)
    queue = iter(sorted(todo, key=lambda f: -(f.size or 0)))  # stable: ties in order
    workers = min(len(todo), 2 * engine.config.limits.max_files)

    async def worker() -> None:
        for file in queue:  # one iterator shared by the workers (one thread)
            await _fetch_one(engine, source, target, file, progress, tally, markers)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(worker)
    finally:
        await markers.flush()


async def _fetch_one(
    engine: Engine,
    source: Source,
    target: Target,
    file: PlannedFile,
    progress: ProgressCallback | None,
    tally: _Tally,
    markers: _Markers,
) -> None:
    """Fetch one file; an AsyncHubError is recorded, never raised."""
    try:
        dest = target.dest_of(file)
        urls = source.file_urls(file.path)
        spec = FileSpec(
            urls, dest, file.sha256, file.size, label=file.path, root=target.root
        )
        result = await engine.fetch(spec, progress=progress)
    except AsyncHubError as exc:
        tally.fail(file.path, exc, source.official)
        return
    except OSError as exc:  # the disk refused this file; the others may still fit
        tally.fail(file.path, os_error(exc, target.dest_of(file)))
        return
    if file.sha256 is None:
        _log.warning(
            "%s has no SHA-256 in the manifest; it arrived with %s",
            file.path,
            result.sha256,
        )
    await markers.add(result)
    tally.done.append(
        FileOutcome(
            path=file.path,
            size=result.size,
            downloaded=result.bytes_downloaded,
            resumed=result.bytes_resumed,
            local_path=str(result.path),
        )
    )


async def _finish_manifest(
    target: Target,
    selected: Manifest,
    files: list[PlannedFile],
    shard: tuple[int, int] | None,
) -> bool:
    """Write the manifest if the whole selection is in place; True if it is there."""
    if shard is not None:
        for file in files:
            if not await _is_current(target, file, rehash=False):
                _log.info(
                    "shard %d/%d is complete; the manifest is written once every "
                    "shard is (or by a final run without a shard)",
                    *shard,
                )
                return False
    data = selected.to_json().encode()
    path = target.root / MANIFEST_NAME  # fsync and 0o644: the hub is the product
    write = partial(write_if_changed, fsync=True, mode=0o644)
    await anyio.to_thread.run_sync(write, path, data)
    return True


def _report(
    target: Target,
    source: Source,
    job: Job,
    entries: list[ManifestEntry],
    mine: list[PlannedFile],
    todo: list[PlannedFile],
    tally: _Tally,
    elapsed: float,
    written: bool,
) -> MirrorReport:
    return MirrorReport(
        mode=target.mode,
        repo=source.spec,
        dest=str(target.root),
        shard=job.selection.shard_pair,
        dry_run=job.switches.dry_run,
        models=len(entries),
        total_files=len(mine),
        total_bytes=_size(mine),
        to_fetch_files=len(todo),
        to_fetch_bytes=_size(todo),
        done=sorted(tally.done, key=lambda f: f.path),
        skipped=tally.skipped,
        failed=sorted(tally.failed, key=lambda f: f.path),
        unavailable=sorted(tally.unavailable, key=lambda f: f.path),
        elapsed=elapsed,
        manifest_written=written,
    )
