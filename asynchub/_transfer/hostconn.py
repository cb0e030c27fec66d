"""How many connections one file may open to a host: the rule and the back-off.

The rule: a file big enough to split is fetched over up to
``min(limits.max_parts_per_file, limits.max_connections_per_host)`` connections at
once (16 by default), one part each. On a link where one connection is slow (a CDN
pacing each connection, a long fat pipe) the file then goes as fast as a mirror of
many files does; the per-host cap keeps the total polite, and the engine's
connection pool holds every file of a run to it together.

The back-off: some hosts refuse extra connections rather than pace them (a CDN that
answers a third ranged connection from one client with ``403``; others say ``429``
or ``503``). When a file's *extra* connection, one opened while others of the same
file are already streaming, is answered with one of :data:`REFUSAL_STATUSES`, the
part goes back to the file's queue for the connections that work, and the host's
limit becomes the number of connections that were working (at least 1). The limit
is remembered for the rest of the run (one engine), so later files to that host
start with that many and do not ask again. A refusal of a file's first request is a
real answer and fails as before.

This module is the one place that knows the rule: the download asks
:meth:`HostConnections.allowed` how many workers to start and reports a refusal
with :meth:`HostConnections.refused`.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ..errors import HTTPStatusError

__all__ = ("REFUSAL_STATUSES", "HostConnections", "is_refusal")

REFUSAL_STATUSES = frozenset({403, 429, 503})
"""Statuses that, on an extra connection, mean "no more connections from you"."""

_log = logging.getLogger("asynchub")


def is_refusal(err: BaseException) -> bool:
    """Whether ``err`` is a status a host uses to refuse one more connection."""
    return isinstance(err, HTTPStatusError) and err.status in REFUSAL_STATUSES


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
