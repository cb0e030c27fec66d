"""Peak memory of a 1 GiB download (slow: run with ``ASYNCHUB_SLOW_TESTS=1``).

The child process downloads from the local server with the default config and
reports its own peak RSS; the server runs in the test process, so its memory is not
counted. Run alone to see the numbers::

    ASYNCHUB_SLOW_TESTS=1 .venv/bin/pytest -s tests/test_transfer_slow.py
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from .harness import Server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not os.environ.get("ASYNCHUB_SLOW_TESTS"), reason="set ASYNCHUB_SLOW_TESTS=1"
    ),
]

GiB = 1024**3
ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from asynchub._transfer import Engine, FileSpec
from asynchub.config import HubConfig

async def main(url, dest, sha, size):
    started = time.perf_counter()
    async with Engine(HubConfig(fsync=False)) as engine:
        await engine.fetch(FileSpec((url,), Path(dest), sha, int(size)))
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": elapsed, "peak_rss_kib": usage.ru_maxrss,
                      "cpu": usage.ru_utime + usage.ru_stime}))

asyncio.run(main(*sys.argv[1:]))
"""


def make_file(path: Path, size: int) -> str:
    sha = hashlib.sha256()
    block = os.urandom(4 * 1024 * 1024)
    with path.open("wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
            sha.update(block)
    return sha.hexdigest()


async def test_peak_rss_of_a_1_gib_download(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    digest = await asyncio.to_thread(make_file, src, GiB)
    async with Server() as server:
        url = server.add("/big", src)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            url,
            str(tmp_path / "big"),
            digest,
            str(GiB),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    rss_mib = report["peak_rss_kib"] / 1024
    print(
        f"\n1 GiB: {report['seconds']:.1f} s, peak RSS {rss_mib:.0f} MiB, "
        f"CPU {report['cpu']:.1f} s"
    )
    assert rss_mib < 200
