"""Progress bars for the module API (``hub.load`` and friends), shown by default.

A download that finishes within :attr:`AutoProgress.delay` seconds shows nothing;
one that takes longer gets a bar per file: a rich bar on stderr when stderr is a
terminal, a text bar updated in place in a Jupyter notebook (through IPython's
display updates, so no widget library is needed), and nothing when output is not
interactive (scripts, services, CI logs). Turn it off with
``HubConfig(progress_bars=False)``, ``ASYNCHUB_PROGRESS=0`` or the Hugging Face
convention ``HF_HUB_DISABLE_PROGRESS_BARS=1``.

Speed and ETA count only bytes moved by this run: bytes a resumed download
already had on disk fill the bar but are not counted as speed. Sizes use binary
units (KiB, MiB), as every asynchub summary does.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ._transfer import (
    FileFailed,
    FileProgress,
    FileStarted,
    FileVerified,
    ProgressEvent,
)
from .mirror import format_bytes

__all__ = ("AutoProgress", "SpeedColumn", "make_bars")


class SpeedColumn(ProgressColumn):
    """Transfer speed in the binary units of asynchub's summaries (KiB/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        return Text(f"{format_bytes(speed)}/s", style="progress.data.speed")


def make_bars(console: Console, **options: Any) -> Progress:
    """The bar layout shared by the CLI and the module API."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        SpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        **options,
    )


class _Surface(Protocol):
    def start(self) -> None: ...
    def refresh(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class _File:
    started: float
    total: int | None
    task: TaskID | None = None


class AutoProgress:
    """A ``progress`` callback that draws bars only for downloads that take a while.

    Events arrive on the event loop's thread; rich's bars are thread-safe.
    """

    delay = 0.5  # seconds a file may take before a bar appears

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._bars: Progress | None = None
        self._surface: _Surface | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, FileStarted):
            self._files[event.label] = _File(time.monotonic(), event.total)
        elif isinstance(event, FileProgress):
            self._progress(event)
        elif isinstance(event, (FileVerified, FileFailed)):
            self._done(event)

    def _progress(self, event: FileProgress) -> None:
        file = self._files.get(event.label)
        if file is None:
            return
        if file.task is None:
            if time.monotonic() - file.started < self.delay or not self._open():
                return
            assert self._bars is not None
            # Created at the bytes already done: resumed bytes are not speed.
            file.task = self._bars.add_task(
                _short(event.label), total=event.total, completed=event.done
            )
        else:
            assert self._bars is not None
            self._bars.update(file.task, completed=event.done)
        if self._surface is not None:
            self._surface.refresh()

    def _done(self, event: FileVerified | FileFailed) -> None:
        file = self._files.pop(event.label, None)
        if file is None:
            return
        slow = time.monotonic() - file.started >= self.delay
        late = file.task is None and isinstance(event, FileVerified) and slow
        if late and self._open():  # slow, but no progress event after the delay
            assert self._bars is not None and isinstance(event, FileVerified)
            size = event.result.size
            file.task = self._bars.add_task(_short(event.label), total=size)
        if file.task is None or self._bars is None:
            return
        if isinstance(event, FileVerified):
            self._bars.update(file.task, completed=event.result.size)
        if self._surface is not None:
            self._surface.refresh()
        if not any(f.task is not None for f in self._files.values()):
            self._close()

    def _open(self) -> bool:
        """Start the bars if output is interactive; True when they are shown."""
        if self._bars is not None:
            return True
        if _in_notebook():
            buffer = io.StringIO()
            console = Console(
                file=buffer, width=100, force_jupyter=False, color_system=None
            )
            self._bars = make_bars(console, auto_refresh=False)
            self._surface = _NotebookSurface(self._bars, console)
        elif sys.stderr.isatty():
            self._bars = make_bars(Console(file=sys.stderr), transient=False)
            self._surface = self._bars
        else:
            return False
        self._surface.start()
        return True

    def _close(self) -> None:
        surface, self._surface, self._bars = self._surface, None, None
        if surface is not None:
            surface.stop()


class _NotebookSurface:
    """Draws the bars as text in one notebook output, updated in place."""

    INTERVAL = 0.25

    def __init__(self, bars: Progress, console: Console) -> None:
        self._bars = bars
        self._console = console
        self._handle: Any = None
        self._last = 0.0

    def _text(self) -> str:
        with self._console.capture() as captured:
            self._console.print(self._bars.make_tasks_table(self._bars.tasks))
        return "\n".join(line.rstrip() for line in captured.get().splitlines())

    def start(self) -> None:
        from IPython.display import display

        self._handle = display(  # type: ignore[no-untyped-call]
            {"text/plain": self._text()}, raw=True, display_id=True
        )

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._handle is None or (not force and now - self._last < self.INTERVAL):
            return
        self._last = now
        self._handle.update({"text/plain": self._text()}, raw=True)

    def stop(self) -> None:
        self.refresh(force=True)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython)."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    shell = ipython_module.get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
