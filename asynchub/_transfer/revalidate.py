"""A warm start's one request, without aiohttp: is the cached copy still current?

A warm ``hub.load`` makes one request: the manifest's ``If-None-Match``, answered
``304 Not Modified``; the model comes from the cache. Importing aiohttp for that one
request is about 110 ms, more than a third of what the call adds to ``onnx.load``.
So the first conditional GET of an engine whose session is not open yet goes over
one plain asyncio connection (:func:`revalidate`), and only a ``304`` is taken from
it. Every other outcome returns None, and the engine makes the same request the
normal way, with all its rules (redirects, retries, pauses, error mapping):

- another status (a changed manifest's ``200``, a redirect, an error);
- a proxy to use for the URL, credentials in the URL, a scheme other than http(s);
- a header the request cannot carry (CR, LF or NUL in it, not Latin-1);
- a network error, or no full answer within the timeouts;
- a status line and headers longer than :data:`HEAD_LIMIT`.

The request carries what the normal one would: the caller's headers, the session's
``User-Agent`` and ``Accept-Encoding: identity``, and the hub token or netrc
credentials of this origin. TLS is verified against the system's CAs with host-name
checks (``ssl.create_default_context``, as aiohttp's default); a certificate that
fails verification raises :class:`~asynchub.errors.TLSError` at once, as the normal
request would, rather than being tried a second time. Offline mode never
gets here (the engine checks first). No body is ever read, so the probe can only
ever say "reuse what you have", which is what the server's ``304`` says.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..config import HubConfig
from ..errors import TLSError
from .netenv import NetEnv, bearer_tokens, with_credentials
from .spec import BytesResponse

__all__ = ("HEAD_LIMIT", "revalidate")

_log = logging.getLogger("asynchub")

HEAD_LIMIT = 64 * 1024
"""The most bytes of status line and headers read before giving up on the probe."""

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")
_UNSAFE = re.compile(r"[\r\n\x00]")
_FAILURES = (
    OSError,
    asyncio.TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
)


async def revalidate(
    url: str, headers: Mapping[str, str], env: NetEnv, config: HubConfig
) -> BytesResponse | None:
    """The server's ``304`` to a conditional GET of ``url``, or None for anything
    else (the caller then asks again the normal way).

    Raises:
        TLSError: The server's certificate failed verification.
    """
    target = _target(url, env)
    request = None if target is None else _request(target, headers, env, config)
    if target is None or request is None:
        return None
    try:
        head = await _exchange(target, request, config)
    except ssl.SSLCertVerificationError as exc:  # the same answer a second time
        raise TLSError.failed_for(url, exc) from exc
    except _FAILURES as exc:
        _log.debug("revalidating %s without a session failed: %r", url, exc)
        return None
    return _not_modified(head, url)


def _target(url: str, env: NetEnv) -> URL | None:
    try:
        target = URL(url)
    except (TypeError, ValueError):
        return None
    plain = target.scheme in ("http", "https") and target.user is None
    if not plain or not target.raw_host or env.proxy_for(target)[0] is not None:
        return None
    return target


def _request(
    target: URL, headers: Mapping[str, str], env: NetEnv, config: HubConfig
) -> bytes | None:
    """The request's bytes, or None when a header cannot be sent as given."""
    given = {name.lower() for name in headers}
    defaults = {
        "Host": target.host_port_subcomponent or "",
        "User-Agent": config.user_agent,
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    fields = {k: v for k, v in defaults.items() if k.lower() not in given}
    fields.update(headers)  # the caller's own, once each (names are case-blind)
    fields = with_credentials(target, fields, bearer_tokens(config), env)
    lines = [f"GET {target.raw_path_qs} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    text = "\r\n".join(lines) + "\r\n\r\n"
    if any(_UNSAFE.search(f"{k}{v}") for k, v in fields.items()):
        return None
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None


async def _exchange(target: URL, request: bytes, config: HubConfig) -> bytes:
    """Send ``request`` on a new connection; the response's head, at most
    :data:`HEAD_LIMIT` bytes. The connection is closed either way."""
    tls = _tls_context() if target.scheme == "https" else None
    port = target.port or (443 if tls else 80)
    connect = asyncio.open_connection(
        target.raw_host,
        port,
        ssl=tls,
        server_hostname=target.raw_host if tls else None,
        limit=HEAD_LIMIT,
    )
    reader, writer = await asyncio.wait_for(connect, config.timeouts.connect)
    try:
        writer.write(request)
        await asyncio.wait_for(writer.drain(), config.timeouts.read)
        return await asyncio.wait_for(
            reader.readuntil(b"\r\n\r\n"), config.timeouts.read
        )
    finally:
        writer.transport.abort()  # no TLS goodbye to wait for: nothing more is read


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _not_modified(head: bytes, url: str) -> BytesResponse | None:
    match = _STATUS.match(head)
    if match is None or match.group(1) != b"304":
        return None
    fields: CIMultiDict[str] = CIMultiDict()
    for line in head[match.end() :].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip():
            fields.add(name.strip().decode("latin-1"), value.strip().decode("latin-1"))
    return BytesResponse(304, CIMultiDictProxy(fields), b"", url)
