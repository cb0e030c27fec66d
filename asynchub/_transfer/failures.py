"""Translate aiohttp errors and HTTP statuses into asynchub errors, in one place.

Network code catches :data:`NETWORK_EXCEPTIONS` around each aiohttp call and raises
:func:`network_error`. Nothing outside ``_transfer`` ever sees an aiohttp type. (Disk
errors are translated by :func:`asynchub._fs.os_error`.)
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiohttp

from ..config import RetryPolicy
from ..errors import (
    HostNotFoundError,
    HTTPStatusError,
    IncompleteTransferError,
    NetworkError,
    RemoteFileNotFoundError,
    RetryableStatusError,
    TLSError,
    TransferError,
    TransferTimeoutError,
)

__all__ = (
    "NETWORK_EXCEPTIONS",
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


def network_error(exc: BaseException, url: str) -> TransferError:
    """The asynchub error for an exception raised while talking to ``url``."""
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return TLSError.failed_for(url, exc)
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
    return HTTPStatusError(message, status=status, url=url)  # hint from the status


def is_retryable(err: BaseException, policy: RetryPolicy) -> bool:
    """Whether a failed request may be repeated after a backoff."""
    if isinstance(err, HTTPStatusError):
        return err.status in policy.retry_statuses
    if isinstance(err, (TLSError, HostNotFoundError)):
        return False
    return isinstance(err, (NetworkError, IncompleteTransferError))
