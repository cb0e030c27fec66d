"""The first-byte deadline: how long one file or manifest may wait for an answer.

A black-holed network (SYNs dropped, or a port that accepts and never answers)
used to fail only after every retry of every URL had timed out, minutes later and
silently. :func:`until_answered` runs the work in a child task and bounds the time
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

    ``url()`` names the URL being tried now (for the notes and the error).
    """
    child = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    limit = timeouts.first_byte
    every = min(timeouts.notice, limit / 4)  # a short deadline still gets notes
    end = loop.time() + limit
    try:
        while not child.done():
            if answered.is_set():
                return await child
            left = end - loop.time()
            if left <= 0:
                await _cancel(child)
                raise _timeout(label, url(), limit, answered.refused)
            await asyncio.wait({child}, timeout=min(left, every))
            left = end - loop.time()
            if not child.done() and not answered.is_set() and left > 0:
                _notice(label, url(), answered.refused, limit - left, limit)
        return child.result()
    except asyncio.CancelledError:
        await _cancel(child)
        raise


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


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for its cleanup, absorbing its outcome."""
    task.cancel()
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            continue
    if not task.cancelled():
        task.exception()  # retrieved
