"""The asynchub error hierarchy.

Every error asynchub raises on purpose is an :class:`AsyncHubError`; its message says
what happened and its ``hint`` says what to do next. Third-party errors (aiohttp,
``OSError``) are translated at one boundary each (``_transfer/failures.py`` for the
network, ``_fs/os_errors.py`` for the disk), so callers never need to catch aiohttp
or ``OSError`` types. Every class has a hint (a class default, which a raise site may
replace with a more precise one).

Where the old ``onnx.hub`` raised ``AssertionError`` (manifest not found, model not
found, opset not found, SHA-256 mismatch), the new class also subclasses
``AssertionError`` so that old ``except AssertionError`` code keeps working::

    AsyncHubError(Exception)
    ├── ConfigError(ValueError)
    ├── RepoSpecError(ValueError)
    ├── UntrustedRepoError(PermissionError)
    ├── ManifestError
    │   ├── ManifestNotFoundError(AssertionError)
    │   └── ManifestParseError(ValueError)
    │       └── UnsafePathError
    ├── ModelNotFoundError(AssertionError, LookupError)
    │   └── OpsetNotFoundError
    ├── TransferError                    .url
    │   ├── HTTPStatusError              .status
    │   │   ├── RetryableStatusError     .retry_after (408/429/5xx, re-raised when
    │   │   │                            retries run out)
    │   │   ├── RemoteFileNotFoundError(FileNotFoundError)
    │   │   │   └── ArchiveUnavailableError (no source serves a test-data archive)
    │   │   └── HubAuthError(PermissionError) (gated/private repo, 401/403)
    │   ├── NetworkError(ConnectionError)
    │   │   ├── TransferTimeoutError(TimeoutError)
    │   │   ├── TLSError                 (certificate or TLS failure, never retried)
    │   │   └── HostNotFoundError        (the name does not resolve, not retried)
    │   ├── IncompleteTransferError      (body shorter or longer than announced)
    │   ├── RedirectError                (loop, downgrade, non-http scheme)
    │   └── UnexpectedContentError       (LFS pointer or HTML page in place of a file)
    ├── IntegrityError(AssertionError)   .path .expected .actual
    ├── ArchiveError(ValueError)         (hostile or oversized tarball)
    ├── CompositeError                   (load_composite_model)
    │   ├── CompositeLoadError(RuntimeError)  (a model was declined at the prompt)
    │   └── CompositeMergeError(ValueError)   (the two models cannot be merged)
    ├── CacheError(OSError)
    │   ├── DiskFullError
    │   ├── ReadOnlyCacheError(PermissionError)
    │   └── OfflineCacheMissError(FileNotFoundError)
    └── MirrorError                      .failures
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = (
    "ArchiveError",
    "ArchiveUnavailableError",
    "AsyncHubError",
    "CacheError",
    "CompositeError",
    "CompositeLoadError",
    "CompositeMergeError",
    "ConfigError",
    "DiskFullError",
    "HTTPStatusError",
    "HostNotFoundError",
    "HubAuthError",
    "IncompleteTransferError",
    "IntegrityError",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestParseError",
    "MirrorError",
    "ModelNotFoundError",
    "NetworkError",
    "OfflineCacheMissError",
    "OpsetNotFoundError",
    "ReadOnlyCacheError",
    "RedirectError",
    "RemoteFileNotFoundError",
    "RepoSpecError",
    "RetryableStatusError",
    "TLSError",
    "TransferError",
    "TransferTimeoutError",
    "UnexpectedContentError",
    "UnsafePathError",
    "UntrustedRepoError",
)


class AsyncHubError(Exception):
    """Base of every error asynchub raises on purpose.

    ``hint`` is one sentence saying what to do next; ``str(error)`` includes it.
    """

    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self._full())

    def _full(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(AsyncHubError, ValueError):
    """Raised when a configuration value or environment variable is invalid."""

    default_hint = (
        "fix the value (see 'asynchub --help' and the ASYNCHUB_* variables) or unset it"
    )


class RepoSpecError(AsyncHubError, ValueError):
    """Raised when a ``repo`` string is neither owner/name[:ref], a URL nor a folder."""

    default_hint = (
        "use 'owner/name[:ref]', an http(s):// URL, a file:// URL or a local folder"
    )


class UntrustedRepoError(AsyncHubError, PermissionError):
    """Raised when a repo is not trusted and the caller did not opt in."""

    default_hint = (
        "pass silent=True if you trust it, or add it with 'asynchub trust add REPO'"
    )


class ManifestError(AsyncHubError):
    """Raised when a manifest cannot be obtained or used."""

    default_hint = "check the repo and its manifest, or report it to its maintainers"


class ManifestNotFoundError(ManifestError, AssertionError):
    """Raised when no ``ONNX_HUB_MANIFEST.json`` exists at the repo."""

    default_hint = "check the repo name and ref, or your network and proxy settings"


class ManifestParseError(ManifestError, ValueError):
    """Raised when a manifest is not valid JSON or an entry is malformed."""

    default_hint = "fix the manifest, or report it to the repo's maintainers"


class UnsafePathError(ManifestParseError):
    """Raised when a manifest path could escape the cache or mirror folder."""

    default_hint = "the manifest is malformed or hostile; nothing was written to disk"


class ModelNotFoundError(AsyncHubError, AssertionError, LookupError):
    """Raised when no manifest entry has the requested model name."""

    default_hint = "run 'asynchub list' or hub.list_models() to see the names"


class OpsetNotFoundError(ModelNotFoundError):
    """Raised when the model exists but not with the requested opset."""

    default_hint = "pass one of the valid opsets, or opset=None for the newest"

    def __init__(
        self, message: str, *, valid: Sequence[int] = (), hint: str | None = None
    ) -> None:
        self.valid = list(valid)  # the opsets the model has, ascending
        super().__init__(message, hint=hint)


class TransferError(AsyncHubError):
    """Raised when a file could not be transferred."""

    default_hint: str | None = (
        "check the URL and your network, then run again to resume"
    )

    def __init__(
        self, message: str, *, url: str | None = None, hint: str | None = None
    ):
        self.url = url
        super().__init__(message, hint=hint)


class HTTPStatusError(TransferError):
    """Raised when a server answers with a status that is not retried (or ran out).

    Without a hint of its own (the raise site's or the class default), the hint
    follows the status: rate-limited, refused, failing.
    """

    default_hint: str | None = None  # from the status, unless a subclass has one

    def __init__(
        self,
        message: str,
        *,
        status: int,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        if hint is None and self.default_hint is None:
            hint = _status_hint(status)
        super().__init__(message, url=url, hint=hint)


def _status_hint(status: int) -> str:
    """What to do about an HTTP status that is not a usable answer."""
    if status == 429:
        return "the server is rate-limiting; wait a few minutes and run again"
    if status in (401, 403):
        return "the file is private, or the host is rate-limiting (403); check access"
    if status >= 500:
        return "the server is failing; run again later to resume"
    return "the server refused the request; check the URL"


class RetryableStatusError(HTTPStatusError):
    """A 408/429/5xx answer, retried with backoff; ``retry_after`` in seconds.

    Re-raised as it is when the retries run out.
    """

    def __init__(
        self, message: str, *, status: int, url: str, retry_after: float | None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, url=url, hint=_status_hint(status))


class RemoteFileNotFoundError(HTTPStatusError, FileNotFoundError):
    """Raised on ``404``/``410``: the file is not at any of its URLs."""

    default_hint = "the repo may have moved the file; check the repo and its ref"


class ArchiveUnavailableError(RemoteFileNotFoundError):
    """Raised when every source answers 404 for a model's test-data archive.

    The official zoo's ``.tar.gz`` archives are not on its Hugging Face mirror, and
    GitHub's LFS media stopped serving them; the ``.onnx`` models are still served.
    """

    default_hint = (
        "the archive is not on the Hugging Face mirror and GitHub LFS stopped serving "
        "it; load() still works for the model alone"
    )


class HubAuthError(HTTPStatusError, PermissionError):
    """Raised when a Hugging Face repo is gated or private and no token (or a token
    without access) was sent. The token itself never appears in the message."""

    default_hint = (
        "log in with 'hf auth login' (or 'huggingface-cli login'), or set HF_TOKEN; "
        "for a gated repo, also accept its conditions on its web page"
    )


class NetworkError(TransferError, ConnectionError):
    """Raised when connections keep failing after every retry."""

    default_hint = (
        "check your network and proxy settings, then run again to resume; "
        "ASYNCHUB_OFFLINE=1 works from the cache alone"
    )


class TransferTimeoutError(NetworkError, TimeoutError):
    """Raised when a server stalls longer than the read timeout on every retry."""

    default_hint = (
        "the server is too slow; raise ASYNCHUB_READ_TIMEOUT or run again to resume"
    )


class TLSError(NetworkError):
    """A certificate or TLS failure: never retried, never retried insecurely."""

    default_hint = (
        "check the server certificate and the system CA store; asynchub never "
        "falls back to an unverified connection"
    )

    @classmethod
    def failed_for(cls, url: str, exc: BaseException) -> TLSError:
        """The error for ``exc``, a TLS failure while connecting to ``url``."""
        return cls(f"TLS verification failed for {url}: {exc}", url=url)


class HostNotFoundError(NetworkError):
    """The host name does not resolve (not a temporary DNS failure): not retried,
    so an offline machine falls back to cached or shipped copies at once."""

    default_hint = "check the host name, your DNS and proxy settings, or go offline"


class IncompleteTransferError(TransferError):
    """Raised when a body is shorter or longer than announced after every retry."""

    default_hint = "run again to resume; the bytes received so far are kept"


class RedirectError(TransferError):
    """Raised on a redirect loop, an https→http downgrade or a non-http target."""

    default_hint = "the server redirected somewhere asynchub will not follow"


class UnexpectedContentError(TransferError):
    """Raised when a server returns a Git LFS pointer or an HTML page for a file."""

    default_hint = (
        "the server sent a placeholder, not the file: check the repo's file URLs "
        "(Git LFS media must be served)"
    )


class IntegrityError(AsyncHubError, AssertionError):
    """Raised when a file's SHA-256 or size does not match the manifest.

    The unverified bytes are deleted; nothing is left under the final name.
    """

    default_hint = (
        "the file on the server differs from the manifest; retry with "
        "force_reload=True, and report it to the repo if it persists"
    )

    def __init__(
        self,
        message: str,
        *,
        path: str,
        expected: str | None,
        actual: str | None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(message, hint=hint)


class ArchiveError(AsyncHubError, ValueError):
    """Raised when a tarball holds a member asynchub refuses, or exceeds a limit."""

    default_hint = "the archive is malformed or hostile; nothing was extracted"


class CompositeError(AsyncHubError):
    """Raised when ``load_composite_model`` cannot produce the merged model."""

    default_hint = "load the two models with load() and merge them with onnx.compose"


class CompositeLoadError(CompositeError, RuntimeError):
    """Raised when one of the two models was not loaded (its repo was declined at
    the trust prompt); onnx.hub raised RuntimeError here."""

    default_hint = (
        "answer yes at the prompt, pass silent=True if you trust the repo, or add "
        "it with 'asynchub trust add REPO'"
    )


class CompositeMergeError(CompositeError, ValueError):
    """Raised when the two models cannot be merged: a non-default domain at two
    versions, an opset conversion that fails, or graphs that do not connect;
    onnx.hub raised ValueError for the first."""

    default_hint = (
        "convert the models to matching opsets yourself (onnx.version_converter) "
        "and merge them with onnx.compose.merge_models"
    )


class CacheError(AsyncHubError, OSError):
    """Raised when the cache or mirror folder cannot be written or read."""

    default_hint = "check the folder's permissions and free space"


class DiskFullError(CacheError):
    """Raised when the disk is full (ENOSPC, EDQUOT); the partial file is removed."""

    default_hint = "free some space or choose another folder with hub.set_dir()"


class ReadOnlyCacheError(CacheError, PermissionError):
    """Raised when the cache folder is read-only or not writable by this user."""

    default_hint = (
        "choose a writable folder with hub.set_dir() or ONNX_HOME, "
        "or use ASYNCHUB_OFFLINE=1 with a prepared cache"
    )


class OfflineCacheMissError(CacheError, FileNotFoundError):
    """Raised in offline mode when a needed file or manifest is not cached."""

    default_hint = "run once with network access, or unset ASYNCHUB_OFFLINE"


class MirrorError(AsyncHubError):
    """Raised by ``MirrorReport.raise_for_failures()`` when any file failed."""

    default_hint = "see the failures listed; run again to fetch only what is missing"

    def __init__(
        self, message: str, *, failures: Sequence[object], hint: str | None = None
    ):
        self.failures = list(failures)
        super().__init__(message, hint=hint)
