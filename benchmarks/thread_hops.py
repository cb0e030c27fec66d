"""Why the engine writes through batched ``anyio.to_thread`` hops, not aiofiles.

Writes N small files (the per-file work of a many-small-files mirror: open, write,
close, rename) two ways, 32 files at a time, side by side in one run, and prints
each one's time relative to the second:

- aiofiles: ``async with aiofiles.open(...)``, ``await f.write(...)``,
  ``aiofiles.os.replace`` (a thread hop per call: open, write, close, rename);
- one ``anyio.to_thread.run_sync`` hop per file doing all of it, which is what the
  engine does for a small file (the last batch is written in the hop that verifies
  and renames).

Run: ``python benchmarks/thread_hops.py [N]`` (needs ``pip install aiofiles``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

DATA = os.urandom(64 * 1024)


def _write(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(DATA)
    os.replace(path, path.with_suffix(".onnx"))


async def with_aiofiles(paths: list[Path]) -> None:
    import aiofiles
    import aiofiles.os

    for path in paths:
        async with aiofiles.open(path, "wb") as handle:
            await handle.write(DATA)
        await aiofiles.os.replace(path, path.with_suffix(".onnx"))


async def hop_per_file(paths: list[Path]) -> None:
    for path in paths:
        await anyio.to_thread.run_sync(_write, path)


async def concurrently(
    way: Callable[[list[Path]], Awaitable[None]], paths: list[Path], workers: int = 32
) -> None:
    """The engine runs files concurrently: split the files over ``workers`` tasks."""
    async with anyio.create_task_group() as group:
        for i in range(workers):
            group.start_soon(way, paths[i::workers])


def timed(way: Callable[[list[Path]], Awaitable[None]], count: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"f{i}.part" for i in range(count)]
        started = time.perf_counter()
        anyio.run(concurrently, way, paths)
        return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    best: dict[str, float] = {}
    for _ in range(3):
        for name, way in (("aiofiles", with_aiofiles), ("one hop", hop_per_file)):
            elapsed = timed(way, count)
            best[name] = min(best.get(name, elapsed), elapsed)
    base = best["one hop"]
    for name, elapsed in best.items():
        print(f"{name:>9}: {elapsed:6.3f} s for {count} files ({elapsed / base:.2f}x)")


if __name__ == "__main__":
    main()
