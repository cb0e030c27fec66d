"""How many connections one file may open to a host: the rule and the back-off.

The rule: a file big enough to split is fetched over up to
``min(limits.max_parts_per_file, limits.max_connections_per_host)`` connections at
once (16 by default), one part each. On a link where one connection is slow (a CDN
pacing each connection, a long fat pipe) the file then goes as fast as a mirror of
many files does; the per-host cap keeps the total polite, and the engine's
connection pool holds every file of a run to it together.

The back-off, the one rule for a host that will not take more connections: some
hosts refuse extra connections rather than pace them (a CDN that answers a third
ranged connection from one client with ``403``; others say ``429`` or ``503``, or
refuse or reset the connection before answering). When a file's *extra* connection,
one opened while others of the same file are still running and after the host has
served this file, is refused that way (:func:`is_refusal`), the part goes back to the
file's queue for the connections that work, and the host's limit becomes the number
of connections that were working (at least 1). The limit is remembered for the rest
of the run (one engine), so later files to that host start with that many and do
not ask again. The file's last connection is not dropped: if its host has already
refused extras in this run, it waits and tries again (the host may still count a
connection that just closed); otherwise the refusal fails as usual. A refusal of a
file's first request is a real answer and fails as before.

This module is the one place that knows the rule: the download asks
:meth:`HostConnections.allowed` how many workers to start and
:meth:`HostConnections.judge` what a failed request means.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp

from ..errors import HTTPStatusError

__all__ = (
    "REFUSAL_STATUSES",
    "Connection",
    "HostConnections",
    "Verdict",
    "is_refusal",
    "refused_connection",
)

REFUSAL_STATUSES = frozenset({403, 429, 503})
"""Statuses that, on an extra connection, mean "no more connections from you"."""

_log = logging.getLogger("asynchub")


Verdict = Literal["back off", "retry"]
"""What a refused connection does: ``"back off"``: stop, leave the range to the
file's other connections (the host's limit was lowered); ``"retry"``: the file's
last connection waits and tries again."""

_RESETS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


def is_refusal(err: BaseException, *, answered: bool = True) -> bool:
    """Whether ``err`` is how a host refuses one more connection: a status of
    :data:`REFUSAL_STATUSES`, or (before any answer) a refused or reset connection."""
    if isinstance(err, HTTPStatusError):
        return err.status in REFUSAL_STATUSES
    return not answered and refused_connection(err, resets=True)


def refused_connection(err: BaseException, *, resets: bool = False) -> bool:
    """Whether ``err`` (an asynchub error, caused by aiohttp's) is a connection the
    host refused (with ``resets``: or reset or closed before answering)."""
    cause = err.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return isinstance(cause.os_error, ConnectionRefusedError)
    if not resets:
        return False
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(cause, aiohttp.ClientOSError) and cause.errno in _RESETS


@dataclass(frozen=True)
class Connection:
    """What the rule needs to know about the request that failed.

    Args:
        served: The host already served this file (the probe's answer came).
        answered: This request got a response before it failed.
        others: The file's other connections still running.
        working: The file's requests in flight besides this one.
    """

    served: bool
    answered: bool
    others: int
    working: int


def host_of(url: str) -> str:
    """``scheme://host:port`` of a URL: the unit connection limits apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class HostConnections:
    """Connections per file for each host, lowered for the run when a host refuses.

    Args:
        per_file: The rule's number, ``min(max_parts_per_file,
            max_connections_per_host)``.
    """

    def __init__(self, per_file: int) -> None:
        self.per_file = max(1, per_file)
        self._limits: dict[str, int] = {}

    def allowed(self, *urls: str) -> int:
        """Connections one file may open now, to the hosts of ``urls`` (the file's
        URL and where it redirected to)."""
        limits = [self._limits.get(host_of(u), self.per_file) for u in urls]
        return min([self.per_file, *limits])

    def judge(self, err: BaseException, conn: Connection, *urls: str) -> Verdict | None:
        """The rule (see the module docs) for ``err`` on a connection to ``urls``;
        None: not a refusal of an extra connection, fail or retry as usual."""
        if not conn.served or not is_refusal(err, answered=conn.answered):
            return None
        if conn.others > 0:
            self.refused(max(1, conn.working), *urls)
            return "back off"
        return "retry" if self.backed_off(*urls) else None

    def backed_off(self, *urls: str) -> bool:
        """Whether a host of ``urls`` refused extra connections in this run."""
        return self.allowed(*urls) < self.per_file

    def refused(self, working: int, *urls: str) -> int:
        """Record that the hosts of ``urls`` refused a connection while ``working``
        others were streaming; return the new limit (at least 1)."""
        limit = max(1, min(working, self.allowed(*urls)))
        for url in urls:
            host = host_of(url)
            if self._limits.get(host, self.per_file) > limit:
                _log.info(
                    "%s refused connection %d of one file: at most %d per file "
                    "from now on in this run",
                    host,
                    working + 1,
                    limit,
                )
            self._limits[host] = min(limit, self._limits.get(host, limit))
        return limit
