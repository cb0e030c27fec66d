"""Explicit, frozen configuration for a hub client.

``HubConfig()`` holds built-in defaults; ``HubConfig.from_env()`` reads the
environment *when called* (never at import), so tests and services can set variables
at any time. Change a value with ``config.model_copy(update={...})``.

Environment variables read by :meth:`HubConfig.from_env`:

=============================  ====================================================
``ONNX_HOME``                  cache root is ``$ONNX_HOME/hub``
``XDG_CACHE_HOME``             else ``$XDG_CACHE_HOME/onnx/hub``
``ASYNCHUB_OFFLINE``           ``1``: never touch the network
``ASYNCHUB_TRUST``             ``compat`` (default) or ``strict``
``ASYNCHUB_TRUSTED_REPOS``     comma-separated repos to trust besides onnx/models:main
``ASYNCHUB_GITHUB_RAW``        base of raw files (GitHub Enterprise, mirrors, tests)
``ASYNCHUB_GITHUB_MEDIA``      base of Git LFS media files
``ASYNCHUB_HF_ENDPOINT``       Hugging Face endpoint (``hf://`` repos, the official
                               zoo's files)
``HF_ENDPOINT``                alias of ``ASYNCHUB_HF_ENDPOINT`` (which wins)
``HF_TOKEN``                   Hugging Face token, sent as ``Bearer`` to the
                               endpoint's host only (never to the CDN it redirects to)
``HUGGING_FACE_HUB_TOKEN``     older name of ``HF_TOKEN`` (``HF_TOKEN`` wins)
``HF_TOKEN_PATH``              token file; default ``$HF_HOME/token``
``HF_HOME``                    default ``$XDG_CACHE_HOME/huggingface`` or
                               ``~/.cache/huggingface`` (only its ``token`` is read)
``HF_HUB_OFFLINE``             ``1``: offline, like ``ASYNCHUB_OFFLINE``
``ASYNCHUB_GITHUB_API``        GitHub API used to pin a ref to its commit
``ASYNCHUB_PIN_REFS``          ``0`` to use GitHub refs as given (no commit pinning)
``ASYNCHUB_CONNECT_TIMEOUT``   seconds to open a connection
``ASYNCHUB_READ_TIMEOUT``      seconds a read may stall before it is retried
``ASYNCHUB_FIRST_BYTE_TIMEOUT`` seconds a file or manifest may wait for its server's
                               first answer, connects and retries included
``ASYNCHUB_RETRY_BUDGET``      seconds one stream may keep retrying without a byte
``ASYNCHUB_MAX_CONNECTIONS``   total connection cap
``ASYNCHUB_MIN_SPLIT_SECONDS`` seconds a range in flight must have left for an idle
                               connection to take half of it (0: whenever it can)
``ASYNCHUB_FSYNC``             ``0`` to skip fsync before the atomic rename
``ASYNCHUB_EVENT_LOOP``        ``asyncio`` (default) or ``uvloop`` (if installed): the
                               CLI's event loop (``asynchub/_loops.py``)
``ASYNCHUB_PROGRESS``          ``0``: no progress bars from the module API
``HF_HUB_DISABLE_PROGRESS_BARS`` ``1``: the same (huggingface_hub's convention)
=============================  ====================================================

Read at call time elsewhere: ``XDG_CONFIG_HOME`` (the trusted-repos list lives in
``$XDG_CONFIG_HOME/asynchub/``, else ``~/.config/asynchub/``; see ``_trust.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .errors import ConfigError

__all__ = (
    "ArchiveLimits",
    "HubConfig",
    "Limits",
    "RetryPolicy",
    "Timeouts",
    "default_cache_dir",
    "hf_token_path",
)

MiB = 1024 * 1024
OFFICIAL_REPO = "onnx/models:main"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Timeouts(_Frozen):
    """Timeouts in seconds; there is deliberately no total timeout.

    A total timeout would kill a large download that is making progress (aiohttp's
    default is 300 s); wrap a call in ``anyio.fail_after`` if you want a deadline.

    ``first_byte`` bounds how long one file (or manifest) waits for its server to
    answer at all, across connects, retries and mirror URLs: on a black-holed
    network (SYNs dropped, or a port that accepts and never answers) a call fails
    with TransferTimeoutError after ``first_byte`` seconds, and a "still waiting"
    warning is logged every ``notice`` seconds (at most ``first_byte / 4``) until
    then. Once any answer came,
    ``read`` (stalls) and :class:`RetryPolicy` (``attempts``, ``budget``) apply.
    """

    connect: float = Field(default=15.0, gt=0)
    read: float = Field(default=30.0, gt=0)
    first_byte: float = Field(default=60.0, gt=0)
    notice: float = Field(default=10.0, gt=0)


class RetryPolicy(_Frozen):
    """Exponential backoff with full jitter; ``attempts`` resets when bytes arrive.

    ``budget`` bounds the same stream in time: it stops retrying once ``budget``
    seconds passed since its start or its last byte (a wait that would end past it,
    such as a long ``Retry-After``, is not started), whatever ``attempts`` says.
    """

    attempts: int = Field(default=6, ge=1)
    budget: float = Field(default=120.0, gt=0)
    backoff_base: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    respect_retry_after: bool = True
    max_retry_after: float = Field(default=300.0, ge=0)


class Limits(_Frozen):
    """Concurrency and splitting limits shared by every download of one client.

    The defaults were chosen with ``benchmarks/run.py`` (see benchmarks/RESULTS.md).
    ``max_files`` is above the per-host connection cap on purpose: while one file
    opens or verifies and renames (worker-thread work), another already uses its
    connection (a zoo mirror: 5.89 s with 16, 5.65 s with 32, on 16 connections).
    A split file opens up to ``min(max_parts_per_file, max_connections_per_host)``
    connections, fewer for a host that refused extra ones during the run (see
    ``_transfer/hostconn.py``). When a split file's queue is empty, an idle
    connection takes the second half of the range in flight that would finish last,
    if both halves are at least ``min_split_size`` and it has at least
    ``min_split_seconds`` left at its measured rate (``_transfer/parts.py``): the
    file's connections then finish together instead of the last part running alone,
    and a link fast enough to drain a part in less than that keeps its connections
    (a split closes the cut request's connection). ``coalesce_seconds``: a body of
    1 MiB or more is read in pieces of about that much time at its measured rate
    (Linux, ``SO_RCVLOWAT``; 0 reads as the bytes come): fewer trips through the
    event loop, less CPU per GiB (``_transfer/lowwater.py``).
    """

    max_connections: int = Field(default=32, ge=1)
    max_connections_per_host: int = Field(default=16, ge=1)
    max_files: int = Field(default=32, ge=1)
    part_size: int = Field(default=16 * MiB, ge=64 * 1024)
    split_threshold: int = Field(default=24 * MiB, ge=0)
    max_parts_per_file: int = Field(default=16, ge=1)
    min_split_size: int = Field(default=1 * MiB, ge=64 * 1024)
    min_split_seconds: float = Field(default=0.3, ge=0)
    coalesce_seconds: float = Field(default=0.02, ge=0, le=1)
    max_redirects: int = Field(default=10, ge=0)
    max_manifest_bytes: int = Field(default=64 * MiB, ge=1024)


class ArchiveLimits(_Frozen):
    """Limits on tarball extraction that stop decompression bombs."""

    max_total_bytes: int = Field(default=16 * 1024 * MiB, ge=1)
    max_members: int = Field(default=100_000, ge=1)
    max_ratio: float = Field(default=200.0, gt=1)


class HubConfig(_Frozen):
    """Everything a client needs besides the repo: where, how fast, how patient."""

    cache_dir: Path | None = None
    offline: bool = False
    trust: Literal["compat", "strict"] = "compat"
    trusted_repos: tuple[str, ...] = ()
    github_raw: str = "https://raw.githubusercontent.com"
    github_media: str = "https://media.githubusercontent.com/media"
    hf_endpoint: str = "https://huggingface.co"
    hf_token: SecretStr | None = None
    github_api: str = "https://api.github.com"
    pin_refs: bool = True
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    limits: Limits = Limits()
    archive: ArchiveLimits = ArchiveLimits()
    fsync: bool = True
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    progress_bars: bool = True  # the module API's bars for slow downloads
    user_agent: str = "asynchub/0.1"

    def resolved_cache_dir(self) -> Path:
        """The cache root: ``cache_dir`` if set, else the onnx.hub default."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> HubConfig:
        """Build a config from environment variables read now; ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {**_env_values(env), **overrides}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, env)) from exc


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The old onnx.hub cache root, computed from the environment at call time.

    ``$ONNX_HOME/hub``, else ``$XDG_CACHE_HOME/onnx/hub`` (what onnx.hub's code did;
    its documentation said ``$XDG_CACHE_HOME/hub``, which was wrong), else
    ``~/.cache/onnx/hub``.
    """
    env = os.environ if environ is None else environ
    if env.get("ONNX_HOME"):
        return Path(env["ONNX_HOME"]) / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "onnx" / "hub"
    return Path(os.path.expanduser("~")) / ".cache" / "onnx" / "hub"


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


_PLAIN = {  # variable → top-level field, the value taken as text
    "ASYNCHUB_GITHUB_RAW": "github_raw",
    "ASYNCHUB_GITHUB_MEDIA": "github_media",
    "ASYNCHUB_HF_ENDPOINT": "hf_endpoint",
    "ASYNCHUB_GITHUB_API": "github_api",
    "ASYNCHUB_TRUST": "trust",
    "ASYNCHUB_EVENT_LOOP": "event_loop",
}

_NESTED = {  # variable → (group, field), validated by the group's model
    "ASYNCHUB_CONNECT_TIMEOUT": ("timeouts", "connect"),
    "ASYNCHUB_READ_TIMEOUT": ("timeouts", "read"),
    "ASYNCHUB_FIRST_BYTE_TIMEOUT": ("timeouts", "first_byte"),
    "ASYNCHUB_RETRY_BUDGET": ("retry", "budget"),
    "ASYNCHUB_MAX_CONNECTIONS": ("limits", "max_connections"),
    "ASYNCHUB_MIN_SPLIT_SECONDS": ("limits", "min_split_seconds"),
    "ASYNCHUB_COALESCE_SECONDS": ("limits", "coalesce_seconds"),
}


def _env_values(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for var, field in _PLAIN.items():
        if env.get(var):
            values[field] = env[var].rstrip("/")
    if env.get("ASYNCHUB_OFFLINE"):
        values["offline"] = _truthy(env["ASYNCHUB_OFFLINE"])
    if env.get("ASYNCHUB_FSYNC"):
        values["fsync"] = _truthy(env["ASYNCHUB_FSYNC"])
    if env.get("HF_HUB_DISABLE_PROGRESS_BARS"):
        values["progress_bars"] = not _truthy(env["HF_HUB_DISABLE_PROGRESS_BARS"])
    if env.get("ASYNCHUB_PROGRESS"):  # asynchub's own switch wins
        values["progress_bars"] = _truthy(env["ASYNCHUB_PROGRESS"])
    if env.get("ASYNCHUB_PIN_REFS"):
        values["pin_refs"] = _truthy(env["ASYNCHUB_PIN_REFS"])
    if env.get("ASYNCHUB_TRUSTED_REPOS"):
        repos = (r.strip() for r in env["ASYNCHUB_TRUSTED_REPOS"].split(","))
        values["trusted_repos"] = tuple(r for r in repos if r)
    values.update(_env_nested(env))
    values.update(_env_hf(env))
    return values


def _env_hf(env: Mapping[str, str]) -> dict[str, object]:
    """Hugging Face's own variables, as ``huggingface_hub`` reads them; the
    ``ASYNCHUB_`` names win where both exist."""
    values: dict[str, object] = {}
    if env.get("HF_ENDPOINT") and not env.get("ASYNCHUB_HF_ENDPOINT"):
        values["hf_endpoint"] = env["HF_ENDPOINT"].rstrip("/")
    if _truthy(env.get("HF_HUB_OFFLINE", "")) and not env.get("ASYNCHUB_OFFLINE"):
        values["offline"] = True
    token = _hf_token(env)
    if token:
        values["hf_token"] = SecretStr(token)
    return values


def _hf_token(env: Mapping[str, str]) -> str | None:
    """``HF_TOKEN``, else ``HUGGING_FACE_HUB_TOKEN``, else the token file that
    ``huggingface_hub``'s login writes (``$HF_TOKEN_PATH`` or ``$HF_HOME/token``)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if env.get(name, "").strip():
            return env[name].strip()
    try:
        with open(hf_token_path(env), encoding="utf-8") as file:
            return file.read(4096).strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def hf_token_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``huggingface_hub`` keeps the login token, computed now."""
    env = os.environ if environ is None else environ
    if env.get("HF_TOKEN_PATH"):
        return Path(os.path.expanduser(env["HF_TOKEN_PATH"]))
    if env.get("HF_HOME"):
        home = Path(os.path.expanduser(env["HF_HOME"]))
    else:
        cache = env.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        home = Path(cache) / "huggingface"
    return home / "token"


_VARIABLE_OF: dict[tuple[str, ...], str] = {
    **{(field,): var for var, field in _PLAIN.items()},
    **{path: var for var, path in _NESTED.items()},
}
"""Field path → the variable that sets it, for :func:`_explain`."""


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    """One line per wrong value, naming the variable that set it (when one did)."""
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        var = _VARIABLE_OF.get(loc)
        if var and env.get(var):
            where = f"{var}={env[var]!r}"
        else:
            where = ".".join(loc) or "value"
        problems.append(f"{where}: {error['msg'].lower()}")
    return "invalid asynchub configuration: " + "; ".join(problems)


def _env_nested(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, dict[str, str]] = {}
    for var, (group, field) in _NESTED.items():
        if env.get(var):
            values.setdefault(group, {})[field] = env[var]
    return dict(values)
