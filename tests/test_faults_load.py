"""Load (row T1): a mirror of 1,000+ files under a rate-limiting server with one
permanently failing file.

The mirror runs in a child process so that its peak RSS is its own (the server runs
in this process); the child prints its report and ``ru_maxrss``. The test asserts
that every other file arrived verified, that exactly the one failure is reported,
that no manifest was written (a failed mirror never looks complete), that the
server really rate-limited, and that memory stayed bounded.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Server, sha, status, temp_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
COUNT = 1_200
BROKEN = "zoo/m0777.onnx"
RSS_LIMIT_MIB = 300

CHILD = r"""
import asyncio, json, resource, sys
from pathlib import Path
from asynchub.config import HubConfig, Limits, RetryPolicy, Timeouts
from asynchub.mirror import amirror

dest, repo, cache = sys.argv[1:4]
config = HubConfig(
    cache_dir=Path(cache),
    retry=RetryPolicy(attempts=6, backoff_base=0.05, backoff_max=0.5,
                      max_retry_after=2.0),
    timeouts=Timeouts(connect=5, read=10),
    limits=Limits(max_files=16, max_connections=16, max_connections_per_host=16),
    fsync=False,
)

async def main():
    report = await amirror(dest, repo, silent=True, config=config, check_space=False)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({
        "done": len(report.done),
        "skipped": len(report.skipped),
        "failed": [(f.path, f.message) for f in report.failed],
        "manifest_written": report.manifest_written,
        "rss_mib": rss,
        "summary": report.summary(),
    }), flush=True)

asyncio.run(main())
"""


def _files() -> dict[str, bytes]:
    rng = random.Random(5)
    return {
        f"zoo/m{i:04d}.onnx": rng.randbytes(rng.randint(200, 6000))
        for i in range(COUNT)
    }


@pytest.fixture
def zoo() -> Iterator[tuple[Server, dict[str, bytes]]]:
    files = _files()
    with Server() as srv:
        srv.hub(files)
        srv.route(f"/hub/{BROKEN}", status(500, data=b"internal error"))
        srv.limit_every(20, retry_after="0")  # 5% of requests, at any speed
        srv.rate_limit(per_second=400, burst=50, retry_after="1")  # and bursts
        yield srv, files


def test_mirror_of_1200_files_under_429s_with_one_permanent_failure(
    zoo: tuple[Server, dict[str, bytes]], tmp_path: Path
) -> None:
    server, files = zoo
    dest, script = tmp_path / "mirror", tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, str(script), str(dest), server.hub_url, str(tmp_path / "c")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    report = json.loads(lines[-1])

    assert [path for path, _ in report["failed"]] == [BROKEN]
    message = report["failed"][0][1]  # the last error: 500, or a 429 on the way
    assert BROKEN in message and (
        "answered 500" in message or "answered 429" in message
    )
    assert report["done"] == COUNT - 1
    assert report["manifest_written"] is False
    assert not (dest / "ONNX_HUB_MANIFEST.json").exists()
    for path, data in files.items():
        target = dest / path
        if path == BROKEN:
            assert not target.exists()
        else:
            assert sha(target.read_bytes()) == sha(data), path
    assert temp_files(dest) == []

    statuses = [r.status for r in server.requests]
    print(  # the numbers quoted in TESTING.md
        f"\n{report['summary']}; requests {len(statuses)}, 429s "
        f"{statuses.count(429)}, peak connections {server.peak_active}, "
        f"peak RSS {report['rss_mib']} MiB"
    )
    assert statuses.count(429) > 0, "the server never rate-limited: test too easy"
    assert server.peak_active <= 16 + 2  # connection cap (+ manifest, + slack)
    broken = [r for r in server.log(f"/hub/{BROKEN}") if r.status == 500]
    assert 1 <= len(broken) <= 6  # bounded retries of the failing file
    assert report["rss_mib"] < RSS_LIMIT_MIB, report
