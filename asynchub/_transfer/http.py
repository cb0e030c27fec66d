"""The aiohttp boundary: session factory, manual redirects, header parsing.

Redirects are followed here, not by aiohttp, because aiohttp follows https→http
downgrades. Rules: at most ``limits.max_redirects`` hops; only ``http``/``https``
targets (never ``file:``); no https→http downgrade; ``Authorization``, ``Cookie`` and
``Proxy-Authorization`` are dropped when the origin (scheme, host, port) changes;
``~/.netrc`` credentials go only to the origin of the URL asked for (a redirect to
another port of the same host gets none: any local user can listen on one).

Offline mode (``HubConfig.offline``, ``ASYNCHUB_OFFLINE=1``) is enforced here, in
:meth:`Http.get`, the one place every request of the package goes through (the
engine does not try :mod:`.revalidate` offline): it raises
:class:`~asynchub.errors.OfflineCacheMissError` before any connection is opened,
whichever caller (load, download, mirror, a manifest, a commit pin) asked.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import anyio
from yarl import URL

from ..config import HubConfig
from ..errors import OfflineCacheMissError, RedirectError, TransferError
from .failures import NETWORK_EXCEPTIONS, network_error
from .lowwater import low_water
from .netenv import NetEnv, with_credentials
from .retry import parse_retry_after

__all__ = (
    "ContentRange",
    "Http",
    "Validator",
    "BodyChunks",
    "make_session",
    "parse_content_range",
    "parse_unsatisfied_length",
)

READ_BUFSIZE = 256 * 1024
"""aiohttp's per-response buffer (its default, 64 KiB, costs throughput)."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIALS = ("Authorization", "Cookie", "Proxy-Authorization")
# At most 19 digits (any file size fits): int() of a 5000-digit value a server
# sends would raise ValueError (Python's 4300-digit limit) instead of a clean error.
_CONTENT_RANGE = re.compile(r"bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d{1,19})")


def make_session(config: HubConfig) -> aiohttp.ClientSession:
    """One session for an engine: no total timeout, identity encoding.

    Proxies and netrc credentials come from :class:`~._netenv.NetEnv` per request
    (``trust_env=False``: aiohttp would read them again for every request).
    """
    limits = config.limits
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections, limit_per_host=limits.max_connections_per_host
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=None,
        sock_connect=config.timeouts.connect,
        sock_read=config.timeouts.read,
    )
    headers = {"User-Agent": config.user_agent, "Accept-Encoding": "identity"}
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        trust_env=False,
        auto_decompress=False,
        read_bufsize=READ_BUFSIZE,
    )


class Http:
    """GET requests with asynchub's redirect rules and error mapping.

    A ``429`` or ``503`` with ``Retry-After`` pauses every request to that origin
    (not only the one that got it) for the time asked, capped at ``max_pause``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        max_redirects: int,
        max_pause: float = 300.0,
        env: NetEnv | None = None,
        bearer: Mapping[URL, str] | None = None,
        *,
        offline: bool = False,
    ) -> None:
        self.session = session
        self.offline = offline
        # origin -> "Bearer …": a hub token goes to its own host only, so it is
        # added per request (never carried across a redirect to a CDN)
        self.bearer = dict(bearer or {})
        self.env = env if env is not None else NetEnv()
        self.max_redirects = max_redirects
        self.max_pause = max_pause
        self._paused: dict[URL, float] = {}

    @asynccontextmanager
    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        on_redirect: Callable[[Mapping[str, str]], None] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a GET of ``url`` after redirects; the caller checks the status.

        ``on_redirect`` sees the headers of every redirect before it is followed
        (and may raise to refuse it).
        """
        if self.offline:
            raise OfflineCacheMissError(
                f"offline mode: {url} is not fetched (it is not in the cache)"
            )
        current, sent = _check_scheme(URL(url), url), dict(headers or {})
        origin = current.origin()
        for _ in range(self.max_redirects + 1):
            await self._wait_for_host(current)
            response = await self._send(current, sent, current.origin() == origin)
            self._note_pause(current, response)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                try:
                    yield response
                finally:
                    response.release()
                return
            response.release()
            if on_redirect is not None:
                on_redirect(response.headers)
            current, sent = _next_hop(current, location, sent, url)
        raise RedirectError(
            f"{url} redirected more than {self.max_redirects} times", url=url
        )

    async def _wait_for_host(self, url: URL) -> None:
        until = self._paused.get(url.origin())
        if until is not None:
            delay = until - time.monotonic()
            if delay <= 0:
                del self._paused[url.origin()]
            else:
                await anyio.sleep(delay)

    def _note_pause(self, url: URL, response: aiohttp.ClientResponse) -> None:
        if response.status not in (429, 503):
            return
        delay = parse_retry_after(response.headers.get("Retry-After"))
        if delay:
            until = time.monotonic() + min(delay, self.max_pause)
            origin = url.origin()
            self._paused[origin] = max(until, self._paused.get(origin, 0.0))

    async def _send(
        self, url: URL, headers: dict[str, str], netrc: bool
    ) -> aiohttp.ClientResponse:
        proxy, proxy_headers = self.env.proxy_for(url)
        sent = headers
        if netrc:
            sent = with_credentials(url, headers, self.bearer, self.env)
        if proxy_headers and url.scheme == "http":  # no CONNECT: the proxy reads these
            sent = {**sent, **proxy_headers}
        try:
            return await self.session.get(
                url,
                headers=sent,
                allow_redirects=False,
                proxy=proxy,
                proxy_headers=proxy_headers,
            )
        except NETWORK_EXCEPTIONS as exc:
            raise network_error(exc, str(url)) from exc


def _check_scheme(url: URL, original: str) -> URL:
    if url.scheme not in ("http", "https"):
        raise RedirectError(
            f"asynchub only fetches http(s) URLs, not {str(url)!r}", url=original
        )
    return url


def _next_hop(
    current: URL, location: str, headers: dict[str, str], original: str
) -> tuple[URL, dict[str, str]]:
    target = current.join(URL(location))
    _check_scheme(target, original)
    if current.scheme == "https" and target.scheme == "http":
        raise RedirectError(
            f"{current} redirected to insecure {target}; refusing the downgrade",
            url=original,
        )
    if target.origin() != current.origin():
        headers = {k: v for k, v in headers.items() if k.title() not in _CREDENTIALS}
    return target, headers


class BodyChunks:
    """The body's chunks as they arrive, with network errors mapped.

    An iterator, not an async generator: a reader that stops early (at its part's
    end) leaves nothing to close, where a generator left to the garbage collector
    is closed by the loop in a new task, one task and one wake-up per request.
    ``coalesce`` (seconds, see :mod:`.lowwater`): a large body is read in pieces of
    about that much time at its rate; a reader that stops early calls :meth:`close`.
    """

    def __init__(
        self, response: aiohttp.ClientResponse, url: str, coalesce: float = 0.0
    ) -> None:
        self.response, self.url = response, url
        self._low = low_water(response, content_length(response), coalesce)

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self.response.content.readany()
        except NETWORK_EXCEPTIONS as exc:
            self.close()
            raise network_error(exc, self.url) from exc
        if not chunk:
            self.close()
            raise StopAsyncIteration
        if self._low is not None:
            self._low.feed(len(chunk))
        return chunk

    def close(self) -> None:
        """Leave the socket as it was (its low-water mark back to 1)."""
        if self._low is not None:
            self._low.close()
            self._low = None


@dataclass(frozen=True)
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/total`` (``last`` inclusive)."""

    first: int
    last: int
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a 206's Content-Range; None when missing or malformed."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if last < first or (total is not None and last >= total):
        return None
    return ContentRange(first, last, total)


def parse_unsatisfied_length(value: str | None) -> int | None:
    """The complete length from a 416's ``Content-Range: bytes */N``."""
    match = _UNSATISFIED.fullmatch((value or "").strip())
    return int(match[1]) if match else None


def content_length(response: aiohttp.ClientResponse) -> int | None:
    """The Content-Length of an identity-encoded body, else None."""
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding not in ("identity", ""):
        return None
    return response.content_length


@dataclass(frozen=True)
class Validator:
    """What identifies one version of a remote file (RFC 9110 §8.8)."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validator:
        return cls(headers.get("ETag"), headers.get("Last-Modified"))

    def if_range(self) -> str | None:
        """The If-Range value: a strong ETag, else Last-Modified (never a weak tag)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def same_as(self, other: Validator) -> bool:
        """False only when both name a version and the versions differ."""
        if self.etag and other.etag:
            return self.etag == other.etag
        if self.last_modified and other.last_modified:
            return self.last_modified == other.last_modified
        return True


def require_identity(response: aiohttp.ClientResponse, url: str) -> None:
    """Refuse an encoded body: its bytes would not be the file's bytes."""
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise TransferError(
            f"{url} sent a {encoding}-encoded body although asynchub asked for "
            "identity",
            url=url,
            hint="the server or a proxy ignores Accept-Encoding; try another mirror",
        )
