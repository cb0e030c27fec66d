"""The CLI's output layer: progress, tables, JSON and messages (the only printing).

Results (tables, JSON, summaries) go to stdout; progress, notes and errors go to
stderr, so ``asynchub list --json | jq`` and ``asynchub mirror … > log`` both work.
Progress is drawn as live bars (per active file and overall: bytes, speed, ETA,
files done / total) when stdout and stderr are terminals, written as one plain line
per finished or failed file otherwise, and not at all with ``--quiet``.

``rich`` is imported only when something is drawn for a terminal (a console on a
TTY, live bars, a table): a quiet or redirected ``asynchub mirror`` writes plain
lines and skips its import (about 0.1 s of start-up).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from functools import cached_property
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

from .._text import plain
from .._transfer import (
    FileFailed,
    FileProgress,
    FileStarted,
    FileVerified,
    ProgressEvent,
)
from ..mirror import MirrorPlan, format_bytes

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ("ConsoleLogHandler", "Output", "ProgressDisplay")

Style = Literal["bars", "lines", "quiet"]
_WIDE = 160  # table width when not writing to a terminal (no wrapping in logs)


class Output:
    """Where the CLI writes: consoles created at call time (tests capture them)."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._stdout, self._stderr = sys.stdout, sys.stderr
        self._tty = self._stdout.isatty()
        self._err_tty = self._stderr.isatty()
        self.interactive = self._tty and self._err_tty

    @cached_property
    def out(self) -> Console:
        """The rich console on stdout (created, and rich imported, on first use)."""
        return _console(self._stdout, self._tty)

    @cached_property
    def err(self) -> Console:
        """The rich console on stderr (created, and rich imported, on first use)."""
        return _console(self._stderr, self._tty)

    @property
    def progress_style(self) -> Style:
        if self.quiet:
            return "quiet"
        return "bars" if self.interactive else "lines"

    def _line(self, text: str, *, stderr: bool) -> None:
        """One line of text: through rich on a terminal, written as is otherwise."""
        text = plain(text, newlines=True)  # text from the network is inert
        if self._err_tty if stderr else self._tty:
            console = self.err if stderr else self.out
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            stream = self._stderr if stderr else self._stdout
            stream.write(text + "\n")
            stream.flush()  # keeps stdout and stderr lines in order, as rich does

    def log_line(self, text: str) -> None:
        """A log record's line (stderr, above live bars when they are drawn)."""
        self._line(text, stderr=True)

    def result(self, text: str) -> None:
        """A line of the command's result (stdout); shown even with --quiet."""
        self._line(text, stderr=False)

    def note(self, text: str) -> None:
        """A line of commentary (stderr); hidden with --quiet."""
        if not self.quiet:
            self._line(text, stderr=True)

    def error(self, text: str) -> None:
        """One line saying what went wrong and what to do (stderr, always)."""
        self._line(f"asynchub: error: {text}", stderr=True)

    def json(self, value: Any) -> None:
        """One JSON document (stdout)."""
        self._stdout.write(json.dumps(value, indent=2) + "\n")

    def json_lines(self, values: Iterable[Any]) -> None:
        """One JSON object per line (stdout)."""
        for value in values:
            self._stdout.write(json.dumps(value) + "\n")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """A plain table (stdout)."""
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False)
        for header in headers:
            right = header in ("opset", "size", "bytes")
            table.add_column(
                header, justify="right" if right else "left", overflow="fold"
            )
        for row in rows:
            table.add_row(*(Text(plain(str(cell))) for cell in row))
        with self.out.capture() as captured:  # rich pads every cell: strip lines
            self.out.print(table)
        lines = captured.get().splitlines()
        sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))


class ProgressDisplay:
    """Renders engine progress events and a run's plan; a context manager.

    Pass :meth:`event` as the ``progress`` callback and :meth:`plan` as ``on_plan``.
    """

    def __init__(self, output: Output, *, style: Style | None = None) -> None:
        self._output = output
        self.style: Style = style or output.progress_style
        self._bars: Progress | None = None
        self._overall: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}
        self._seen: dict[str, int] = {}
        self._totals: dict[str, int | None] = {}
        self._total_files = 0
        self._finished = 0

    def __enter__(self) -> ProgressDisplay:
        if self.style == "bars":
            self._bars = _make_bars(self._output.err)
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def plan(self, plan: MirrorPlan) -> None:
        """Announce the run: totals for the overall bar, or one line."""
        self._total_files = plan.to_fetch_files
        self._finished = 0
        if self.style == "bars" and self._bars is None:  # a second run (the demo)
            self.__enter__()
        if self.style == "lines":
            self._output.note(_plan_line(plan))
        elif self._bars is not None and plan.to_fetch_files:
            self._overall = self._bars.add_task(
                self._overall_text(), total=plan.to_fetch_bytes or None
            )

    def event(self, event: ProgressEvent) -> None:
        """The ``progress`` callback: one engine event."""
        if isinstance(event, FileStarted):
            self._started(event)
        elif isinstance(event, FileProgress):
            self._advance(event.label, event.done)
        elif isinstance(event, FileVerified):
            self._seen.setdefault(event.label, 0)  # no progress event: all new
            self._advance(event.label, event.result.size)
            self._finish(
                event.label,
                f"fetched {event.label} ({format_bytes(event.result.size)})",
            )
        elif isinstance(event, FileFailed):
            self._finish(event.label, f"failed  {event.label}: {event.error.message}")

    def _started(self, event: FileStarted) -> None:
        self._totals[event.label] = event.total

    def _advance(self, label: str, done: int) -> None:
        if label not in self._seen:
            self._baseline(label, done)
            return
        delta = done - self._seen.get(label, 0)
        self._seen[label] = max(done, self._seen.get(label, 0))
        if self._bars is None:
            return
        if label in self._tasks:
            self._bars.update(self._tasks[label], completed=done)
        if self._overall is not None and delta > 0:
            self._bars.advance(self._overall, delta)

    def _baseline(self, label: str, done: int) -> None:
        """A file's first progress: what it has so far (bytes a resume found on
        disk) fills its bar without counting as speed, and leaves the overall
        bar's total, which counts bytes moved by this run."""
        self._seen[label] = done
        if self._bars is None:
            return
        self._tasks[label] = self._bars.add_task(
            _short(plain(label)), total=self._totals.get(label), completed=done
        )
        if self._overall is not None and done:
            overall = next(t for t in self._bars.tasks if t.id == self._overall)
            if overall.total is not None:
                self._bars.update(self._overall, total=max(overall.total - done, 0))

    def _finish(self, label: str, line: str) -> None:
        self._finished += 1
        self._totals.pop(label, None)
        if self.style == "lines":
            self._output.note(f"[{self._finished}/{self._total_files}] {line}")
        if self._bars is None:
            return
        task = self._tasks.pop(label, None)
        if task is not None:
            self._bars.remove_task(task)
        if self._overall is not None:
            self._bars.update(self._overall, description=self._overall_text())
        if self._finished >= self._total_files:  # draw the last frame now, so
            self.__exit__(None, None, None)  # later lines come after the bars
            self._overall = None

    def _overall_text(self) -> str:
        return f"overall  {self._finished}/{self._total_files} files"


def _console(stream: IO[str], tty: bool) -> Console:
    from rich.console import Console

    # No markup, emoji codes or highlighting anywhere: text from manifests and
    # servers is printed as the characters it is (see asynchub._text).
    inert: dict[str, Any] = {"markup": False, "emoji": False, "highlight": False}
    return Console(file=stream, width=None if tty else _WIDE, **inert)


def _make_bars(console: Console) -> Progress:
    from .._autoprogress import make_bars  # speed in KiB/s, like the summaries

    return make_bars(console, transient=False)


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]


def _plan_line(plan: MirrorPlan) -> str:
    return (
        f"{plan.to_fetch_files} of {plan.total_files} "
        f"file{'' if plan.total_files == 1 else 's'} to fetch "
        f"({format_bytes(plan.to_fetch_bytes)}); "
        f"{plan.skipped_files} already in place"
    )


class ConsoleLogHandler(logging.Handler):
    """Prints asynchub's log records on the CLI's stderr console (above live bars).

    Writing through the rich console, not ``sys.stderr``, keeps warnings from
    tearing the progress display.
    """

    def __init__(self, output: Output) -> None:
        super().__init__()
        self._output = output
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if not record.name.startswith("aiohttp"):
                message = f"asynchub: {record.levelname.lower()}: {message}"
            self._output.log_line(message)
        except Exception:
            self.handleError(record)

    @classmethod
    def install(cls, output: Output, *, debug: bool) -> ConsoleLogHandler:
        """Attach to the asynchub and aiohttp access loggers for one CLI run."""
        handler = cls(output)
        quiet_level = logging.ERROR if output.quiet else logging.WARNING
        levels = {
            "asynchub": logging.DEBUG if debug else quiet_level,
            "aiohttp.access": logging.INFO,
        }
        for name, level in levels.items():
            logger = logging.getLogger(name)
            handler._levels[name] = logger.level
            logger.setLevel(level)
            logger.addHandler(handler)
        return handler

    def uninstall(self) -> None:
        """Detach and restore the loggers' levels."""
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)
