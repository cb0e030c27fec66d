"""Proxies and ``~/.netrc`` credentials, read once per engine.

aiohttp's ``trust_env=True`` reads them again for every request: ``getproxies()``
and the netrc file on the event loop, and netrc once more through the default
thread pool (two thread hops). For a mirror of thousands of small files that was a
large share of the per-file cost, so the engine reads both once, when it starts,
and passes ``proxy`` and ``auth`` per request with the same rules:

- ``HTTP_PROXY``/``HTTPS_PROXY`` (and the platform's settings) by URL scheme,
  ``NO_PROXY`` honoured; credentials in the proxy URL, or netrc ones for the proxy
  host, authenticate to the proxy; ``https://`` proxies are not supported by
  aiohttp and are ignored with a warning, as aiohttp does;
- ``$NETRC`` or ``~/.netrc`` (``~/_netrc`` on Windows) credentials go to the host
  they name, and only on requests to the origin (scheme, host, port) of the URL
  asked for: a redirect elsewhere, even to another port of the same host, gets
  none (:class:`~._http.Http` decides); never when the request already has
  credentials.
"""

from __future__ import annotations

import base64
import logging
import netrc
import os
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from yarl import URL

if TYPE_CHECKING:
    from ..config import HubConfig

__all__ = ("NetEnv", "bearer_tokens", "with_credentials")

_log = logging.getLogger("asynchub")


@dataclass(frozen=True)
class _Proxy:
    url: URL
    headers: Mapping[str, str] | None  # Proxy-Authorization, when it has credentials


@dataclass(frozen=True)
class NetEnv:
    """A snapshot of the environment's proxies and netrc credentials."""

    proxies: Mapping[str, _Proxy] = field(default_factory=dict)
    bypass: Mapping[str, str] = field(default_factory=dict)
    netrc: netrc.netrc | None = None

    @classmethod
    def read(cls) -> NetEnv:
        """Read the environment now (blocking: it may read ~/.netrc)."""
        found = _read_netrc()
        env = urllib.request.getproxies()
        proxies = {
            scheme: _proxy(URL(env[scheme]), found)
            for scheme in ("http", "https")
            if env.get(scheme)
        }
        usable = {k: v for k, v in proxies.items() if v is not None}
        return cls(usable, {"no": env["no"]} if "no" in env else {}, found)

    def proxy_for(self, url: URL) -> tuple[URL | None, Mapping[str, str] | None]:
        """The proxy for ``url`` and its headers, or (None, None)."""
        proxy = self.proxies.get(url.scheme)
        if proxy is None or self._bypassed(url):
            return None, None
        return proxy.url, proxy.headers

    def authorization_for(self, url: URL) -> str | None:
        """An ``Authorization`` value from netrc for ``url``'s host, if any."""
        if self.netrc is None or url.host is None:
            return None
        return _basic(self.netrc, url.host)

    def _bypassed(self, url: URL) -> bool:
        if not self.bypass or url.host is None:
            return False
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        return bool(bypass(url.host, dict(self.bypass)))


def bearer_tokens(config: HubConfig) -> dict[URL, str]:
    """``{origin: "Bearer …"}`` for the Hugging Face endpoint when a token is set."""
    if config.hf_token is None:
        return {}
    token = config.hf_token.get_secret_value()
    try:
        origin = URL(config.hf_endpoint).origin()
    except ValueError:
        return {}
    return {origin: f"Bearer {token}"}


def with_credentials(
    url: URL, headers: dict[str, str], bearer: Mapping[URL, str], env: NetEnv
) -> dict[str, str]:
    """``headers`` plus the hub token for this exact origin, else netrc credentials,
    unless the request already carries some. Only for the origin of the URL asked
    for (the callers decide, see :class:`~._http.Http`)."""
    if not bearer and env.netrc is None:  # the common case: nothing to add
        return headers
    if url.user is not None or any(k.title() == "Authorization" for k in headers):
        return headers
    value = bearer.get(url.origin()) or env.authorization_for(url)
    return headers if value is None else {**headers, "Authorization": value}


def _proxy(url: URL, found: netrc.netrc | None) -> _Proxy | None:
    if url.scheme not in ("http", ""):
        _log.warning("%s proxies are not supported; ignoring %s", url.scheme, url)
        return None
    value = None
    if url.user is not None:
        value = _encode(url.user, url.password or "")
        url = url.with_user(None)
    elif found is not None and url.host is not None:
        value = _basic(found, url.host)
    return _Proxy(url, {"Proxy-Authorization": value} if value else None)


def _basic(found: netrc.netrc, host: str) -> str | None:
    entry = found.authenticators(host)
    return None if entry is None else _encode(entry[0] or "", entry[2] or "")


def _encode(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _read_netrc() -> netrc.netrc | None:
    path = _netrc_path()
    if path is None or not path.is_file():
        return None
    try:
        return netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError) as exc:
        _log.warning("ignoring %s: %s", path, exc)
        return None


def _netrc_path() -> Path | None:
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"])
    try:
        home = Path.home()
    except RuntimeError:
        return None
    return home / ("_netrc" if sys.platform == "win32" else ".netrc")
