"""HTTP pieces shared by every behaviour: ``Range`` and ``If-Range``, validators,
dates, and the byte-level tricks on a connection (flush, stall, TCP reset)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import struct

__all__ = (
    "REASONS",
    "abort",
    "choose_range",
    "flushed",
    "http_date",
    "if_range_ok",
    "parse_range",
    "silence",
)
REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    403: "Forbidden",
    404: "Not Found",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
RESET_GRACE = 0.05
"""Seconds between the last byte and a RST (a RST discards the peer's unread data)."""

Span = tuple[int, int]
"""The first and last byte (inclusive) of a 206."""


def http_date(when: float) -> str:
    """An IMF-fixdate for ``when`` (seconds since the epoch)."""
    return email.utils.formatdate(when, usegmt=True)


def parse_range(value: str | None) -> tuple[int, int | None] | None:
    """``(first, last or None)`` of the first ``bytes=N-[M]`` range, else None."""
    if not value or not value.strip().startswith("bytes="):
        return None
    first = value.strip()[len("bytes=") :].split(",", 1)[0].strip()
    start, _, end = first.partition("-")
    if not start.isdigit() or (end and not end.isdigit()):
        return None
    return int(start), int(end) if end else None


def _suffix(value: str) -> int | None:
    """N of a suffix range ``bytes=-N``, else None."""
    spec = value.strip().removeprefix("bytes=").split(",", 1)[0].strip()
    return int(spec[1:]) if spec.startswith("-") and spec[1:].isdigit() else None


def if_range_ok(if_range: str | None, etag: str | None, modified: str | None) -> bool:
    """RFC 9110 §13.1.5: no ``If-Range``, a strong ETag match or an exact date."""
    if if_range is None:
        return True
    if if_range.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and if_range == etag
    return modified is not None and if_range == modified


def choose_range(range_header: str | None, size: int) -> Span | None | str:
    """What to send for ``Range``: a span for a 206, None for a 200, ``"416"``."""
    if range_header is None:
        return None
    suffix = _suffix(range_header)
    if suffix is not None:
        return (max(0, size - suffix), size - 1) if size and suffix else "416"
    parsed = parse_range(range_header)
    if parsed is None:
        return None
    first, end = parsed
    last = size - 1 if end is None else min(end, size - 1)
    return "416" if first >= size or last < first else (first, last)


async def flushed(transport: asyncio.BaseTransport | None) -> None:
    """Wait until the kernel has every byte written so far, and a little more."""
    if isinstance(transport, asyncio.WriteTransport):
        for _ in range(200):
            if transport.get_write_buffer_size() == 0 or transport.is_closing():
                break
            await asyncio.sleep(0.005)
    await asyncio.sleep(RESET_GRACE)  # let the client read them before what follows


async def abort(transport: asyncio.BaseTransport | None) -> None:
    """Flush, then abort the connection with a TCP RST (``SO_LINGER`` 0)."""
    if transport is None:
        return
    await flushed(transport)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    if isinstance(transport, asyncio.Transport):
        transport.abort()


async def silence(transport: asyncio.BaseTransport | None, seconds: float) -> None:
    """Send nothing for ``seconds``, or until the client goes away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline and transport and not transport.is_closing():
        await asyncio.sleep(0.02)
