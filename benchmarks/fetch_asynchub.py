"""Contender: asynchub's Engine.fetch over all files of a job, concurrently.

Usage: python fetch_asynchub.py JOB.json   (written by run.py)
JOB: {"files": [[url, dest, sha256, size], ...], "config": {HubConfig fields}}
Prints one JSON line: seconds spent importing and fetching.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import asyncio  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from asynchub._transfer import Engine, FileSpec  # noqa: E402
from asynchub.config import HubConfig  # noqa: E402


async def fetch_all(config: HubConfig, specs: list[FileSpec]) -> None:
    async with Engine(config) as engine:
        await asyncio.gather(*(engine.fetch(spec) for spec in specs))


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    config = HubConfig.model_validate(job["config"])
    specs = [
        FileSpec(urls=(url,), dest=Path(dest), sha256=sha, size=size, label=dest)
        for url, dest, sha, size in job["files"]
    ]
    t1 = time.perf_counter()
    asyncio.run(fetch_all(config, specs))
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - T0, "fetch_s": t2 - t1}))


if __name__ == "__main__":
    main()
