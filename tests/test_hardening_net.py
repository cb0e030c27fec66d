"""Hardening round 2, network/manifest/server half of issue 9 (items 3-6, 8, 9).

Every test talks to real sockets on 127.0.0.1 (fault servers, ``asynchub serve``,
raw sockets that accept and stay silent) or runs the real CLI in a subprocess.
TESTING.md's "Hardening round 2" section lists each test with the outcome before
and after its fix.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from asynchub import AsyncHub
from asynchub.errors import ManifestParseError
from asynchub.manifest import MAX_FILE_BYTES, Manifest

from .harness import (
    Ctx,
    Server,
    entry,
    fast_config,
    redirect,
    serve,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PATH = "vision/tiny/a.onnx"
ROUTE = f"/hub/{PATH}"
DATA = random.Random(9).randbytes(50_000)


async def _download(server: Server, cache: Path, **config: object) -> Path:
    async with AsyncHub(fast_config(cache, **config)) as hub:
        path = await hub.download_model("a", repo=server.hub_url, silent=True)
    assert path is not None
    return path


# item 6: netrc credentials only to their origin ------------------------------------


async def test_netrc_credentials_not_sent_to_another_port_of_the_same_host(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any local user can listen on a port of 127.0.0.1: a redirect from
    127.0.0.1:P1 to 127.0.0.1:P2 must not carry P1's netrc credentials."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Server() as home, Server() as other:
        home.hub({PATH: DATA})
        other.route("/cdn/a.onnx", serve(DATA))
        home.route(ROUTE, redirect(f"http://127.0.0.1:{other.port}/cdn/a.onnx"))
        path = await _download(home, cache_dir)
        assert path.read_bytes() == DATA
        assert home.log(ROUTE)[0].header("authorization") == "Basic YWxpY2U6czNjcmV0"
        assert other.log("/cdn/a.onnx")[0].header("authorization") is None


async def test_netrc_credentials_come_back_when_a_redirect_returns_to_origin(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoped to the origin, not to the first hop: P1 -> P2 -> P1 authenticates
    at P1 again (the origin they were added for), never at P2."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Server() as home, Server() as other:
        home.hub({PATH: DATA})
        home.route("/back/a.onnx", serve(DATA))
        other.route("/hop", redirect(f"{home.base}/back/a.onnx"))
        home.route(ROUTE, redirect(f"{other.base}/hop"))
        await _download(home, cache_dir)
        assert other.log("/hop")[0].header("authorization") is None
        assert home.log("/back/a.onnx")[0].header("authorization") is not None


# item 3: sizes claimed by the manifest or the server ---------------------------------

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` from the repo root with ``env`` added."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=full,
    )


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "asynchub", *args], **env)


@pytest.mark.parametrize("field", ["model_bytes", "model_with_data_bytes"])
@pytest.mark.parametrize("value", [10**400, MAX_FILE_BYTES + 1, 10**14])
def test_manifest_sizes_are_bounded_and_name_the_entry(field: str, value: int) -> None:
    item = entry("huge", "a/huge.onnx", DATA, metadata={field: value})
    if field == "model_with_data_bytes":
        item["metadata"]["model_with_data_path"] = "a/huge.tar.gz"
    text = json.dumps([entry("ok", "a/ok.onnx", DATA), item])
    with pytest.raises(ManifestParseError, match=rf"'huge'.*{field}.*1 TiB"):
        Manifest.parse(text)


def test_manifest_size_at_the_maximum_is_accepted() -> None:
    item = entry("big", "a/big.onnx", DATA, metadata={"model_bytes": MAX_FILE_BYTES})
    (parsed,) = Manifest.parse(json.dumps([item]))
    assert parsed.metadata.model_bytes == MAX_FILE_BYTES


@pytest.mark.parametrize("command", ["list", "mirror"])
def test_cli_huge_size_is_a_clear_error_not_overflow(
    command: str, cache_dir: Path, tmp_path: Path
) -> None:
    with Server() as server:
        item = entry("a", PATH, DATA, metadata={"model_bytes": 10**400})
        repo = server.hub({PATH: DATA}, entries=[item])
        args = [command, "--repo", repo]
        if command == "mirror":
            args.append(str(tmp_path / "out"))
        done = _cli(*args, ONNX_HOME=str(cache_dir.parent))
    assert done.returncode != 0
    assert "OverflowError" not in done.stderr and "Traceback" not in done.stderr
    assert "model_bytes" in done.stderr and "1 TiB" in done.stderr


_CLAIM_SCRIPT = textwrap.dedent(
    """
    import asyncio, resource, sys, time
    from pathlib import Path
    from asynchub._transfer import Engine, FileSpec
    from asynchub.errors import AsyncHubError
    from tests.harness import Server, fast_config, serve

    CLAIM = int(sys.argv[2])
    DATA = bytes(50_000)

    async def lying(ctx):  # a 206 whose Content-Range claims a CLAIM-byte file
        await ctx.head(206, {"Content-Range": f"bytes 0-16777215/{CLAIM}",
                             "Content-Length": "16777216", "ETag": '"v1"'})
        await ctx.body(DATA)

    def rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    async def main(mode: str, cache: Path) -> None:
        with Server() as srv:
            srv.route("/f", lying if mode == "server" else serve(DATA))
            config = fast_config(cache)
            async with Engine(config) as engine:
                base, start = rss(), time.monotonic()
                spec = FileSpec((srv.url("/f"),), cache / "f.bin", None, CLAIM)
                try:
                    await engine.fetch(spec)
                except AsyncHubError as err:
                    print("ERR", type(err).__name__)
                print("MIB", rss() - base, "S", round(time.monotonic() - start, 2))

    asyncio.run(main(sys.argv[1], Path(sys.argv[3])))
    """
)


@pytest.mark.parametrize("mode", ["manifest", "server"])
def test_claimed_size_does_not_allocate(mode: str, tmp_path: Path) -> None:
    """A 10**14-byte claim (by the caller's spec, or by the server's Content-Range)
    on a 50 KB file: memory and time do not depend on it (before: 915 MiB)."""
    claim = str(10**14)
    done = _run(["-c", _CLAIM_SCRIPT, mode, claim, str(tmp_path)])
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    assert words[0] == "ERR", done.stdout
    grew, seconds = int(words[words.index("MIB") + 1]), float(words[-1])
    assert grew < 40, done.stdout
    assert seconds < 20, done.stdout


@pytest.mark.parametrize("seed", range(20))
def test_lazy_parts_cut_exactly_like_the_eager_plan(seed: int) -> None:
    from asynchub._transfer.parts import Parts
    from asynchub._transfer.parts import count_parts as _count_parts
    from asynchub._transfer.parts import split_ranges as _split_ranges

    rng = random.Random(seed)
    edges = sorted(rng.sample(range(1, 10_000), 2 * rng.randint(0, 6)))
    gaps = list(zip(edges[::2], edges[1::2], strict=True))
    part = rng.randint(1, 700)
    parts = Parts(part)
    parts.extend(gaps)
    got = []
    while (seg := parts.pop()) is not None:
        got.append((seg.start, seg.end))
    assert got == _split_ranges(gaps, part)
    assert _count_parts(gaps, part) == len(got)


# item 4: asynchub serve's If-Range and Range edge cases ------------------------------

SERVED = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / "m.onnx").write_bytes(SERVED)
    old = 1_600_000_000  # Last-Modified well in the past: a strong-ish date
    os.utime(root / "m.onnx", (old, old))
    (root / "ONNX_HUB_MANIFEST.json").write_text("[]")
    return root


async def _ask(
    url: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, Mapping[str, str], bytes]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        body = await response.read()
        return response.status, response.headers.copy(), body


async def _validators(url: str) -> tuple[str, str]:
    _, headers, _ = await _ask(url, {})
    return headers["ETag"], headers["Last-Modified"]


_RANGE = "bytes=100-199"


@pytest.mark.parametrize(
    ("if_range", "expect"),
    [
        ("{etag}", 206),  # the current strong ETag
        ('"0-0"', 200),  # another (older) ETag
        ("W/{etag}", 200),  # weak: never for If-Range
        ("garbage", 200),
        ("{lm}", 206),  # exactly the Last-Modified date
        ("Wed, 21 Oct 2099 07:28:00 GMT", 200),  # later date: not an exact match
        ("Sun, 06 Nov 1994 08:49:37 GMT", 200),  # earlier date
    ],
)
async def test_serve_if_range_follows_rfc9110(
    served: Path, if_range: str, expect: int
) -> None:
    from asynchub.hosting._serve import serving

    async with serving(served) as base:
        url = base + "m.onnx"
        etag, lm = await _validators(url)
        value = if_range.format(etag=etag, lm=lm)
        status, headers, body = await _ask(url, {"Range": _RANGE, "If-Range": value})
    assert status == expect
    if expect == 206:
        assert body == SERVED[100:200]
        assert headers["Content-Range"] == f"bytes 100-199/{len(SERVED)}"
    else:
        assert body == SERVED and "Content-Range" not in headers


@pytest.mark.parametrize(
    ("range_value", "expect", "body"),
    [
        ("bytes=-0", 416, b""),
        ("bytes=0-9,20-29", 200, SERVED),  # several ranges: the whole file
        ("items=0-9", 200, SERVED),  # unknown unit: ignored
        ("bytes=9-3", 200, SERVED),  # invalid spec: ignored (RFC 9110 §14.2)
        ("bytes=" + "9" * 5000 + "-", 200, SERVED),  # no int() of 5000 digits
        ("bytes=-100", 206, SERVED[-100:]),
        ("BYTES=10-19", 206, SERVED[10:20]),  # the unit is case-insensitive
        (f"bytes={len(SERVED)}-", 416, b""),
    ],
)
async def test_serve_range_edge_cases(
    served: Path, range_value: str, expect: int, body: bytes
) -> None:
    from asynchub.hosting._serve import serving

    async with serving(served) as base:
        status, headers, got = await _ask(base + "m.onnx", {"Range": range_value})
    assert (status, got) == (expect, body)
    if expect == 416:
        assert headers["Content-Range"] == f"bytes */{len(SERVED)}"


async def test_serve_head_with_range_has_the_headers_of_the_200(served: Path) -> None:
    from asynchub.hosting._serve import serving

    async with serving(served) as base:
        url = base + "m.onnx"
        plain = await _ask(url, {}, "HEAD")
        ranged = await _ask(url, {"Range": "bytes=0-9"}, "HEAD")
    assert ranged[0] == plain[0] == 200
    assert ranged[1]["Content-Length"] == str(len(SERVED))
    assert "Content-Range" not in ranged[1]


def test_serve_with_curl_never_splices_after_the_file_changed(
    served: Path, tmp_path: Path
) -> None:
    """curl resumes with the old ETag after the file changed: it must get the new
    file whole (200), not a 206 tail of the new content after its old head."""
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    import anyio

    from asynchub.hosting._serve import serving

    async def main() -> tuple[str, str]:
        async with serving(served) as base:
            url = base + "m.onnx"
            etag, _ = await _validators(url)
            (served / "m.onnx").write_bytes(b"N" * len(SERVED))  # a new version
            out = tmp_path / "curl.out"

            def run() -> str:
                done = subprocess.run(
                    [
                        curl,
                        "-s",
                        "-o",
                        str(out),
                        "-w",
                        "%{http_code}",
                        "-H",
                        "Range: bytes=100-",
                        "-H",
                        f"If-Range: {etag}",
                        url,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                )
                return done.stdout

            code = await anyio.to_thread.run_sync(run)
            return code, out.read_bytes().decode()

    code, body = anyio.run(main)
    assert code == "200"
    assert body == "N" * len(SERVED)


# item 5: terminal injection through manifest and network text -----------------------

_HOSTILE = [
    "evil[/bar]",
    "[link=file:///etc/passwd]click[/link]",
    "\x1b]0;pwned\x07\x1b[2J",
    "\u202eevil-bidi",
    "\x9b31mc1",
    ":warning:",
    "[bold red]loud",
]
_RAW_CONTROL = ("\x1b]", "\x1b[2J", "\x07", "\u202e", "\x9b", "\x1b]8;")


def _assert_inert(text: str) -> None:
    for bad in _RAW_CONTROL:
        assert bad not in text, (bad, text)
    assert "⚠" not in text  # rich emoji codes are text too


def _hostile_hub(server: Server, **meta: object) -> str:
    ports = {"inputs": [{"name": "x\x1b[2J[/x]", "type": "t\u202e", "shape": [1]}]}
    item = entry("a", PATH, DATA, metadata={"tags": _HOSTILE, "io_ports": ports})
    return server.hub({PATH: DATA}, entries=[item])


@pytest.mark.parametrize("color", ["", "1"])
@pytest.mark.parametrize("command", ["list", "info"])
def test_cli_renders_manifest_text_as_inert_plain_text(
    command: str, color: str, cache_dir: Path
) -> None:
    """Markup, emoji codes, OSC/CSI sequences, C1 and BIDI controls in tags and io
    port names are printed as visible text (before: ``evil[/bar]`` exited 1 with
    MarkupError; with a forced terminal the link became a hyperlink)."""
    with Server() as server:
        repo = _hostile_hub(server)
        args = [command, "--repo", repo] + (["a"] if command == "info" else [])
        env = {"ONNX_HOME": str(cache_dir.parent)}
        if color:
            env["FORCE_COLOR"] = "1"
        done = _cli(*args, **env)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    _assert_inert(out)
    if command == "list":
        assert "evil[/bar]" in out and "[link=file:///etc/passwd]click" in out
        assert "\\x1b]0;pwned" in out and "\\u202e" in out and ":warning:" in out
    else:
        assert "x\\x1b[2J[/x]" in out


def test_cli_refuses_a_model_name_outside_the_rule(cache_dir: Path) -> None:
    with Server() as server:
        item = entry("evil\x1b]0;pwned\x07[/bar]", PATH, DATA)
        repo = server.hub({PATH: DATA}, entries=[item])
        done = _cli("list", "--repo", repo, ONNX_HOME=str(cache_dir.parent))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert "model name" in done.stderr
    _assert_inert(done.stdout + done.stderr)


async def _hostile_reason(ctx: Ctx) -> None:
    ctx.log.status = 403
    await ctx.raw(
        b"HTTP/1.1 403 \x1b]0;pwned\x07\x1b[2J[/x]\xc2\x9b\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_cli_escapes_text_the_server_sends_in_errors(cache_dir: Path) -> None:
    """A reason phrase is network text too: it reaches the error line escaped."""
    hostile = _hostile_reason
    with Server() as server:
        repo = server.hub({PATH: DATA})
        server.route(ROUTE, hostile)
        done = _cli(
            "download", "a", "--yes", "--repo", repo, ONNX_HOME=str(cache_dir.parent)
        )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "\\x1b]0;pwned" in done.stderr
    _assert_inert(done.stdout + done.stderr)


@pytest.mark.parametrize(
    ("manifest", "entries"),
    [  # the official manifest today (bundled) and its oldest version
        ("asynchub/data/ONNX_HUB_MANIFEST.json", 184),
        ("tests/data/onnx_hub_manifest_oldest.json", 120),
    ],
)
def test_every_real_model_name_follows_the_rule(manifest: str, entries: int) -> None:
    parsed = Manifest.parse((REPO / manifest).read_bytes())
    assert len(parsed) == entries


def test_mirror_report_and_progress_lines_stay_inert(
    cache_dir: Path, tmp_path: Path
) -> None:
    with Server() as server:
        repo = server.hub({PATH: DATA})
        server.route(ROUTE, _hostile_reason)
        report = tmp_path / "report.json"
        done = _cli(
            "mirror",
            str(tmp_path / "out"),
            "--yes",
            "--repo",
            repo,
            "--report",
            str(report),
            ONNX_HOME=str(cache_dir.parent),
        )
    assert done.returncode != 0
    _assert_inert(done.stdout + done.stderr)
    text = report.read_bytes().decode("utf-8")
    _assert_inert(text)
    assert "pwned" in text and json.loads(text)["failed"]


# item 8: a black-holed network fails in a bounded time, and says what it waits for ---


class BlackHole:
    """A port on 127.0.0.1 that never answers HTTP.

    ``silent``: listens (backlog 64) and never accepts: the kernel completes the
    handshake, the request is sent, and no byte ever comes back.
    ``dropping``: listens with backlog 0 and its queue filled by one connection of
    our own, so the kernel drops every further SYN: connecting never finishes.
    """

    def __init__(self, kind: str) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0 if kind == "dropping" else 64)
        self.port = self.sock.getsockname()[1]
        self.filler: socket.socket | None = None
        if kind == "dropping":
            self.filler = socket.create_connection(("127.0.0.1", self.port), 2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.filler is not None:
            self.filler.close()
        self.sock.close()


@pytest.fixture(params=["silent", "dropping"])
def black_hole(request: pytest.FixtureRequest) -> object:
    hole = BlackHole(request.param)
    yield hole
    hole.close()


def _deadline_config(cache: Path, **timeouts: float) -> object:
    from asynchub.config import RetryPolicy, Timeouts

    values = {"connect": 0.3, "read": 0.3, "first_byte": 1.5, "notice": 0.4}
    values.update(timeouts)
    return fast_config(
        cache,
        timeouts=Timeouts(**values),
        retry=RetryPolicy(attempts=1000, backoff_base=0.05, backoff_max=0.1),
    )


async def test_a_file_from_a_black_hole_fails_within_the_first_byte_deadline(
    black_hole: BlackHole, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1000 attempts allowed, yet the file fails when its first-byte deadline
    (1.5 s) passes, with 'still waiting' warnings every 0.4 s meanwhile."""
    import logging
    import time

    from asynchub._transfer import Engine, FileSpec
    from asynchub.errors import TransferTimeoutError

    spec = FileSpec((f"{black_hole.base}/a.onnx",), cache_dir / "a.onnx", label="a")
    caplog.set_level(logging.WARNING, "asynchub")
    start = time.monotonic()
    async with Engine(_deadline_config(cache_dir)) as engine:  # type: ignore[arg-type]
        with pytest.raises(TransferTimeoutError, match=r"first byte.*1\.5 s") as err:
            await engine.fetch(spec)
    elapsed = time.monotonic() - start
    assert 1.4 <= elapsed < 3.0
    assert "ASYNCHUB_FIRST_BYTE_TIMEOUT" in (err.value.hint or "")
    notes = [
        r.getMessage() for r in caplog.records if "still waiting" in r.getMessage()
    ]
    assert 2 <= len(notes) <= 5
    assert f"127.0.0.1:{black_hole.port}" in notes[0] and "'a'" in notes[0]


async def test_a_caller_cancel_while_waiting_stays_a_cancel(
    black_hole: BlackHole, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The deadline's timer cancels the task it watches; a cancel from the caller
    before the deadline must come out as a cancel, not as the deadline's error,
    and leave no timer behind (no note after it)."""
    import asyncio
    import logging

    from asynchub._transfer import Engine, FileSpec

    spec = FileSpec((f"{black_hole.base}/a.onnx",), cache_dir / "a.onnx", label="a")
    caplog.set_level(logging.WARNING, "asynchub")
    async with Engine(_deadline_config(cache_dir, notice=0.2)) as engine:  # type: ignore[arg-type]
        task = asyncio.ensure_future(engine.fetch(spec))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notes = sum("still waiting" in r.getMessage() for r in caplog.records)
        await asyncio.sleep(0.6)  # a leaked timer would note twice more here
    assert notes >= 1
    assert sum("still waiting" in r.getMessage() for r in caplog.records) == notes
    assert not (cache_dir / "a.onnx").exists()


async def test_after_the_deadline_the_same_task_goes_on_normally() -> None:
    """The deadline's own cancel of the watched task is taken back: the task that
    caught the error can still wait, and (Python 3.11+) use a timeout of its own."""
    import asyncio
    import sys

    from asynchub._transfer.deadline import FirstAnswer, until_answered
    from asynchub.config import Timeouts
    from asynchub.errors import TransferTimeoutError

    cleaned: list[str] = []

    async def never_answers() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("work")  # the work unwinds before the error comes out

    timeouts = Timeouts(first_byte=0.3, notice=0.1)
    with pytest.raises(TransferTimeoutError, match=r"0\.3 s"):
        await until_answered(
            never_answers(), FirstAnswer(), timeouts, "a", lambda: "http://h:1/a"
        )
    assert cleaned == ["work"]
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0
        async with asyncio.timeout(1.0):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)  # not cancelled again


async def test_a_manifest_from_a_black_hole_fails_within_the_deadline(
    black_hole: BlackHole, cache_dir: Path
) -> None:
    import time

    from asynchub.errors import AsyncHubError

    start = time.monotonic()
    async with AsyncHub(_deadline_config(cache_dir)) as hub:  # type: ignore[arg-type]
        with pytest.raises(AsyncHubError):
            await hub.list_models(repo=black_hole.base + "/hub/")
    assert time.monotonic() - start < 3.0


async def test_retry_budget_in_time_stops_a_stream_of_failures(
    cache_dir: Path,
) -> None:
    """A server that answers 503 at once, forever: 1000 attempts are allowed, the
    time budget (1 s) stops it."""
    import time

    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import RetryPolicy
    from asynchub.errors import HTTPStatusError

    from .harness import status

    with Server() as server:
        server.route("/a.onnx", status(503))
        spec = FileSpec((server.url("/a.onnx"),), cache_dir / "a.onnx")
        retry = RetryPolicy(
            attempts=1000, backoff_base=0.05, backoff_max=0.05, budget=1.0
        )
        start = time.monotonic()
        async with Engine(fast_config(cache_dir, retry=retry)) as engine:
            with pytest.raises(HTTPStatusError):
                await engine.fetch(spec)
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.5
    assert 5 < len(server.requests) < 200


async def test_connect_timeout_hint_names_the_connect_setting(cache_dir: Path) -> None:
    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import RetryPolicy
    from asynchub.errors import TransferTimeoutError

    hole = BlackHole("dropping")
    try:
        spec = FileSpec((f"{hole.base}/a.onnx",), cache_dir / "a.onnx")
        config = fast_config(cache_dir, retry=RetryPolicy(attempts=1))
        config = config.model_copy(
            update={"timeouts": config.timeouts.model_copy(update={"connect": 0.3})}
        )
        async with Engine(config) as engine:
            with pytest.raises(TransferTimeoutError, match="connect") as err:
                await engine.fetch(spec)
    finally:
        hole.close()
    assert "ASYNCHUB_CONNECT_TIMEOUT" in (err.value.hint or "")
    assert "ASYNCHUB_READ_TIMEOUT" not in (err.value.hint or "")


def test_hub_load_on_a_black_holed_network_is_bounded(
    black_hole: BlackHole, cache_dir: Path
) -> None:
    """The issue's case through the public API in a subprocess: every endpoint is
    a black hole; ``hub.load('mnist')`` fails within the configured bound and the
    CLI-less caller still sees the 'still waiting' warnings on stderr."""
    import time

    env = {
        "ONNX_HOME": str(cache_dir.parent),
        "ASYNCHUB_CONNECT_TIMEOUT": "0.3",
        "ASYNCHUB_READ_TIMEOUT": "0.3",
        "ASYNCHUB_FIRST_BYTE_TIMEOUT": "1.5",
        "ASYNCHUB_RETRY_BUDGET": "1.0",
    }
    for name in ("GITHUB_RAW", "GITHUB_MEDIA", "HF_ENDPOINT", "GITHUB_API"):
        env[f"ASYNCHUB_{name}"] = black_hole.base
    code = (
        "import logging; logging.basicConfig()\n"
        "from asynchub import hub\n"
        "try:\n    hub.load('mnist')\n"
        "except Exception as e:\n    print('ERR', type(e).__name__, e)\n"
    )
    start = time.monotonic()
    done = _run(["-c", code], **env)
    elapsed = time.monotonic() - start
    assert "ERR" in done.stdout, done.stdout + done.stderr
    assert elapsed < 12, (elapsed, done.stdout, done.stderr)
    assert "still waiting" in done.stderr


# item 9: offline mode: zero requests from every public function and CLI command ---


def _offline_hub(server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub with a model and test data; every endpoint points at ``server`` so
    any request, for the official zoo too, is counted there."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("a/model.onnx")
        info.size = len(DATA)
        tar.addfile(info, io.BytesIO(DATA))
    tarball = buf.getvalue()
    tar_path = "vision/tiny/a.tar.gz"
    meta = {
        "model_with_data_path": tar_path,
        "model_with_data_sha": __import__("hashlib").sha256(tarball).hexdigest(),
        "model_with_data_bytes": len(tarball),
    }
    item = entry("a", PATH, DATA, metadata=meta)
    repo = server.hub({PATH: DATA, tar_path: tarball}, entries=[item])
    for name in ("GITHUB_RAW", "GITHUB_MEDIA", "HF_ENDPOINT", "GITHUB_API"):
        monkeypatch.setenv(f"ASYNCHUB_{name}", server.base)
    return repo


def _offline_calls(repo: str, dest: Path) -> dict[str, object]:
    """Every public network-capable call, by name, as a zero-argument callable."""
    from asynchub import hub
    from asynchub.mirror import download, mirror

    return {
        "hub.list_models": lambda: hub.list_models(repo),
        "hub.list_models(official)": lambda: hub.list_models(),
        "hub.get_model_info": lambda: hub.get_model_info("a", repo),
        "hub.load": lambda: hub.load("a", repo, silent=True),
        "hub.load(official)": lambda: hub.load("mnist"),
        "hub.download_model_with_test_data": lambda: hub.download_model_with_test_data(
            "a", repo, silent=True
        ),
        "hub.load_composite_model": lambda: hub.load_composite_model(
            "a", "a", network_repo=repo, preprocessing_repo=repo, silent=True
        ),
        "mirror.mirror": lambda: mirror(dest, repo, silent=True),
        "mirror.mirror(official)": lambda: mirror(dest / "o", latest_only=True),
        "mirror.download": lambda: download(repo, silent=True),
        "mirror.download(official)": lambda: download(models=["mnist"]),
    }


async def _async_calls(repo: str, dest: Path) -> dict[str, object]:
    """AsyncHub's methods and the engine itself, as coroutine factories."""
    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import HubConfig

    config = HubConfig.from_env()

    async def on_hub(method: str, *args: object, **kwargs: object) -> object:
        async with AsyncHub(config) as client:
            return await getattr(client, method)(*args, **kwargs)

    async def engine_fetch() -> object:
        async with Engine(config) as engine:
            return await engine.fetch(FileSpec((repo + PATH,), dest / "x.onnx"))

    async def engine_get() -> object:
        async with Engine(config) as engine:
            return await engine.get_bytes(repo + "ONNX_HUB_MANIFEST.json")

    return {
        "AsyncHub.manifest": lambda: on_hub("manifest", repo),
        "AsyncHub.resolve": lambda: on_hub("resolve", repo),
        "AsyncHub.list_models": lambda: on_hub("list_models", repo),
        "AsyncHub.get_model_info": lambda: on_hub("get_model_info", "a", repo),
        "AsyncHub.download_model": lambda: on_hub(
            "download_model", "a", repo, silent=True
        ),
        "AsyncHub.load": lambda: on_hub("load", "a", repo, silent=True),
        "AsyncHub.download_model_with_test_data": lambda: on_hub(
            "download_model_with_test_data", "a", repo, silent=True
        ),
        "AsyncHub.load_composite_model": lambda: on_hub(
            "load_composite_model", "a", "a", repo, repo, silent=True
        ),
        "Engine.fetch": engine_fetch,
        "Engine.get_bytes": engine_get,
    }


def _kind(err: BaseException) -> str:
    """The asynchub error's class name; a task group's group (the composite
    loader runs two loads at once) is unwrapped to its first error."""
    from asynchub.errors import AsyncHubError

    while (inner := getattr(err, "exceptions", None)) is not None:
        err = inner[0]
    assert isinstance(err, AsyncHubError), repr(err)
    return type(err).__name__


def test_offline_mode_sends_zero_requests_from_every_public_function(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is cached online once; then with ASYNCHUB_OFFLINE=1 every call
    either answers from the cache/shipped copy or fails clearly, and the counting
    server sees not one request (before: download and mirror fetched files)."""
    import anyio

    from asynchub import _defaults, hub

    with Server() as server:
        repo = _offline_hub(server, monkeypatch)
        hub.list_models(repo)  # online: caches the manifest
        assert server.requests
        server.requests.clear()
        monkeypatch.setenv("ASYNCHUB_OFFLINE", "1")
        _defaults.reset()
        outcomes: dict[str, str] = {}
        for name, call in _offline_calls(repo, tmp_path / "m").items():
            try:
                call()  # type: ignore[operator]
                outcomes[name] = "ok"
            except Exception as err:  # noqa: BLE001 - classified below
                outcomes[name] = _kind(err)
            assert server.requests == [], (name, server.requests[:1])

        async def run_async() -> None:
            for name, make in (await _async_calls(repo, tmp_path)).items():
                try:
                    await make()  # type: ignore[operator]
                    outcomes[name] = "ok"
                except Exception as err:  # noqa: BLE001 - classified below
                    outcomes[name] = _kind(err)
                assert server.requests == [], (name, server.requests[:1])

        anyio.run(run_async)
        _defaults.reset()
    assert len(outcomes) == 21
    assert outcomes["hub.list_models"] == "ok"  # the cached manifest
    assert outcomes["hub.load"] == "OfflineCacheMissError"
    assert outcomes["Engine.fetch"] == "OfflineCacheMissError"
    assert outcomes["mirror.mirror"] in ("MirrorError", "ok")


_OFFLINE_COMMANDS = {
    "list": ["list", "--repo", "{repo}"],
    "list(official)": ["list"],
    "info": ["info", "a", "--repo", "{repo}"],
    "download": ["download", "a", "--yes", "--repo", "{repo}"],
    "download(official)": ["download", "mnist"],
    "download --all --with-data": [
        "download",
        "--all",
        "--with-data",
        "--yes",
        "--repo",
        "{repo}",
    ],
    "mirror": ["mirror", "{dest}", "--yes", "--repo", "{repo}"],
    "mirror(official)": ["mirror", "{dest}/o", "--latest-only"],
    "cache ls": ["cache", "ls"],
    "cache verify": ["cache", "verify"],
    "cache prune": ["cache", "prune"],
    "cache du": ["cache", "du"],
    "trust list": ["trust", "list"],
}


def test_offline_mode_sends_zero_requests_from_every_cli_command(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` and ``demo`` are left out: one is a server, the other runs its own
    hub on 127.0.0.1 with its own settings by design; ``manifest build`` reads a
    local folder only."""
    from asynchub import _defaults, hub

    with Server() as server:
        repo = _offline_hub(server, monkeypatch)
        hub.list_models(repo)
        _defaults.reset()
        server.requests.clear()
        env = {k: v for k, v in os.environ.items() if k.startswith("ASYNCHUB_")}
        env.update(ASYNCHUB_OFFLINE="1", ONNX_HOME=str(cache_dir.parent))
        codes = {}
        for name, args in _OFFLINE_COMMANDS.items():
            filled = [a.format(repo=repo, dest=tmp_path / "m") for a in args]
            done = _cli(*filled, **env)
            assert "Traceback" not in done.stderr, (name, done.stderr)
            assert server.requests == [], (name, server.requests[:1], done.stderr)
            codes[name] = done.returncode
    assert codes["list"] == 0 and codes["cache ls"] == 0
    assert codes["download"] != 0  # not cached: a clear offline error


# attacking the mechanisms again: sizes, Retry-After, redirects, floods, long lines --


def _raw(head: bytes, body: bytes = b"") -> object:
    """A handler that writes ``head`` (status line and headers) and ``body``."""

    async def handler(ctx: Ctx) -> None:
        ctx.log.status = int(head.split(b" ", 2)[1])
        await ctx.raw(head + b"\r\nConnection: close\r\n\r\n" + body)

    return handler


_DIGITS = b"9" * 5000  # int() of more than 4300 digits raises ValueError


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/" + _DIGITS,
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-" + _DIGITS + b"/20",
        b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */" + _DIGITS,
        b"HTTP/1.1 200 OK\r\nContent-Length: " + _DIGITS,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000000000000000",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000)),
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000,
        b"HTTP/1.1 503 " + b"r" * 200_000,
        b"HTTP/1.1 503 Busy\r\nRetry-After: " + _DIGITS,
        b"HTTP/1.1 503 Busy\r\nRetry-After: -30",
        b"HTTP/1.1 503 Busy\r\nRetry-After: Fri, 31 Dec 99999 23:59:59 GMT",
    ],
    ids=[
        "cr-total-5000-digits",
        "cr-last-5000-digits",
        "416-total-5000-digits",
        "content-length-5000-digits",
        "content-length-1e30",
        "content-length-negative",
        "5000-headers",
        "200kb-header-line",
        "200kb-reason",
        "retry-after-5000-digits",
        "retry-after-negative",
        "retry-after-year-99999",
    ],
)
async def test_hostile_response_heads_fail_clearly_and_quickly(
    head: bytes, cache_dir: Path
) -> None:
    """Each hostile head gives an asynchub error (no ValueError, OverflowError or
    aiohttp exception escapes), in bounded time and memory, with nothing cached."""
    import time
    import tracemalloc

    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import RetryPolicy
    from asynchub.errors import AsyncHubError

    with Server() as server:
        server.route("/f", _raw(head, b"x" * 10))  # type: ignore[arg-type]
        spec = FileSpec((server.url("/f"),), cache_dir / "f.bin", None, 20)
        tracemalloc.start()
        start = time.monotonic()
        try:
            retry = RetryPolicy(
                attempts=4, backoff_base=0.01, backoff_max=0.05, max_retry_after=1.0
            )
            async with Engine(fast_config(cache_dir, retry=retry)) as engine:
                with pytest.raises(AsyncHubError):
                    await engine.fetch(spec)
                with pytest.raises(AsyncHubError):
                    await engine.get_bytes(server.url("/f"), max_bytes=1024)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        elapsed = time.monotonic() - start
    assert elapsed < 15
    assert peak < 64 * 2**20
    assert not (cache_dir / "f.bin").exists()


@pytest.mark.parametrize(
    "value", ["-1", "1e9", "9" * 5000, "inf", "nan", "\x00", "Fri, 31 Dec 99999 1"]
)
def test_retry_after_garbage_never_raises_and_is_capped(value: str) -> None:
    from asynchub._transfer.retry import Backoff, parse_retry_after
    from asynchub.config import RetryPolicy

    parsed = parse_retry_after(value)
    assert parsed is None or parsed >= 0
    delay = Backoff(RetryPolicy(max_retry_after=5)).delay(parsed)
    assert 0 <= delay <= 5


async def test_redirect_loop_between_two_servers_stops_at_the_cap(
    cache_dir: Path,
) -> None:
    from asynchub._transfer import Engine, FileSpec
    from asynchub.config import Limits
    from asynchub.errors import RedirectError

    with Server() as a, Server() as b:
        a.route("/loop", redirect(b.url("/loop")))
        b.route("/loop", redirect(a.url("/loop")))
        spec = FileSpec((a.url("/loop"),), cache_dir / "f.bin")
        config = fast_config(cache_dir, limits=Limits(max_redirects=5))
        async with Engine(config) as engine:
            with pytest.raises(RedirectError, match="more than 5 times"):
                await engine.fetch(spec)
        assert len(a.requests) + len(b.requests) == 6  # not retried


def test_serve_access_log_escapes_what_clients_send(tmp_path: Path) -> None:
    """``asynchub serve`` logs each request's User-Agent: a BIDI override, a C1
    control and markup from a client reach its terminal escaped (another sink)."""
    import socket
    import time

    (tmp_path / "ONNX_HUB_MANIFEST.json").write_text("[]")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    full = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "asynchub", "serve", str(tmp_path), "--port"]
    proc = subprocess.Popen(
        [*args, str(port)], stderr=subprocess.PIPE, text=True, cwd=REPO, env=full
    )
    try:
        for _ in range(100):
            try:
                conn = socket.create_connection(("127.0.0.1", port), 1)
                break
            except OSError:
                time.sleep(0.1)
        with conn:
            agent = "a\u202eevil\u009b[/x]:warning:"
            request = f"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: {agent}\r\n"
            conn.sendall((request + "Connection: close\r\n\r\n").encode())
            assert conn.recv(12).startswith(b"HTTP/1.1 404")
        time.sleep(0.3)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "a\\u202eevil\\x9b[/x]:warning:" in err
    _assert_inert(err)
