"""Fewer, larger reads of a fast body: the socket's receive low-water mark.

Each read of a body is a trip through the event loop (selector, transport, aiohttp's
parser, a task step), about 30 µs of CPU in Python. On a paced link with
internet-sized segments a connection at 8 MiB/s wakes the loop for every few KiB
that came in meanwhile: 22,000 reads for the 696 MiB of the benchmark's zoo at 1/64
(16 connections of 8 MiB/s, 1,448-byte segments). Linux lets a TCP socket report
itself readable only once ``SO_RCVLOWAT`` bytes are queued; set to what the body
brings in :attr:`~asynchub.config.Limits.coalesce_seconds` at its measured rate, one
read takes that much at once. Measured on that zoo with plain aiohttp (hashing each
chunk): 22,100 reads and 1.9 CPU s without a mark, 6,800 and 1.3 s at 64 KiB, 4,700
and 1.1 s at 128 KiB, the same wall time.

A mark must never hold bytes back for good, so:

- it is never above the bytes the body still owes on this socket: the last bytes
  are readable as they arrive (over TLS, less a margin for one record the TLS layer
  may hold undecrypted);
- it goes back to 1 when the body ends or its reader stops, before the connection
  can carry another response (lowering the mark wakes the socket at once);
- it goes back to 1 for the rest of the body when a watchdog finds no read for
  :data:`WATCHDOG` seconds: the link slowed below the rate the mark was set for.

Elsewhere than Linux, or without a socket to set (uvloop's may refuse), nothing is
set and reads are as aiohttp makes them.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import aiohttp

from .parts import MEASURE_AFTER

__all__ = ("LowWater", "low_water")

MAX_MARK = 256 * 1024
"""asyncio reads at most 256 KiB per readiness: a higher mark saves nothing."""

MIN_MARK = 16 * 1024
"""Below this a mark saves too few reads to be worth a system call."""

WORTH = 1024 * 1024
"""Smaller bodies are left alone: they come in a few reads anyway."""

WATCHDOG = 0.25
"""Seconds without a read after which a mark is dropped (about ten marks' time)."""

TLS_MARGIN = 64 * 1024
"""Bytes kept below the body's remainder over TLS: the TLS layer may hold part of a
record (at most about 16 KiB) read from the socket but not yet decrypted."""

_ENABLED = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVLOWAT")


def low_water(
    response: aiohttp.ClientResponse, length: int | None, seconds: float
) -> LowWater | None:
    """A :class:`LowWater` for a body worth it: ``length`` (its identity length on
    the wire, None if unknown) 1 MiB or more, ``seconds`` above 0, a socket to set."""
    if seconds <= 0 or not _ENABLED or length is None or length < WORTH:
        return None
    sock, tls = _socket_of(response)
    if sock is None:
        return None
    return LowWater(sock, length - (TLS_MARGIN if tls else 0), seconds)


class LowWater:
    """The receive low-water mark of one response's socket (see the module docs).

    :meth:`feed` after every chunk read, :meth:`close` when the reader stops.
    """

    def __init__(self, sock: socket.socket, room: int, seconds: float) -> None:
        self._sock: socket.socket | None = sock
        self._room = room  # the body's bytes still to come, less the TLS margin
        self._seconds = seconds
        self._mark = 1
        self._began = time.monotonic()
        self._got = 0
        self._reads = 0
        self._watchdog: asyncio.TimerHandle | None = None

    def feed(self, count: int) -> None:
        """Count ``count`` body bytes read; lower or raise the mark as they say."""
        if self._sock is None:
            return
        self._room -= count
        self._got += count
        self._reads += 1
        if self._mark == 1:
            self._measure()
        elif self._room < self._mark:
            self._set(self._room)

    def close(self) -> None:
        """Back to a mark of 1: the connection may carry the next response."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._sock is not None and self._mark > 1:
            self._set(1)
        self._sock = None

    def _measure(self) -> None:
        elapsed = time.monotonic() - self._began
        if elapsed < MEASURE_AFTER:
            return
        mark = min(int(self._got / elapsed * self._seconds), MAX_MARK, self._room)
        if mark >= MIN_MARK:
            self._set(mark)
            self._arm()
        else:
            self._sock = None  # too slow to gain: leave the socket as it is

    def _set(self, mark: int) -> None:
        mark = max(1, mark)
        try:
            assert self._sock is not None
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except (OSError, ValueError, AttributeError):
            self._sock = None  # closed, or a socket that takes no options
            return
        self._mark = mark

    def _arm(self) -> None:
        reads = self._reads
        self._watchdog = asyncio.get_running_loop().call_later(
            WATCHDOG, self._check, reads
        )

    def _check(self, reads: int) -> None:
        self._watchdog = None
        if self._sock is None or self._mark == 1:
            return
        if self._reads == reads:  # nothing read since: the link slowed
            self.close()
        else:
            self._arm()


def _socket_of(response: aiohttp.ClientResponse) -> tuple[socket.socket | None, bool]:
    """The response's socket, if it takes options, and whether it carries TLS."""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or transport.is_closing():
        return None, False
    sock = transport.get_extra_info("socket")
    tls = transport.get_extra_info("sslcontext") is not None
    return (sock if hasattr(sock, "setsockopt") else None), tls
