"""Redirect rules, small GETs (manifests), retry and header parsing, disk errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from yarl import URL

from asynchub._transfer import Engine
from asynchub._transfer.assembler import Intervals
from asynchub._transfer.http import (
    Validator,
    _next_hop,
    parse_content_range,
    parse_unsatisfied_length,
)
from asynchub._transfer.retry import Backoff, parse_retry_after
from asynchub.config import RetryPolicy
from asynchub.errors import (
    DiskFullError,
    HTTPStatusError,
    IntegrityError,
    RedirectError,
    UnexpectedContentError,
)

from .harness import Behavior, Server, fast_config, file_server, split_limits
from .test_transfer_engine import blob, fetch, leftovers

__all__ = ("file_server",)


# redirects -------------------------------------------------------------------
@pytest.mark.anyio
async def test_relative_and_absolute_redirects_are_followed(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(5000)
    file_server.add("/real", data)
    file_server.redirect("/hop2", file_server.url("/real"), status=307)
    url = file_server.redirect("/hop1", "/hop2", status=301)
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert result.url == url and (tmp_path / "f").read_bytes() == data


@pytest.mark.anyio
async def test_redirect_loop_is_refused(file_server: Server, tmp_path: Path) -> None:
    file_server.redirect("/a", "/b")
    url = file_server.redirect("/b", "/a")
    with pytest.raises(RedirectError, match="more than 10 times"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", b"x"
        )
    assert file_server.stats("/a").count + file_server.stats("/b").count == 11
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x"])
async def test_redirect_to_other_schemes_is_refused(
    file_server: Server, tmp_path: Path, target: str
) -> None:
    url = file_server.redirect("/r", target)
    with pytest.raises(RedirectError, match="only fetches http"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", b"x"
        )
    assert leftovers(tmp_path) == []


def test_https_to_http_downgrade_is_refused() -> None:
    with pytest.raises(RedirectError, match="downgrade"):
        _next_hop(URL("https://a.example/x"), "http://a.example/y", {}, "u")


def test_credentials_are_dropped_only_when_the_origin_changes() -> None:
    headers = {"Authorization": "token t", "Cookie": "c", "Range": "bytes=0-"}
    _, same = _next_hop(URL("https://a.example/x"), "/y", headers, "u")
    assert same == headers
    for other in ("https://b.example/y", "https://a.example:8443/y"):
        _, moved = _next_hop(URL("https://a.example/x"), other, headers, "u")
        assert moved == {"Range": "bytes=0-"}


@pytest.mark.anyio
async def test_authorization_is_not_forwarded_to_another_host(
    file_server: Server,
) -> None:
    async with Server() as other:
        other.add("/m.json", b"{}")
        file_server.redirect("/same", "/local.json")
        file_server.add("/local.json", b"[]")
        url = file_server.redirect("/away", other.url("/m.json"))
        async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
            auth = {"Authorization": "Bearer secret"}
            away = await engine.get_bytes(url, headers=auth)
            same = await engine.get_bytes(file_server.url("/same"), headers=auth)
        assert away.body == b"{}" and same.body == b"[]"
        assert "Authorization" not in other.stats("/m.json").requests[0].headers
        local = file_server.stats("/local.json").requests[0]
        assert local.headers["Authorization"] == "Bearer secret"
        assert file_server.stats("/away").requests[0].headers["Authorization"]


# get_bytes -------------------------------------------------------------------
@pytest.mark.anyio
async def test_get_bytes_statuses(file_server: Server, tmp_path: Path) -> None:
    url = file_server.add("/m.json", b'{"a": 1}')
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        ok = await engine.get_bytes(url)
        etag = ok.headers["ETag"]
        cached = await engine.get_bytes(url, headers={"If-None-Match": etag})
        missing = await engine.get_bytes(file_server.url("/nope"))
        local = tmp_path / "m.json"
        local.write_bytes(b"[]")
        from_disk = await engine.get_bytes(local.as_uri())
        no_disk = await engine.get_bytes((tmp_path / "x").as_uri())
    assert (ok.status, ok.body, ok.url) == (200, b'{"a": 1}', url)
    assert ok.headers["etag"] == etag  # case-insensitive
    assert (cached.status, cached.body) == (304, b"")
    assert missing.status == 404
    assert (from_disk.status, from_disk.body, no_disk.status) == (200, b"[]", 404)


@pytest.mark.anyio
async def test_get_bytes_retries_then_raises(file_server: Server) -> None:
    flaky = file_server.add("/flaky", b"ok", Behavior(fail_statuses=(502, 503)))
    broken = file_server.add("/broken", b"ok", Behavior(fail_first=99, fail_status=500))
    forbidden = file_server.add("/403", b"ok", Behavior(fail_first=9, fail_status=403))
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        assert (await engine.get_bytes(flaky)).body == b"ok"
        with pytest.raises(HTTPStatusError) as info:
            await engine.get_bytes(broken)
        assert info.value.status == 500
        with pytest.raises(HTTPStatusError):
            await engine.get_bytes(forbidden)
    assert (
        file_server.stats("/broken").count
        == fast_config(read=2.0, limits=split_limits()).retry.attempts
    )
    assert file_server.stats("/403").count == 1


@pytest.mark.anyio
async def test_get_bytes_refuses_large_bodies(file_server: Server) -> None:
    known = file_server.add("/big", b"x" * 5000)
    streamed = file_server.add("/chunked", b"x" * 5000, Behavior(chunked=True))
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        for url in (known, streamed):
            with pytest.raises(UnexpectedContentError, match="more than 4096 bytes"):
                await engine.get_bytes(url, max_bytes=4096)
        assert len((await engine.get_bytes(known, max_bytes=5000)).body) == 5000


# disk ------------------------------------------------------------------------
@pytest.mark.anyio
async def test_disk_full_is_typed_and_leaves_nothing(
    file_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(300_000)
    url = file_server.add("/f", data)
    real = os.pwrite

    def full(fd: int, buf: bytes, offset: int) -> int:
        if offset > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(DiskFullError, match="no space left"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
        )
    assert leftovers(tmp_path) == []


# parsing and policy ----------------------------------------------------------
def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("\u00b2") is None and parse_retry_after("-1") is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(date, now=1445412470.0) == 10.0
    assert parse_retry_after(date, now=1445412490.0) == 0.0


def test_backoff_full_jitter_and_caps() -> None:
    policy = RetryPolicy(attempts=10, backoff_base=1.0, backoff_max=8.0)
    backoff = Backoff(policy, rng=lambda: 1.0)
    caps = []
    for failures in range(1, 7):
        backoff.failures = failures
        caps.append(backoff.delay())
    assert caps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert Backoff(policy, rng=lambda: 0.25).delay() == 0.25
    assert backoff.delay(retry_after=3.0) == 3.0
    assert Backoff(RetryPolicy(max_retry_after=5)).delay(retry_after=600) == 5.0
    ignore = RetryPolicy(respect_retry_after=False, backoff_base=0.0)
    assert Backoff(ignore).delay(retry_after=600) == 0.0


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 0-9/10") is not None
    got = parse_content_range("bytes 5-9/*")
    assert got is not None and (got.first, got.last, got.total) == (5, 9, None)
    for bad in (None, "", "bytes 5-2/10", "bytes 0-10/10", "bytes */10", "items 0-1/2"):
        assert parse_content_range(bad) is None
    assert parse_unsatisfied_length("bytes */1234") == 1234
    assert parse_unsatisfied_length("bytes 0-1/2") is None


def test_validator_never_sends_a_weak_etag() -> None:
    assert Validator('"abc"', "date").if_range() == '"abc"'
    assert Validator('W/"abc"', "date").if_range() == "date"
    assert Validator('W/"abc"', None).if_range() is None
    assert not Validator('"a"').same_as(Validator('"b"'))
    assert Validator('"a"', "d1").same_as(Validator(None, "d2")) is False
    assert Validator(None, None).same_as(Validator('"b"'))


def test_intervals_merge_and_gaps() -> None:
    spans = Intervals([(10, 20), (30, 40)])
    spans.add(20, 30)
    assert spans.as_list() == [(10, 40)]
    spans.add(50, 60)
    spans.add(0, 5)
    assert spans.as_list() == [(0, 5), (10, 40), (50, 60)]
    assert spans.gaps(70) == [(5, 10), (40, 50), (60, 70)]
    assert spans.run_end(0) == 5 and spans.run_end(5) == 5 and spans.run_end(12) == 40
    assert spans.covered() == 45
    assert spans.clip(15).as_list() == [(0, 5), (10, 15)]


@pytest.mark.anyio
async def test_retry_after_pauses_every_request_to_that_host(
    file_server: Server,
) -> None:
    import asyncio

    limited = file_server.add(
        "/a", b"a", Behavior(fail_first=1, fail_status=429, retry_after="1")
    )
    other = file_server.add("/b", b"b")
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        first = asyncio.create_task(engine.get_bytes(limited))
        await asyncio.sleep(0.2)  # the 429 has arrived; the host is paused
        second = await engine.get_bytes(other)
        assert (await first).body == b"a" and second.body == b"b"
    start = file_server.stats("/a").requests[0].at
    assert file_server.stats("/b").requests[0].at - start >= 0.95


@pytest.mark.anyio
async def test_body_longer_than_expected_is_refused(
    file_server: Server, tmp_path: Path
) -> None:
    data = blob(50_000)
    url = file_server.add("/f", data + b"garbage" * 1000, Behavior(chunked=True))
    with pytest.raises(IntegrityError, match="more than the expected 50000 bytes"):
        await fetch(
            fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
        )
    assert file_server.stats("/f").count == 1  # not retried
    assert leftovers(tmp_path) == []


READ_ONLY_CHILD = """
import asyncio, sys
from pathlib import Path
from asynchub._transfer import Engine, FileSpec
from asynchub.errors import ReadOnlyCacheError
from tests.harness import fast_config, split_limits

async def main(url, dest):
    async with Engine(fast_config(read=2.0, limits=split_limits())) as engine:
        try:
            await engine.fetch(FileSpec((url,), Path(dest), None, None))
        except ReadOnlyCacheError as exc:
            print("ReadOnlyCacheError:", exc)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.anyio
async def test_read_only_cache_fails_before_any_request(
    file_server: Server, tmp_path: Path
) -> None:
    """A read-only bind mount in a private mount namespace (chmod binds no root)."""
    import asyncio
    import shlex
    import shutil
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private read-only mount")
    folder = tmp_path / "ro"
    folder.mkdir()
    url = file_server.add("/f", b"x")
    python = shlex.join([sys.executable, "-c", READ_ONLY_CHILD, url, str(folder / "f")])
    script = (
        f"mount --bind {folder} {folder} && "
        f"mount -o remount,ro,bind {folder} && exec {python}"
    )
    child = await asyncio.create_subprocess_exec(
        "unshare",
        "-m",
        "sh",
        "-c",
        script,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    if child.returncode != 0 and b"mount" in err:
        pytest.skip(f"cannot make a private read-only mount here: {err.decode()}")
    assert b"ReadOnlyCacheError: cannot write" in out, (out, err)
    assert file_server.stats("/f").count == 0


@pytest.mark.anyio
async def test_proxy_from_environment_is_used(
    file_server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = blob(1000)
    file_server.add("/f", data)  # the "proxy" answers for any host
    monkeypatch.setenv("HTTP_PROXY", file_server.url(""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = "http://models.example.invalid/f"
    result = await fetch(
        fast_config(read=2.0, limits=split_limits()), (url,), tmp_path / "f", data
    )
    assert result.url == url and (tmp_path / "f").read_bytes() == data
    assert (
        file_server.stats("/f").requests[0].headers["Host"] == "models.example.invalid"
    )
