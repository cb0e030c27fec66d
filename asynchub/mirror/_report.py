"""What a mirror or cache fill reports: its plan before, its outcome after.

:class:`MirrorPlan` is announced once before the first byte moves (the CLI sizes its
overall progress bar with it); :class:`MirrorReport` is returned at the end, and is
what ``--report FILE`` writes as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from ..errors import MirrorError
from ._plan import format_bytes

__all__ = (
    "FileFailure",
    "FileOutcome",
    "Mode",
    "MirrorPlan",
    "MirrorReport",
    "PlanCallback",
)

Mode = Literal["mirror", "cache"]


@dataclass(frozen=True)
class MirrorPlan:
    """What a run is about to do, announced once before the first byte moves."""

    total_files: int
    total_bytes: int
    to_fetch_files: int
    to_fetch_bytes: int
    skipped_files: int
    skipped_bytes: int


PlanCallback = Callable[[MirrorPlan], None]
"""Called once with the plan, before the first byte moves."""


class FileOutcome(BaseModel):
    """A file that was fetched (``downloaded`` > 0) or found already in place."""

    model_config = ConfigDict(frozen=True)
    path: str
    size: int
    downloaded: int = 0
    resumed: int = 0
    local_path: str | None = None  # where the file is on this machine


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
    unavailable: list[FileFailure] = []
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
    def files_unavailable(self) -> int:
        """Official test-data archives no source serves (not failures: a rerun
        cannot fetch them either)."""
        return len(self.unavailable)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no file failed (files unavailable upstream do not count)."""
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
        """The report as indented JSON, computed fields included; ASCII only, so
        error text a server sent cannot carry raw control characters to a terminal
        that shows the file."""
        return json.dumps(self.model_dump(mode="json"), indent=2)

    def summary(self) -> str:
        """One line for people: fetched, skipped, failed, size, speed, time."""
        verb = "would fetch" if self.dry_run else "fetched"
        count = self.to_fetch_files if self.dry_run else self.files_done
        size = self.to_fetch_bytes if self.dry_run else self.bytes_done
        line = (
            f"{verb} {count} file{'' if count == 1 else 's'} ({format_bytes(size)}), "
            f"skipped {len(self.skipped)}, failed {len(self.failed)}"
        )
        if self.unavailable:
            line += f", unavailable upstream {len(self.unavailable)}"
        if not self.dry_run:
            speed = format_bytes(self.throughput)
            line += f" in {self.elapsed:.1f} s ({speed}/s)"
        return line
