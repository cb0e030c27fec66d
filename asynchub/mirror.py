"""Mirror a hub into a folder, or fill the local cache, and report what happened.

``amirror(dest, repo)`` copies the selected models (and, with ``with_data``, their
tarballs) into ``dest`` laid out as a hub: each file at its ``model_path`` and
``dest/ONNX_HUB_MANIFEST.json`` listing exactly the selected entries. The folder can
be served by any static web server (or ``asynchub serve``) and used as
``repo="/path/to/dest"`` or ``repo="http://host/dest/"``. ``adownload(repo)`` fills
the local cache instead (onnx.hub's layout), so ``load`` later works offline.

How a run behaves:

- **Manifest last.** The manifest is written (atomically) only after every selected
  file is in place and verified, so a folder with a manifest is always a complete
  hub: a half-finished or failed mirror never looks like a valid one. A rerun that
  must replace a file listed by an older manifest removes that manifest first.
- **Incremental.** A file already present with the right size and SHA-256 is
  skipped (a marker in ``dest/.asynchub/verified/`` avoids re-hashing it on every
  run; ``verify_existing=True`` re-hashes everything). A second run of a finished
  mirror transfers nothing. Interrupted files resume from the bytes on disk.
- **Failures are collected.** One failing file does not stop the others; the
  :class:`MirrorReport` lists them and ``raise_for_failures()`` raises
  :class:`~asynchub.errors.MirrorError`. Rerun the same call to retry them.
- **Disk space.** Before the first byte, the free space at ``dest`` is compared with
  the bytes still to fetch; ``check_space=False`` skips the check.
- **Trust.** A repo that is not trusted (see :mod:`asynchub._trust`) needs
  ``silent=True``; in strict trust mode only the allow-list is used.

Many machines: ``shard=(I, N)`` (or ``"I/N"``, ``I`` counted from 0) keeps only the
files whose path hashes to shard ``I``, so N workers writing into one shared folder
fetch every selected file exactly once. Whichever shard finds the whole selection
complete writes the manifest (identical bytes from every shard); a final unsharded
run also writes it, transferring nothing. For example a Kubernetes indexed Job
runs ``asynchub mirror /shared/zoo --shard $JOB_COMPLETION_INDEX/$N`` with
``completions: N``, a Slurm array ``--array=0-(N-1)`` runs
``--shard $SLURM_ARRAY_TASK_ID/$N``, and Ray runs one task per shard calling
``mirror(dest, shard=(i, n))``. Pin the repo ref (``onnx/models:<commit>``) so every
shard reads the same manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from pydantic import BaseModel, ConfigDict, computed_field

from . import _sync
from ._cache import (
    cache_path,
    ensure_verified,
    mark_verified,
    os_error,
    sha256_file,
)
from ._cache_admin import remove_free_lock
from ._manifest_store import ManifestStore
from ._mirror_plan import (
    PlannedFile,
    check_mirror_path,
    format_bytes,
    parse_shard,
    select_entries,
    shard_of,
    unique_files,
)
from ._transfer import Engine, FileSpec, ProgressCallback
from ._transfer.state import lock_path
from ._trust import is_allowlisted
from .config import OFFICIAL_REPO, HubConfig
from .errors import (
    AsyncHubError,
    DiskFullError,
    ManifestError,
    MirrorError,
    UntrustedRepoError,
)
from .manifest import Manifest, ManifestEntry
from .sources import MANIFEST_NAME, Source, resolve_repo

__all__ = (
    "FileFailure",
    "FileOutcome",
    "MirrorPlan",
    "MirrorReport",
    "adownload",
    "amirror",
    "download",
    "mirror",
)

_log = logging.getLogger("asynchub")
_CHECKERS = 4  # files checked (possibly hashed) at once before a run
Mode = Literal["mirror", "cache"]
ShardArg = tuple[int, int] | str | None
PlanCallback = Callable[["MirrorPlan"], None]


@dataclass(frozen=True)
class MirrorPlan:
    """What a run is about to do, announced once before the first byte moves."""

    total_files: int
    total_bytes: int
    to_fetch_files: int
    to_fetch_bytes: int
    skipped_files: int
    skipped_bytes: int


class FileOutcome(BaseModel):
    """A file that was fetched (``downloaded`` > 0) or found already in place."""

    model_config = ConfigDict(frozen=True)
    path: str
    size: int
    downloaded: int = 0
    resumed: int = 0


class FileFailure(BaseModel):
    """A file that could not be fetched, with the error that stopped it."""

    model_config = ConfigDict(frozen=True)
    path: str
    error: str
    message: str
    hint: str | None = None
    url: str | None = None


class MirrorReport(BaseModel):
    """The outcome of :func:`amirror` or :func:`adownload`.

    ``to_json()`` gives the ``--report`` file; counts and throughput are included.
    """

    model_config = ConfigDict(frozen=True)
    mode: Mode
    repo: str
    dest: str
    shard: tuple[int, int] | None = None
    dry_run: bool = False
    models: int
    total_files: int
    total_bytes: int
    to_fetch_files: int
    to_fetch_bytes: int
    done: list[FileOutcome]
    skipped: list[FileOutcome]
    failed: list[FileFailure]
    elapsed: float
    manifest_written: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def files_done(self) -> int:
        """Files fetched in this run."""
        return len(self.done)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bytes_done(self) -> int:
        """Size of the files fetched in this run."""
        return sum(f.size for f in self.done)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bytes_downloaded(self) -> int:
        """Bytes that crossed the network in this run (resumed bytes excluded)."""
        return sum(f.downloaded for f in self.done)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def throughput(self) -> float:
        """Bytes downloaded per second of elapsed time."""
        return self.bytes_downloaded / self.elapsed if self.elapsed > 0 else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def raise_for_failures(self) -> None:
        """Raise :class:`~asynchub.errors.MirrorError` if any file failed."""
        if not self.failed:
            return
        first = self.failed[0]
        raise MirrorError(
            f"{len(self.failed)} of {self.to_fetch_files} files failed "
            f"(first: {first.path}: {first.message})",
            failures=self.failed,
            hint="run the same command again to retry them; finished files are "
            "skipped and partial ones resume",
        )

    def to_json(self) -> str:
        """The report as indented JSON, computed fields included."""
        return self.model_dump_json(indent=2)

    def summary(self) -> str:
        """One line for people: fetched, skipped, failed, size, speed, time."""
        verb = "would fetch" if self.dry_run else "fetched"
        count = self.to_fetch_files if self.dry_run else self.files_done
        size = self.to_fetch_bytes if self.dry_run else self.bytes_done
        line = (
            f"{verb} {count} files ({format_bytes(size)}), "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}"
        )
        if not self.dry_run:
            speed = format_bytes(self.throughput)
            line += f" in {self.elapsed:.1f} s ({speed}/s)"
        return line


@dataclass(frozen=True)
class _Options:
    models: Sequence[str] | None
    tags: Sequence[str] | None
    opsets: Sequence[int] | None
    latest_only: bool
    with_data: bool
    shard: tuple[int, int] | None
    verify_existing: bool
    check_space: bool
    dry_run: bool
    silent: bool

    @classmethod
    def of(
        cls,
        models: Sequence[str] | None,
        tags: Sequence[str] | None,
        opsets: Sequence[int] | None,
        *,
        shard: ShardArg,
        **flags: bool,
    ) -> _Options:
        """Copy the caller's sequences and validate the shard."""
        return cls(
            models=None if models is None else list(models),
            tags=None if tags is None else list(tags),
            opsets=None if opsets is None else [int(o) for o in opsets],
            shard=parse_shard(shard),
            **flags,
        )


@dataclass(frozen=True)
class _Target:
    """Where files go: a hub folder (mirror) or the cache (onnx.hub layout)."""

    mode: Mode
    root: Path

    def dest_of(self, file: PlannedFile) -> Path:
        if self.mode == "mirror":
            return self.root.joinpath(*check_mirror_path(file.path).split("/"))
        return cache_path(self.root, check_mirror_path(file.path), file.sha256)


@dataclass
class _Tally:
    done: list[FileOutcome] = field(default_factory=list)
    skipped: list[FileOutcome] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)

    def fail(self, path: str, exc: AsyncHubError) -> None:
        _log.info("%s failed: %s", path, exc)
        self.failed.append(
            FileFailure(
                path=path,
                error=type(exc).__name__,
                message=exc.message,
                hint=exc.hint,
                url=getattr(exc, "url", None),
            )
        )


async def amirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = True,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Mirror the selected models of ``repo`` into ``dest``, laid out as a hub.

    Args:
        dest: The folder to fill (created if needed).
        repo: ``owner/name[:ref]``, an http(s) URL or a local folder.
        models: Model names to keep (case-insensitive); None keeps all.
        tags: Keep models with any of these tags; None keeps all.
        opsets: Keep these opsets; None keeps all.
        latest_only: Keep only each model's highest selected opset.
        with_data: Also mirror each model's ``model_with_data`` tarball.
        shard: ``(I, N)`` or ``"I/N"``: mirror only shard I (0-based) of N.
        verify_existing: Re-hash files already in ``dest`` instead of trusting
            their verified markers.
        check_space: Refuse to start when ``dest`` has less free space than the
            bytes still to fetch.
        dry_run: Plan only: report what would be fetched, fetch nothing.
        silent: Mirror a repo that is not on the trusted list (compat trust mode).
        config: Limits, timeouts, trust...; ``HubConfig.from_env()`` when None.
        progress: Called with every file's progress events (on the event loop).
        on_plan: Called once with the :class:`MirrorPlan` before fetching.

    Returns:
        The report; call ``raise_for_failures()`` to turn failures into an error.

    Raises:
        ModelNotFoundError, OpsetNotFoundError: A named model or opset is absent.
        ManifestError: The repo's manifest is missing or malformed.
        UntrustedRepoError: The repo is untrusted and ``silent`` is False.
        DiskFullError: Not enough free space (when ``check_space``).
        ConfigError: ``shard`` is malformed.
    """
    options = _Options.of(
        models,
        tags,
        opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
    )
    target = _Target("mirror", Path(dest).expanduser().absolute())
    return await _run(target, repo, options, config, progress, on_plan)


async def adownload(
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = False,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Fill the local cache with the selected models, so ``load`` works offline.

    Takes the same filters as :func:`amirror`; files go to the cache
    (``config.cache_dir`` or the onnx.hub default) in onnx.hub's layout and are
    marked verified. Tarballs are cached (not extracted) when ``with_data``;
    ``download_model_with_test_data`` extracts them later without the network.

    Raises:
        The same errors as :func:`amirror`.
    """
    options = _Options.of(
        models,
        tags,
        opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
    )
    config = config if config is not None else HubConfig.from_env()
    target = _Target("cache", config.resolved_cache_dir())
    return await _run(target, repo, options, config, progress, on_plan)


def mirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = True,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Sync twin of :func:`amirror` (callbacks run on asynchub's loop thread)."""
    return _sync.run(
        amirror,
        dest,
        repo,
        models=models,
        tags=tags,
        opsets=opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        config=config,
        progress=progress,
        on_plan=on_plan,
    )


def download(
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = False,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Sync twin of :func:`adownload` (callbacks run on asynchub's loop thread)."""
    return _sync.run(
        adownload,
        repo,
        models=models,
        tags=tags,
        opsets=opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        config=config,
        progress=progress,
        on_plan=on_plan,
    )


async def _run(
    target: _Target,
    repo: str,
    options: _Options,
    config: HubConfig | None,
    progress: ProgressCallback | None,
    on_plan: PlanCallback | None,
) -> MirrorReport:
    started = time.monotonic()
    config = config if config is not None else HubConfig.from_env()
    source = resolve_repo(repo, config)
    async with Engine(config) as engine:
        manifest = await ManifestStore(config, engine).get(source)
        entries, files, mine = _plan(manifest, options)
        tally = _Tally()
        todo = await _sort_existing(target, mine, options.verify_existing, tally)
        if on_plan is not None:
            on_plan(_plan_event(mine, todo))
        if todo and not options.dry_run:
            await _prepare(source, target, todo, options, config)
            await _fetch_all(engine, source, target, todo, progress, tally)
    written = False
    if target.mode == "mirror" and not options.dry_run and not tally.failed:
        written = await _finish_manifest(target, entries, files, options.shard)
    return _report(
        target,
        source,
        options,
        entries,
        mine,
        todo,
        tally,
        time.monotonic() - started,
        written,
    )


def _plan(
    manifest: Manifest, options: _Options
) -> tuple[list[ManifestEntry], list[PlannedFile], list[PlannedFile]]:
    """Selected entries, their files, and the files of this shard."""
    entries = select_entries(
        manifest,
        models=options.models,
        tags=options.tags,
        opsets=options.opsets,
        latest_only=options.latest_only,
    )
    files = unique_files(entries, options.with_data)
    if options.shard is None:
        return entries, files, files
    index, count = options.shard
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
    target: _Target, files: list[PlannedFile], rehash: bool, tally: _Tally
) -> list[PlannedFile]:
    """Files still to fetch; files already in place go to ``tally.skipped``."""
    current: dict[str, bool] = {}
    limiter = anyio.CapacityLimiter(_CHECKERS)

    async def check(file: PlannedFile) -> None:
        async with limiter:
            current[file.path] = await _is_current(target, file, rehash)

    async with anyio.create_task_group() as group:
        for file in _safe(target, files, tally):
            group.start_soon(check, file)
    for file in files:
        if current.get(file.path):
            tally.skipped.append(FileOutcome(path=file.path, size=file.size or 0))
    return [f for f in files if current.get(f.path) is False]


def _safe(
    target: _Target, files: list[PlannedFile], tally: _Tally
) -> list[PlannedFile]:
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


async def _is_current(target: _Target, file: PlannedFile, rehash: bool) -> bool:
    """True when ``file`` is in place with its size and SHA-256."""
    dest = target.dest_of(file)
    try:
        info = await anyio.Path(dest).stat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if file.size is not None and info.st_size != file.size:
        return False
    if not rehash:
        return await ensure_verified(target.root, dest, file.sha256)
    actual = await anyio.to_thread.run_sync(sha256_file, dest)
    if file.sha256 is not None and actual != file.sha256:
        _log.warning("%s is corrupt (SHA-256 %s): fetching it again", dest, actual)
        return False
    await mark_verified(target.root, dest, actual)
    return True


async def _prepare(
    source: Source,
    target: _Target,
    todo: list[PlannedFile],
    options: _Options,
    config: HubConfig,
) -> None:
    """Checks and clean-up before fetching: trust, free space, stale manifest."""
    await _check_trust(source, config, options.silent)
    if options.check_space:
        await anyio.to_thread.run_sync(_check_space, target.root, _size(todo))
    if target.mode == "mirror":
        await anyio.to_thread.run_sync(_retire_manifest, target.root, todo)


async def _check_trust(source: Source, config: HubConfig, silent: bool) -> None:
    if await anyio.to_thread.run_sync(is_allowlisted, source, config):
        return
    if silent and config.trust == "compat":
        return
    mode = " (strict trust mode)" if config.trust == "strict" else ""
    raise UntrustedRepoError(
        f"{source.spec} is not on the trusted list{mode}, so its files are not fetched",
        hint="add it with 'asynchub trust add REPO', or pass silent=True (--yes) "
        "if you trust it",
    )


def _check_space(root: Path, needed: int) -> None:
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
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


async def _fetch_all(
    engine: Engine,
    source: Source,
    target: _Target,
    todo: list[PlannedFile],
    progress: ProgressCallback | None,
    tally: _Tally,
) -> None:
    async with anyio.create_task_group() as group:
        for file in todo:
            group.start_soon(_fetch_one, engine, source, target, file, progress, tally)


async def _fetch_one(
    engine: Engine,
    source: Source,
    target: _Target,
    file: PlannedFile,
    progress: ProgressCallback | None,
    tally: _Tally,
) -> None:
    """Fetch one file; an AsyncHubError is recorded, never raised."""
    try:
        dest = target.dest_of(file)
        urls = source.file_urls(file.path)
        spec = FileSpec(urls, dest, file.sha256, file.size, label=file.path)
        result = await engine.fetch(spec, progress=progress)
    except AsyncHubError as exc:
        tally.fail(file.path, exc)
        return
    except OSError as exc:  # the disk refused this file; the others may still fit
        tally.fail(file.path, os_error(exc, target.dest_of(file)))
        return
    finally:
        if target.mode == "mirror":  # a hub folder holds the hub, not our locks
            await _tidy_lock(target, file)
    if file.sha256 is None:
        _log.warning(
            "%s has no SHA-256 in the manifest; it arrived with %s",
            file.path,
            result.sha256,
        )
    await mark_verified(target.root, result.path, result.sha256)
    tally.done.append(
        FileOutcome(
            path=file.path,
            size=result.size,
            downloaded=result.bytes_downloaded,
            resumed=result.bytes_resumed,
        )
    )


async def _tidy_lock(target: _Target, file: PlannedFile) -> None:
    with anyio.CancelScope(shield=True):
        try:
            lock = lock_path(target.dest_of(file))
        except AsyncHubError:
            return
        await anyio.to_thread.run_sync(remove_free_lock, lock)


async def _finish_manifest(
    target: _Target,
    entries: list[ManifestEntry],
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
    data = Manifest(entries).to_json().encode()
    await anyio.to_thread.run_sync(_write_if_changed, target.root / MANIFEST_NAME, data)
    return True


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomically write a world-readable file, unless it already holds ``data``."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _report(
    target: _Target,
    source: Source,
    options: _Options,
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
        shard=options.shard,
        dry_run=options.dry_run,
        models=len(entries),
        total_files=len(mine),
        total_bytes=_size(mine),
        to_fetch_files=len(todo),
        to_fetch_bytes=_size(todo),
        done=sorted(tally.done, key=lambda f: f.path),
        skipped=tally.skipped,
        failed=sorted(tally.failed, key=lambda f: f.path),
        elapsed=elapsed,
        manifest_written=written,
    )
