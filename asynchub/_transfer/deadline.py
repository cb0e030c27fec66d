"""The first-byte deadline: how long one file or manifest may wait for an answer.

A black-holed network (SYNs dropped, or a port that accepts and never answers)
used to fail only after every retry of every URL had timed out, minutes later and
silently. :func:`until_answered` watches the work with a timer and bounds the time
until the server's first answer (any HTTP response, even a 503): connects, retries
and mirror URLs all count against ``Timeouts.first_byte``. While nothing has
answered it logs a "still waiting" warning every ``Timeouts.notice`` seconds (at
most a quarter of ``first_byte``, so a short deadline still says why) naming
what waits, for which host, and what is happening: the host refused N connections
and they are being retried, or no answer came yet. The work reports both to its
:class:`FirstAnswer`. Once an answer came it no longer interferes: stalls and
retries are bounded by ``read`` and ``RetryPolicy`` then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from yarl import URL

from ..config import Timeouts
from ..errors import TransferTimeoutError
from .hostconn import refused_connection

__all__ = ("FirstAnswer", "until_answered")

_log = logging.getLogger("asynchub")
T = TypeVar("T")


class FirstAnswer:
    """Whether a server answered yet, and how many connections were refused before."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.refused = 0

    def set(self) -> None:
        """A server answered (any HTTP response), or no network is involved."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def failed(self, err: BaseException) -> None:
        """A request failed: count it if the host refused the connection."""
        if not self.is_set() and refused_connection(err):
            self.refused += 1


async def until_answered(
    work: Coroutine[Any, Any, T],
    answered: FirstAnswer,
    timeouts: Timeouts,
    label: str,
    url: Callable[[], str],
) -> T:
    """Await ``work``; fail it if ``answered`` is not set within ``first_byte`` s.

    ``url()`` names the URL being tried now (for the notes and the error). The work
    runs in the calling task, watched by a timer (no task, no wait per file: this
    runs for every file); when the deadline passes the timer cancels the task and
    the cancellation comes out as the deadline's error.
    """
    task = asyncio.current_task()
    assert task is not None
    watch = _Watch(task, answered, timeouts, label, url)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.expired and not _still_cancelled(task):
            raise watch.error() from None
        raise
    finally:
        watch.stop()


class _Watch:
    """The timer of :func:`until_answered`: notes while waiting, then the cancel."""

    def __init__(
        self,
        task: asyncio.Task[Any],
        answered: FirstAnswer,
        timeouts: Timeouts,
        label: str,
        url: Callable[[], str],
    ) -> None:
        self.task, self.answered, self.label, self.url = task, answered, label, url
        self.loop = asyncio.get_running_loop()
        self.limit = timeouts.first_byte
        self.every = min(timeouts.notice, self.limit / 4)  # short deadline: notes too
        self.end = self.loop.time() + self.limit
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        left = self.end - self.loop.time()
        self.timer = self.loop.call_later(max(0.0, min(left, self.every)), self._check)

    def _check(self) -> None:
        self.timer = None
        if self.answered.is_set() or self.task.done():
            return
        left = self.end - self.loop.time()
        if left <= 0:
            self.expired = True
            self.task.cancel()
            return
        _notice(
            self.label, self.url(), self.answered.refused, self.limit - left, self.limit
        )
        self._arm()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def error(self) -> TransferTimeoutError:
        return _timeout(self.label, self.url(), self.limit, self.answered.refused)


def _still_cancelled(task: asyncio.Task[Any]) -> bool:
    """Take back our own cancel; whether someone else cancelled the task too
    (Python 3.11+ counts cancels; 3.10 cannot tell, and the deadline wins)."""
    uncancel = getattr(task, "uncancel", None)
    return uncancel is not None and uncancel() > 0


def _notice(label: str, url: str, refused: int, waited: float, limit: float) -> None:
    """The "still waiting" warning, saying what is happening."""
    host, after = _host(url), f"gives up after {limit:g} s"
    if refused:
        many = "connection" if refused == 1 else "connections"
        _log.warning(
            "still waiting for %r: %s refused %d %s; retrying (%s)",
            label,
            host,
            refused,
            many,
            after,
        )
        return
    _log.warning(
        "still waiting for %r: no answer from %s for %.0f s "
        "(connecting or waiting for the response; %s)",
        label,
        host,
        waited,
        after,
    )


def _timeout(
    label: str, url: str, limit: float, refused: int = 0
) -> TransferTimeoutError:
    """The deadline's error, saying whether the host refused or never answered."""
    if refused:
        many = "connection" if refused == 1 else "connections"
        return TransferTimeoutError(
            f"{_host(url)} refused {refused} {many} for {label!r} and gave no answer "
            f"within {limit:g} s",
            url=url,
            hint="nothing listens at that address and port, or a firewall rejects "
            "it: check the repo URL, or run again when the server is up",
        )
    return TransferTimeoutError(
        f"no first byte of {label!r} from {_host(url)} within {limit:g} s",
        url=url,
        hint="the network or the server does not answer (a firewall, a dropped "
        "route, a proxy?); raise ASYNCHUB_FIRST_BYTE_TIMEOUT to wait longer, or "
        "run again later",
    )


def _host(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.host else url
