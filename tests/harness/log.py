"""The request log of the test servers: one :class:`Request` per request received.

Tests assert on what crossed the wire: the headers the client sent (``Range``,
``If-Range``, ``Authorization``...), the status answered, the body bytes sent and
when the request arrived. :class:`PathStats` is a live view of one path's requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from multidict import CIMultiDict

from .http import parse_range

__all__ = ("PathStats", "Request")


@dataclass
class Request:
    """One request as the server saw it, and what it answered.

    ``headers`` are case-insensitive; ``status`` is 0 when no status line was sent
    (the connection was reset first) and -1 when it was closed on purpose without
    one; ``sent`` counts body bytes; ``at`` is the arrival (``time.monotonic``).
    """

    method: str
    path: str
    headers: CIMultiDict[str]
    status: int = 0
    sent: int = 0
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), None when absent."""
        return self.headers.get(name)

    @property
    def range(self) -> str | None:
        """The ``Range`` header as sent."""
        return self.headers.get("Range")

    @property
    def if_range(self) -> str | None:
        """The ``If-Range`` header as sent."""
        return self.headers.get("If-Range")

    @property
    def range_start(self) -> int | None:
        """The first byte asked for by ``Range: bytes=N-[M]``, else None."""
        parsed = parse_range(self.range)
        return parsed[0] if parsed else None


class PathStats:
    """What one path served so far, read from the server's log when asked."""

    def __init__(self, requests: Callable[[], list[Request]]) -> None:
        self._requests = requests

    @property
    def requests(self) -> list[Request]:
        """The path's requests, in arrival order."""
        return self._requests()

    @property
    def bytes_served(self) -> int:
        """Body bytes sent for the path, over every request."""
        return sum(r.sent for r in self.requests)

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def ranges(self) -> list[str | None]:
        return [r.range for r in self.requests]
