"""Translate aiohttp and OS errors into asynchub errors, in one place.

Network code catches :data:`NETWORK_EXCEPTIONS` around each aiohttp call and raises
:func:`network_error`; disk code catches ``OSError`` and raises :func:`disk_error`.
Nothing outside ``_transfer`` ever sees an aiohttp type.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from pathlib import Path

import aiohttp

from ..config import RetryPolicy
from ..errors import (
    CacheError,
    DiskFullError,
    HTTPStatusError,
    IncompleteTransferError,
    NetworkError,
    ReadOnlyCacheError,
    RemoteFileNotFoundError,
    TransferError,
    TransferTimeoutError,
)

__all__ = (
    "NETWORK_EXCEPTIONS",
    "RetryableStatusError",
    "TLSError",
    "disk_error",
    "is_retryable",
    "network_error",
    "status_error",
)

NETWORK_EXCEPTIONS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)
"""What an aiohttp request or body read may raise for network reasons."""


class TLSError(NetworkError):
    """A certificate or TLS failure: never retried, never retried insecurely."""

    default_hint = (
        "check the server certificate and the system CA store; asynchub never "
        "falls back to an unverified connection"
    )


class HostNotFoundError(NetworkError):
    """The host name does not resolve (not a temporary DNS failure): not retried,
    so an offline machine falls back to cached or shipped copies at once."""

    default_hint = "check the host name, your DNS and proxy settings, or go offline"


class RetryableStatusError(HTTPStatusError):
    """A 408/429/5xx answer, retried with backoff; ``retry_after`` in seconds."""

    def __init__(
        self, message: str, *, status: int, url: str, retry_after: float | None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, url=url, hint=_status_hint(status))


def network_error(exc: BaseException, url: str) -> TransferError:
    """The asynchub error for an exception raised while talking to ``url``."""
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return TLSError(f"TLS verification failed for {url}: {exc}", url=url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransferTimeoutError(
            f"could not connect to {url} within the connect timeout",
            url=url,
            hint="the host does not answer connection attempts (a firewall or a "
            "dropped route?); raise ASYNCHUB_CONNECT_TIMEOUT, or check the network "
            "and proxy settings",
        )
    if isinstance(exc, asyncio.TimeoutError):
        return TransferTimeoutError(
            f"{url} sent no bytes within the timeout ({type(exc).__name__})", url=url
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return IncompleteTransferError(
            f"the connection to {url} broke in the middle of the body: {exc}", url=url
        )
    if _name_unknown(exc):
        return HostNotFoundError(f"could not fetch {url}: {exc}", url=url)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransferError(f"invalid URL {url}", url=url, hint="fix the repo URL")
    detail = str(exc) or type(exc).__name__
    return NetworkError(f"could not fetch {url}: {detail}", url=url)


def _name_unknown(exc: BaseException) -> bool:
    """A DNS answer that the name does not exist (EAI_AGAIN stays retryable)."""
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return False
    permanent = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    return exc.os_error.errno in permanent


def status_error(
    status: int, reason: str | None, url: str, retry_after: float | None = None
) -> HTTPStatusError:
    """The asynchub error for an HTTP status that is not a usable answer."""
    message = f"{url} answered {status} {reason or ''}".rstrip()
    if status in (404, 410):
        return RemoteFileNotFoundError(message, status=status, url=url)
    if status in (408, 429) or status >= 500:
        return RetryableStatusError(
            message, status=status, url=url, retry_after=retry_after
        )
    return HTTPStatusError(message, status=status, url=url, hint=_status_hint(status))


def _status_hint(status: int) -> str:
    if status == 429:
        return "the server is rate-limiting; wait a few minutes and run again"
    if status in (401, 403):
        return "the file is private, or the host is rate-limiting (403); check access"
    if status >= 500:
        return "the server is failing; run again later to resume"
    return "the server refused the request; check the URL"


def is_retryable(err: BaseException, policy: RetryPolicy) -> bool:
    """Whether a failed request may be repeated after a backoff."""
    if isinstance(err, HTTPStatusError):
        return err.status in policy.retry_statuses
    if isinstance(err, (TLSError, HostNotFoundError)):
        return False
    return isinstance(err, (NetworkError, IncompleteTransferError))


def disk_error(exc: OSError, path: Path | str) -> CacheError:
    """The asynchub error for an ``OSError`` raised while writing ``path``."""
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DiskFullError(f"no space left on the device while writing {path}")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = exc.strerror or "permission denied"
        return ReadOnlyCacheError(f"cannot write {path}: {why}")
    return CacheError(f"cannot write {path}: {exc}")
