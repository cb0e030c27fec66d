"""The engine's network half: the aiohttp session, :class:`~._http.Http` and the
:class:`~._context.Context` every download borrows, opened on the engine's first
request.

Kept apart from :mod:`.engine` because importing aiohttp costs about 110 ms: a warm
``hub.load`` (one manifest ``304``, see :mod:`.revalidate`, then a cached model)
never opens it.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from ..config import HubConfig, RetryPolicy
from ..errors import TransferError, UnexpectedContentError
from .context import Context
from .deadline import FirstAnswer, until_answered
from .failures import is_retryable, status_error
from .http import BodyChunks, Http, make_session, parse_content_range
from .job import FileJob
from .local import too_large
from .netenv import NetEnv, bearer_tokens
from .retry import Backoff, parse_retry_after
from .spec import BytesResponse, FileResult, FileSpec, ProgressEvent

__all__ = ("Network",)

_BYTES_STATUSES = frozenset({200, 206, 304, 404, 410})


class Network:
    """One engine's session and download context; :meth:`close` when done."""

    def __init__(
        self,
        config: HubConfig,
        env: NetEnv,
        executor: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self.session = make_session(config)
        limits, retry = config.limits, config.retry
        http = Http(
            self.session,
            limits.max_redirects,
            retry.max_retry_after,
            env,
            bearer=bearer_tokens(config),
            offline=config.offline,
        )
        self.ctx = Context(config, http, executor)

    async def close(self) -> None:
        await self.session.close()

    async def fetch(
        self, spec: FileSpec, emit: Callable[[ProgressEvent], None]
    ) -> FileResult:
        """Download one file to its verified destination (:class:`~._job.FileJob`)."""
        return await FileJob(self.ctx, spec, emit).run()

    async def get_bytes(
        self, url: str, headers: Mapping[str, str] | None, limit: int
    ) -> BytesResponse:
        """GET a small body into memory, with retries (see ``Engine.get_bytes``)."""
        answered = FirstAnswer()
        once = functools.partial(self._get_once, url, headers, limit, answered)
        work = _retrying(once, answered, self.config.retry)
        timeouts = self.config.timeouts
        return await until_answered(work, answered, timeouts, url, lambda: url)

    async def _get_once(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        limit: int,
        answered: FirstAnswer,
    ) -> BytesResponse:
        async with self.ctx.http.get(url, headers) as response:
            answered.set()
            if response.status not in _BYTES_STATUSES:
                after = parse_retry_after(response.headers.get("Retry-After"))
                raise status_error(response.status, response.reason, url, after)
            if response.status == 206:
                _check_partial(response, url, headers)
            body = await _read_limited(response, url, limit)
            return BytesResponse(
                response.status, response.headers, body, str(response.url)
            )


async def _retrying(
    once: Callable[[], Awaitable[BytesResponse]],
    answered: FirstAnswer,
    policy: RetryPolicy,
) -> BytesResponse:
    """``once()`` until it answers, backing off between retryable failures."""
    backoff = Backoff(policy)
    while True:
        try:
            return await once()
        except TransferError as err:
            answered.failed(err)
            if not is_retryable(err, backoff.policy):
                raise
            await backoff.wait_or_raise(err)


def _check_partial(
    response: aiohttp.ClientResponse, url: str, headers: Mapping[str, str] | None
) -> None:
    """A 206 counts only as the answer to a Range we asked, with a valid range."""
    asked = any(k.lower() == "range" for k in (headers or {}))
    if not asked or parse_content_range(response.headers.get("Content-Range")) is None:
        raise UnexpectedContentError(
            f"{url} answered 206 with no valid Content-Range for the range asked",
            url=url,
            hint="the server's partial answers are broken; report it to its owner",
        )


async def _read_limited(
    response: aiohttp.ClientResponse, url: str, limit: int
) -> bytes:
    if (response.content_length or 0) > limit:
        raise too_large(url, limit)
    body = bytearray()
    async for chunk in BodyChunks(response, url):
        body += chunk
        if len(body) > limit:
            raise too_large(url, limit)
    return bytes(body)
