"""Contender: the smallest correct aiohttp downloader, as a floor for asynchub.

Usage: python fetch_floor.py JOB.json   (written by run.py; same JOB as the engine row)

16 workers share one ``aiohttp.ClientSession`` and take the files in order: GET,
SHA-256 while streaming, write to ``DEST.part`` (created with ``O_EXCL``), fsync,
check size and hash, rename. What it leaves out is what asynchub adds: no manifest,
no ranged parts, no resume sidecar, no lock, no retries, no progress, no
link-safe folder handles. Its time is what any Python + aiohttp program pays per
file on this machine; the gap to it is the engine's own cost, the gap below it
(to aria2c) is Python's and aiohttp's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp

WORKERS = 16
Row = tuple[str, str, str, int]


async def fetch_one(session: aiohttp.ClientSession, row: Row) -> None:
    url, dest, sha256, size = row
    part = dest + ".part"
    async with session.get(url, raise_for_status=True) as response:
        digest = hashlib.sha256()
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            got = 0
            async for chunk in response.content.iter_any():
                digest.update(chunk)
                got += os.write(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
    if got != size or digest.hexdigest() != sha256:
        os.unlink(part)
        raise SystemExit(f"{url}: {got} bytes, sha256 {digest.hexdigest()}")
    os.rename(part, dest)


async def worker(session: aiohttp.ClientSession, rows: Iterator[Row]) -> None:
    for row in rows:
        await fetch_one(session, row)


async def fetch_all(rows: list[Row]) -> None:
    for folder in {os.path.dirname(dest) for _, dest, _, _ in rows}:
        os.makedirs(folder, exist_ok=True)
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(connector=connector) as session:
        shared = iter(rows)
        await asyncio.gather(*(worker(session, shared) for _ in range(WORKERS)))


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(fetch_all([tuple(row) for row in job["files"]]))


if __name__ == "__main__":
    main()
