"""Network faults (issue 5, rows N1-N17 of the research catalogue).

Each test scripts a :class:`~tests.harness.Server` and downloads through
the public path (``AsyncHub.download_model`` against a hub served over HTTP) unless
the fault is the engine's alone (connection refused, credentials on redirects,
TLS), where ``Engine`` is driven directly. Every test asserts the file in the cache
(or its absence), what the server saw (Range, If-Range, bytes served) and the
exact error type and message.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from asynchub import AsyncHub
from asynchub._transfer import Engine, FileSpec
from asynchub.cache._layout import cache_path
from asynchub.errors import (
    HTTPStatusError,
    IncompleteTransferError,
    IntegrityError,
    NetworkError,
    RedirectError,
    RemoteFileNotFoundError,
    TLSError,
    TransferError,
    UnexpectedContentError,
)

from .harness import (
    Server,
    cache_files,
    certificate,
    chunked,
    entry,
    fast_config,
    gzip_encoded,
    html_page,
    http_date,
    ignore_range,
    lfs_pointer,
    overlong,
    redirect,
    reset_after,
    serve,
    server_tls,
    sha,
    stall,
    status,
    temp_files,
    trickle,
    truncated,
    wrong_range,
)

__all__ = ("certificate",)  # a fixture

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PATH = "vision/tiny/a.onnx"
ROUTE = f"/hub/{PATH}"
SIZE = 300_000
N = 100_000


def blob(seed: int = 1, size: int = SIZE) -> bytes:
    """Deterministic incompressible-looking bytes."""
    import random

    return random.Random(seed).randbytes(size)


DATA = blob()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        srv.hub({PATH: DATA})
        yield srv


async def download(server: Server, cache: Path, **config: object) -> Path:
    """``download_model("a")`` from the fault hub with a fast-retry config."""
    async with AsyncHub(fast_config(cache, **config)) as hub:
        path = await hub.download_model("a", repo=server.hub_url, silent=True)
    assert path is not None
    return path


def final(cache: Path, data: bytes = DATA) -> Path:
    return cache_path(cache, PATH, sha(data))


def assert_cached(cache: Path, path: Path, data: bytes = DATA) -> None:
    """The verified file, and nothing else, is in the cache."""
    assert path == final(cache, data)
    assert path.read_bytes() == data
    assert cache_files(cache) == [path.relative_to(cache).as_posix()]


def assert_nothing_cached(cache: Path) -> None:
    assert cache_files(cache) == []


def file_log(server: Server) -> list[tuple[int, str | None, str | None, int]]:
    """(status, Range, If-Range, body bytes) of every request for the model."""
    return [
        (r.status, r.header("range"), r.header("if-range"), r.sent)
        for r in server.log(ROUTE)
    ]


# N1 connection reset ---------------------------------------------------------


async def test_reset_after_n_bytes_resumes_with_range(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, reset_after(DATA, N), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert file_log(server) == [
        (200, None, None, N),
        (206, f"bytes={N}-{SIZE - 1}", '"v1"', SIZE - N),
    ]
    assert sum(r.sent for r in server.log(ROUTE)) == SIZE  # no byte fetched twice


async def test_repeated_resets_resume_each_time(
    server: Server, cache_dir: Path
) -> None:
    """Every attempt moves forward, so the retry budget (4) never runs out."""
    cuts = [50_000, 100_000, 150_000, 200_000, 250_000]
    handlers = [reset_after(DATA, 50_000) for _ in cuts]
    server.route(ROUTE, *handlers, serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    starts = [r.range_start for r in server.log(ROUTE)]
    assert starts == [None, *cuts]
    assert sum(r.sent for r in server.log(ROUTE)) == SIZE


# N2 Range ignored ------------------------------------------------------------


async def test_range_ignored_restarts_cleanly(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, reset_after(DATA, N), ignore_range(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert file_log(server) == [
        (200, None, None, N),
        (200, f"bytes={N}-{SIZE - 1}", '"v1"', SIZE),
    ]


async def test_range_ignored_and_reset_forever_is_bounded(
    server: Server, cache_dir: Path
) -> None:
    """No progress is ever possible: give up after a bounded number of requests."""
    server.route(ROUTE, reset_after(DATA, N, ranges=False))
    started = time.monotonic()
    with pytest.raises(
        IncompleteTransferError, match="broke in the middle of the body"
    ):
        await download(server, cache_dir)
    assert time.monotonic() - started < 20
    assert 4 <= len(server.log(ROUTE)) <= 4 * 6
    assert cache_files(cache_dir) == [] or all(
        f.endswith((".asynchub-part", ".asynchub-state"))
        for f in cache_files(cache_dir)
    )
    assert not final(cache_dir).exists()


# N3 bad Content-Range ----------------------------------------------------------


@pytest.mark.parametrize(
    ("content_range", "shift"),
    [
        pytest.param(None, 0, id="missing"),
        pytest.param("bytes 5-2/x", 0, id="malformed"),
        pytest.param("bytes */{total}", 0, id="unsatisfied-form-in-206"),
        pytest.param("bytes {start}-{end}/{total}", 7, id="starts-after-asked"),
        pytest.param("bytes {start}-{end}", 0, id="no-total"),
        pytest.param("items {start}-{end}/{total}", 0, id="wrong-unit"),
    ],
)
async def test_bad_content_range_is_rejected_then_restarted(
    server: Server, cache_dir: Path, content_range: str | None, shift: int
) -> None:
    server.route(
        ROUTE,
        reset_after(DATA, N),
        wrong_range(DATA, content_range, shift),
        serve(DATA),
    )
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    log = server.log(ROUTE)
    assert [r.status for r in log] == [200, 206, 200]
    assert log[1].range_start == N
    assert log[2].header("range") is None  # fresh start without Range


async def test_content_range_starting_before_asked_skips_overlap(
    server: Server, cache_dir: Path
) -> None:
    """206 ``bytes N-10-…`` for ``bytes=N-``: the 10 extra bytes are skipped."""
    honest = "bytes {start}-{end}/{total}"
    server.route(ROUTE, reset_after(DATA, N), wrong_range(DATA, honest, shift=-10))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert [r.status for r in server.log(ROUTE)] == [200, 206]


async def test_content_range_with_wrong_total_restarts(
    server: Server, cache_dir: Path
) -> None:
    bad_total = "bytes {start}-{end}/999999"
    server.route(ROUTE, reset_after(DATA, N), wrong_range(DATA, bad_total), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)


# N4 content changed between attempts -------------------------------------------


NEW = blob(seed=2)


@pytest.fixture
def changed(server: Server) -> Server:
    """The manifest describes NEW; the first attempt still got OLD bytes."""
    server.hub({PATH: NEW})
    return server


async def test_changed_etag_restarts_never_splices(
    changed: Server, cache_dir: Path
) -> None:
    changed.route(ROUTE, reset_after(DATA, N, etag='"v1"'), serve(NEW, etag='"v2"'))
    path = await download(changed, cache_dir)
    assert_cached(cache_dir, path, NEW)
    assert file_log(changed) == [
        (200, None, None, N),
        (200, f"bytes={N}-{SIZE - 1}", '"v1"', SIZE),  # If-Range failed: whole file
    ]


async def test_changed_last_modified_restarts(changed: Server, cache_dir: Path) -> None:
    old_date, new_date = http_date(1_600_000_000), http_date(1_700_000_000)
    changed.route(
        ROUTE,
        reset_after(DATA, N, etag=None, last_modified=old_date),
        serve(NEW, etag=None, last_modified=new_date),
    )
    path = await download(changed, cache_dir)
    assert_cached(cache_dir, path, NEW)
    log = changed.log(ROUTE)
    assert log[1].header("if-range") == old_date
    assert [r.status for r in log] == [200, 200]


async def test_weak_etag_is_never_sent_in_if_range(
    changed: Server, cache_dir: Path
) -> None:
    """RFC 9110 §13.1.5: weak tags cannot validate a range; the 206's new tag
    still reveals the change, so the file restarts instead of being spliced."""
    changed.route(ROUTE, reset_after(DATA, N, etag='W/"v1"'), serve(NEW, etag='W/"v2"'))
    path = await download(changed, cache_dir)
    assert_cached(cache_dir, path, NEW)
    log = changed.log(ROUTE)
    assert all(r.header("if-range") is None for r in log)
    assert log[1].range_start == N and log[1].status == 206
    assert log[2].header("range") is None and log[2].status == 200


async def test_change_without_validators_gets_one_clean_retry(
    changed: Server, cache_dir: Path
) -> None:
    changed.route(ROUTE, reset_after(DATA, N, etag=None), serve(NEW, etag=None))
    path = await download(changed, cache_dir)
    assert_cached(cache_dir, path, NEW)


async def test_change_without_validators_never_caches_a_splice(
    changed: Server, cache_dir: Path
) -> None:
    """Whatever happens, the spliced bytes are refused and nothing is cached."""
    changed.route(ROUTE, reset_after(DATA, N, etag=None), serve(NEW, etag=None))
    spliced = DATA[:N] + NEW[N:]
    try:
        path = await download(changed, cache_dir)
    except IntegrityError as err:
        assert err.expected == sha(NEW) and err.actual == sha(spliced)
        assert_nothing_cached(cache_dir)
    else:
        assert_cached(cache_dir, path, NEW)


# N5 416 on resume ----------------------------------------------------------------


async def test_416_for_a_complete_partial_finalises_it(cache_dir: Path) -> None:
    """Size unknown (chunked, no model_bytes): every byte arrived but the stream
    broke before its end; the resume gets 416 ``bytes */L`` and the file is done."""
    with Server() as srv:
        srv.hub({PATH: DATA}, entries=[_entry_without_size()])
        srv.route(ROUTE, chunked(DATA, reset=True), serve(DATA))
        path = await download(srv, cache_dir)
        assert_cached(cache_dir, path)
        log = srv.log(ROUTE)
        assert [(r.status, r.range_start) for r in log] == [(200, None), (416, SIZE)]


def _entry_without_size() -> dict[str, object]:
    item = entry("a", PATH, DATA)
    del item["metadata"]["model_bytes"]  # type: ignore[index]
    return item


async def test_416_with_another_size_restarts_and_drops_the_416_body(
    server: Server, cache_dir: Path
) -> None:
    page = b"<html>416 Range Not Satisfiable</html>"
    server.route(
        ROUTE,
        reset_after(DATA, N),
        status(416, {"Content-Range": "bytes */50"}, page),
        serve(DATA),
    )
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert page not in path.read_bytes()
    log = server.log(ROUTE)
    assert [(r.status, r.range_start) for r in log] == [
        (200, None),
        (416, N),
        (200, None),
    ]


# N6 body length ------------------------------------------------------------------


async def test_body_shorter_than_content_length_resumes(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, truncated(DATA, 1000), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert file_log(server) == [
        (200, None, None, SIZE - 1000),
        (206, f"bytes={SIZE - 1000}-{SIZE - 1}", '"v1"', 1000),
    ]


async def test_body_longer_than_content_length_is_cut_at_the_length(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, overlong(DATA, b"TRAILING GARBAGE" * 100))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)


async def test_announced_length_above_manifest_size_fails_before_the_body(
    server: Server, cache_dir: Path
) -> None:
    bigger = DATA + b"x" * 5000
    server.route(ROUTE, serve(bigger))
    with pytest.raises(IntegrityError, match=f"announces {SIZE + 5000} bytes") as exc:
        await download(server, cache_dir)
    assert exc.value.expected == sha(DATA)
    assert len(server.log(ROUTE)) == 1  # an integrity failure is not retried
    assert_nothing_cached(cache_dir)


async def test_chunked_body_without_length(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, chunked(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert file_log(server) == [(200, None, None, SIZE)]


async def test_chunked_body_longer_than_manifest_size_is_refused(
    server: Server, cache_dir: Path
) -> None:
    """No Content-Length: one byte past the manifest size is an integrity error
    (the server's file is not the manifest's), and nothing is cached."""
    server.route(ROUTE, chunked(DATA + b"EXTRA" * 1000))
    with pytest.raises(IntegrityError, match=f"sent more than the expected {SIZE}"):
        await download(server, cache_dir)
    assert len(server.log(ROUTE)) == 1
    assert_nothing_cached(cache_dir)
    assert temp_files(cache_dir) == []


# N7 Content-Encoding ------------------------------------------------------------


async def test_gzip_encoded_binary_is_refused_nothing_cached(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, gzip_encoded(DATA))
    with pytest.raises(TransferError, match="sent a gzip-encoded body") as exc:
        await download(server, cache_dir)
    assert "Accept-Encoding" in str(exc.value)
    assert {r.header("accept-encoding") for r in server.requests} == {"identity"}
    assert len(server.log(ROUTE)) == 1
    assert_nothing_cached(cache_dir)


# N8 rate limiting ----------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_seconds_is_honoured(
    server: Server, cache_dir: Path, code: int
) -> None:
    server.route(ROUTE, status(code, {"Retry-After": "1"}), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    first, second = server.log(ROUTE)
    assert 0.9 <= second.at - first.at < 3.0


async def test_retry_after_http_date_is_honoured(
    server: Server, cache_dir: Path
) -> None:
    """An HTTP-date two seconds ahead (1 s resolution): wait between ~1 and 2 s."""
    server.route(
        ROUTE, status(429, {"Retry-After": http_date(time.time() + 2)}), serve(DATA)
    )
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    first, second = server.log(ROUTE)
    assert 0.9 <= second.at - first.at < 3.5


async def test_retry_after_is_capped(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, status(429, {"Retry-After": "3600"}), serve(DATA))
    retry = fast_config(cache_dir).retry.model_copy(update={"max_retry_after": 0.2})
    started = time.monotonic()
    path = await download(server, cache_dir, retry=retry)
    assert_cached(cache_dir, path)
    assert time.monotonic() - started < 5


async def test_rate_limit_forever_gives_up_after_the_budget(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, status(429, {"Retry-After": "0"}))
    with pytest.raises(HTTPStatusError, match="answered 429") as exc:
        await download(server, cache_dir)
    assert exc.value.status == 429
    assert "rate-limiting" in str(exc.value)
    assert len(server.log(ROUTE)) == 4  # RetryPolicy.attempts
    assert_nothing_cached(cache_dir)


# N9 server errors, refused connections ------------------------------------------


async def test_burst_of_server_errors_is_retried(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, status(500), status(502), status(504), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert [r.status for r in server.log(ROUTE)] == [500, 502, 504, 200]


async def test_server_errors_mid_resume_keep_the_partial(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, reset_after(DATA, N), status(503), status(502), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    log = server.log(ROUTE)
    assert [(r.status, r.range_start) for r in log] == [
        (200, None),
        (503, N),
        (502, N),
        (206, N),
    ]
    assert sum(r.sent for r in log) == SIZE


async def test_server_errors_forever_fail_with_status(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, status(502))
    with pytest.raises(HTTPStatusError, match="answered 502") as exc:
        await download(server, cache_dir)
    assert exc.value.status == 502
    assert len(server.log(ROUTE)) == 4
    assert_nothing_cached(cache_dir)


async def test_404_is_not_retried(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, status(404, data=b"404: Not Found"))
    with pytest.raises(RemoteFileNotFoundError, match="answered 404") as exc:
        await download(server, cache_dir)
    assert "moved the file" in str(exc.value)
    assert len(server.log(ROUTE)) == 1
    assert_nothing_cached(cache_dir)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_bounded(cache_dir: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/a.onnx"
    spec = FileSpec((url,), cache_dir / "a.onnx", sha(DATA), SIZE, label="a.onnx")
    started = time.monotonic()
    async with Engine(fast_config(cache_dir)) as engine:
        with pytest.raises(NetworkError, match="could not fetch") as exc:
            await engine.fetch(spec)
    assert time.monotonic() - started < 10
    assert "network and proxy" in str(exc.value)
    assert exc.value.url == url
    assert_nothing_cached(cache_dir)


async def test_connection_closed_without_response_is_retried(
    server: Server, cache_dir: Path
) -> None:
    from .harness import close_without_response

    server.route(ROUTE, close_without_response(), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    assert len(server.log(ROUTE)) == 2


# N13 stalls and trickles -----------------------------------------------------------


async def test_stall_after_headers_times_out_and_resumes(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, stall(DATA, after=N, seconds=5), serve(DATA))
    started = time.monotonic()
    path = await download(server, cache_dir)  # read timeout 0.5 s
    assert time.monotonic() - started < 4
    assert_cached(cache_dir, path)
    assert [(r.status, r.range_start) for r in server.log(ROUTE)] == [
        (200, None),
        (206, N),
    ]


async def test_stall_forever_fails_with_timeout(
    server: Server, cache_dir: Path
) -> None:
    from asynchub.errors import TransferTimeoutError

    server.route(ROUTE, stall(DATA, after=0, seconds=30))
    started = time.monotonic()
    with pytest.raises(TransferTimeoutError, match="sent no bytes within the timeout"):
        await download(server, cache_dir)
    assert time.monotonic() - started < 8
    assert len(server.log(ROUTE)) == 4
    assert not final(cache_dir).exists()


async def test_trickle_that_stops_times_out_and_resumes(
    server: Server, cache_dir: Path
) -> None:
    """Ten bytes at 20 B/s, then silence: the read timeout fires, Range resumes."""
    server.route(ROUTE, trickle(DATA, interval=0.05, limit=10), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)
    log = server.log(ROUTE)
    assert log[0].sent == 10 and log[1].range_start == 10


async def test_endless_trickle_is_abandoned(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, trickle(DATA, interval=0.05, limit=SIZE), serve(DATA))
    with anyio.fail_after(4):
        path = await download(server, cache_dir)
    assert_cached(cache_dir, path)


# N11 / N12 wrong content ------------------------------------------------------------


async def test_lfs_pointer_is_named_nothing_cached(
    server: Server, cache_dir: Path
) -> None:
    server.route(ROUTE, lfs_pointer(sha(DATA), SIZE))
    with pytest.raises(UnexpectedContentError, match="served a Git LFS pointer") as exc:
        await download(server, cache_dir)
    assert "LFS bandwidth quota" in str(exc.value)
    assert len(server.log(ROUTE)) == 1
    assert_nothing_cached(cache_dir)


async def test_lfs_pointer_without_manifest_size_is_still_named(
    cache_dir: Path,
) -> None:
    with Server() as srv:
        srv.hub({PATH: DATA}, entries=[_entry_without_size()])
        srv.route(ROUTE, lfs_pointer(sha(DATA), SIZE))
        with pytest.raises(UnexpectedContentError, match="Git LFS pointer"):
            await download(srv, cache_dir)
    assert_nothing_cached(cache_dir)


@pytest.mark.parametrize("size", [None, SIZE], ids=["short-page", "same-size-page"])
async def test_html_page_is_named_nothing_cached(
    server: Server, cache_dir: Path, size: int | None
) -> None:
    server.route(ROUTE, html_page(size))
    with pytest.raises(UnexpectedContentError, match="served an HTML page") as exc:
        await download(server, cache_dir)
    assert "captive portal" in str(exc.value)
    assert_nothing_cached(cache_dir)


async def test_wrong_bytes_raise_integrity_error_nothing_cached(
    server: Server, cache_dir: Path
) -> None:
    wrong = blob(seed=99)
    server.route(ROUTE, serve(wrong))
    with pytest.raises(IntegrityError, match="SHA-256 mismatch") as exc:
        await download(server, cache_dir)
    assert (exc.value.expected, exc.value.actual) == (sha(DATA), sha(wrong))
    assert isinstance(exc.value, AssertionError)  # onnx.hub compatibility
    assert exc.value.path == str(final(cache_dir))
    assert_nothing_cached(cache_dir)
    assert temp_files(cache_dir) == []


# N15 / N16 redirects ---------------------------------------------------------------


async def test_redirect_loop_is_bounded(server: Server, cache_dir: Path) -> None:
    server.route(ROUTE, redirect("/loop/b"))
    server.route("/loop/b", redirect(ROUTE))
    with pytest.raises(RedirectError, match="redirected more than 10 times"):
        await download(server, cache_dir)
    hops = len(server.log(ROUTE)) + len(server.log("/loop/b"))
    assert hops == 11  # not retried: a loop does not heal
    assert_nothing_cached(cache_dir)


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/a.onnx", "data:,hello"]
)
async def test_redirect_to_non_http_is_refused(
    server: Server, cache_dir: Path, target: str
) -> None:
    server.route(ROUTE, redirect(target))
    with pytest.raises(RedirectError, match="only fetches http"):
        await download(server, cache_dir)
    assert len(server.log(ROUTE)) == 1
    assert_nothing_cached(cache_dir)


async def test_redirect_to_another_host_drops_credentials(cache_dir: Path) -> None:
    """127.0.0.1 and localhost are different origins: Authorization stays behind,
    while a same-origin redirect keeps it (so the test can tell the difference)."""
    with Server() as home, Server() as other:
        other.route("/x", serve(b"payload"))
        home.route("/same", redirect("/moved"))
        home.route("/moved", serve(b"payload"))
        home.route("/away", redirect(f"http://localhost:{other.port}/x"))
        secret = {"Authorization": "Bearer s3cret", "Cookie": "session=1"}
        async with Engine(fast_config(cache_dir)) as engine:
            same = await engine.get_bytes(home.url("/same"), headers=dict(secret))
            away = await engine.get_bytes(home.url("/away"), headers=dict(secret))
        assert same.body == away.body == b"payload"
        assert home.log("/moved")[0].header("authorization") == "Bearer s3cret"
        assert home.log("/away")[0].header("authorization") == "Bearer s3cret"
        (hop,) = other.log("/x")
        assert hop.header("authorization") is None
        assert hop.header("cookie") is None


async def test_netrc_credentials_stay_with_their_host(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trust_env`` sends ~/.netrc credentials to the host they name, and only
    there: a model redirected to another host gets no Authorization."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Server() as home, Server() as other:
        home.hub({PATH: DATA})
        other.route("/cdn/a.onnx", serve(DATA))
        home.route(ROUTE, redirect(f"http://localhost:{other.port}/cdn/a.onnx"))
        path = await download(home, cache_dir)
        assert_cached(cache_dir, path)
        assert home.log(ROUTE)[0].header("authorization") is not None
        assert other.log("/cdn/a.onnx")[0].header("authorization") is None


# N14 TLS ---------------------------------------------------------------------------


async def test_untrusted_certificate_fails_fast_without_retry(
    cache_dir: Path, certificate: tuple[Path, Path]
) -> None:
    with Server(server_tls(*certificate)) as srv:
        srv.route("/a.onnx", serve(DATA))
        spec = FileSpec((srv.url("/a.onnx"),), cache_dir / "a.onnx", sha(DATA), SIZE)
        async with Engine(fast_config(cache_dir)) as engine:
            with pytest.raises(TLSError, match="TLS verification failed") as exc:
                await engine.fetch(spec)
        assert "never falls back to an unverified connection" in str(exc.value)
        assert srv.handshakes == 1  # no retry, no insecure second try
        assert srv.requests == []  # not one byte of HTTP went over it
    assert_nothing_cached(cache_dir)


_DOWNGRADE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import HubConfig
    from asynchub.errors import RedirectError

    async def main(good, bad, dest):
        async with Engine(HubConfig(cache_dir=dest)) as engine:
            ok = await engine.fetch(FileSpec((good,), Path(dest) / "ok.bin"))
            print("OK", ok.size)
            try:
                await engine.fetch(FileSpec((bad,), Path(dest) / "bad.bin"))
            except RedirectError as err:
                print("REFUSED", err)

    asyncio.run(main(*sys.argv[1:4]))
    """
)


async def test_https_to_http_downgrade_is_refused(
    cache_dir: Path, certificate: tuple[Path, Path]
) -> None:
    """Run in a subprocess that trusts the test CA through SSL_CERT_FILE (aiohttp
    builds its verified SSL context at import): https→https works, https→http is
    refused, and the http server never sees a request."""
    with Server(server_tls(*certificate)) as tls, Server() as plain:
        plain.route("/a.onnx", serve(DATA))
        tls.route("/good", redirect("/real"))
        tls.route("/real", serve(b"x" * 10))
        tls.route("/bad", redirect(plain.url("/a.onnx")))
        env = {**os.environ, "SSL_CERT_FILE": str(certificate[0])}
        args = [tls.url("/good"), tls.url("/bad"), str(cache_dir)]
        proc = await anyio.run_process(
            [sys.executable, "-c", _DOWNGRADE_SCRIPT, *args], env=env, check=False
        )
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        assert "OK 10" in out
        assert "REFUSED" in out and "refusing the downgrade" in out
        assert plain.requests == []
    assert cache_files(cache_dir) == ["ok.bin"]


async def test_hostile_retry_after_header_does_not_crash(
    server: Server, cache_dir: Path
) -> None:
    utf8_superscript_two = "\u00b2".encode().decode("latin-1")  # wire bytes C2 B2
    server.route(ROUTE, status(503, {"Retry-After": utf8_superscript_two}), serve(DATA))
    path = await download(server, cache_dir)
    assert_cached(cache_dir, path)


# N17 proxies ---------------------------------------------------------------------


@pytest.mark.parametrize("bypass", [False, True], ids=["via-proxy", "no-proxy"])
async def test_proxy_environment_is_honoured(
    server: Server,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    bypass: bool,
) -> None:
    """``trust_env``: HTTP_PROXY carries every request (absolute-form targets) unless
    NO_PROXY names the host; proxy credentials go to the proxy only."""
    with Server() as proxy:
        for path, script in server.routes.items():
            proxy.route(server.base + path, *script)
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{proxy.port}")
        if bypass:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        path = await download(server, cache_dir)
        assert_cached(cache_dir, path)
        via_proxy = [r for r in proxy.requests if r.path.startswith("http://")]
        if bypass:
            assert via_proxy == [] and len(server.requests) == 2
        else:
            assert server.requests == []
            assert [r.path for r in via_proxy] == [
                server.url("/hub/ONNX_HUB_MANIFEST.json"),
                server.url(ROUTE),
            ]
            assert all(r.header("proxy-authorization") for r in via_proxy)
            assert all(r.header("authorization") is None for r in via_proxy)
