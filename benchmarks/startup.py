"""Fixed cost of ``asynchub mirror``: process start to the first file request, and
the last file's end to the process exit, read from nginx's access log.

    python benchmarks/startup.py [--runs 7] [--port 18700] [--hub 1 --hub 184 ...]

Hubs: 1 entry (one 64 KiB file), the zoo (184 entries, sizes / 256, as scenario 2,
uncapped here) and 2,000 entries of 64 KiB (scenario 1). Each run mirrors into a new
folder on tmpfs with ``--quiet --yes`` (``python -m asynchub``), the hubs
alternating; the table shows medians. Then the imports, and the floor under them:
what any aiohttp + pydantic + anyio program pays before its first request (Python,
``import aiohttp``, one pydantic model, an anyio event loop).

The package is byte-compiled first (``compileall``), as an installed one is: with
``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__``, every start compiles it again.
``--tree DIR`` measures another checkout (an older commit, for before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import KiB, ensure_files, load_scenarios, synthetic_entries  # noqa: E402
from _server import Nginx, build_helpers  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
DATA = WORK / "data"
OUT = Path("/dev/shm/asynchub-startup")


def _one_entry_hub(root: Path) -> str:
    """A hub with one 64 KiB model (built once under ``root``)."""
    files = ensure_files(root, [("one1/m/one.onnx", 64 * KiB)], "one1")
    entries = synthetic_entries({f.rel.split("/", 1)[1]: f for f in files})
    (root / "one1" / "ONNX_HUB_MANIFEST.json").write_text(json.dumps(entries))
    return "one1"


def _hubs(which: list[int]) -> dict[int, str]:
    hubs: dict[int, str] = {}
    if 1 in which:
        hubs[1] = _one_entry_hub(DATA)
    numbers = {184: 2, 2000: 1}
    scenarios = load_scenarios(DATA, False, [numbers[n] for n in which if n > 1])
    for scenario in scenarios:
        hubs[scenario.entries] = scenario.hub
    return hubs


def _cpu_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and user+sys seconds of one command."""
    start = time.time()
    # In a neutral folder: ``-m`` and ``-c`` put the working folder first on
    # sys.path, which would import the checkout it is run from, not PYTHONPATH's.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, cwd=OUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    if status != 0:
        raise SystemExit(f"{cmd} failed with status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def _mirror_once(nginx: Nginx, hub: str, env: dict[str, str]) -> dict[str, float]:
    """One mirror: start to the first file request, the last file's end to the
    exit (both from nginx's log), wall and CPU seconds."""
    dest = Path(tempfile.mkdtemp(dir=OUT))
    cmd = [sys.executable, "-m", "asynchub", "mirror", str(dest / "m")]
    cmd += ["--repo", f"{nginx.base_url}/{hub}/", "--quiet", "--yes"]
    try:
        return _timed(nginx, cmd, env)
    finally:
        shutil.rmtree(dest)


def _timed(nginx: Nginx, cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; its start to the first file request and the last request's
    end to its exit (nginx's log), wall and CPU seconds."""
    start = time.time()
    wall, cpu = _cpu_run(cmd, env)
    counts = nginx.log_counts()
    last_end = counts.first_file_start + counts.window_seconds
    return {
        "first": counts.first_file_start - start,
        "tail": start + wall - last_end,
        "wall": wall,
        "cpu": cpu,
    }


_FLOOR = """\
import sys
import aiohttp, anyio
from pydantic import BaseModel
class Model(BaseModel):
    x: int
async def main() -> None:
    Model(x=1)
    async with aiohttp.ClientSession() as session:
        async with session.get(sys.argv[1]) as response:
            await response.read()
anyio.run(main)
"""
"""The floor: a program on the same libraries that sends one request and exits."""


def _floor_once(nginx: Nginx, hub: str, env: dict[str, str]) -> dict[str, float]:
    """The floor program's start to its request, and its request's end to its exit."""
    url = f"{nginx.base_url}/{hub}/m/one.onnx"
    return _timed(nginx, [sys.executable, "-c", _FLOOR, url], env)


def _floor(env: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    rows = {
        "python -c pass": "pass",
        "import aiohttp": "import aiohttp",
        "import aiohttp, pydantic, anyio + 1 model": _FLOOR.split("async def")[0],
        "import asynchub": "import asynchub",
        "import asynchub.cli._main": "import asynchub.cli._main",
    }
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in rows}
    for _ in range(runs):
        for name, code in rows.items():
            out[name].append(_cpu_run([sys.executable, "-c", code], env))
    return {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in out.items()
    }


def _env(tree: Path) -> dict[str, str]:
    """The environment of a run of ``tree``: its package byte-compiled first."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "asynchub"], cwd=tree)
    return dict(os.environ, PYTHONPATH=str(tree), ONNX_HOME=str(OUT / "home"))


Rows = dict[int, list[dict[str, float]]]


def _print_rows(title: str, runs: int, results: Rows) -> None:
    print(f"\n{title}, medians of {runs} runs (s)")
    print(f"{'hub':>10} {'to 1st file':>12} {'after last':>11} {'wall':>7} {'cpu':>7}")
    for entries, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"{entries:>10} {med['first']:>12.3f} {med['tail']:>11.3f} "
            f"{med['wall']:>7.3f} {med['cpu']:>7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--hub", type=int, action="append", choices=(1, 184, 2000))
    parser.add_argument(
        "--tree", type=Path, action="append", help="checkout to run (repeatable)"
    )
    args = parser.parse_args()
    hubs = _hubs(args.hub or [1, 184, 2000])
    trees = [t.resolve() for t in args.tree or [REPO]]
    envs = {tree: _env(tree) for tree in trees}
    OUT.mkdir(parents=True, exist_ok=True)
    shim, _ = build_helpers(WORK / "bin")
    results: dict[Path, Rows] = {tree: {n: [] for n in hubs} for tree in trees}
    floor: list[dict[str, float]] = []
    with Nginx(WORK, DATA, args.port, None, 0, shim) as nginx:
        for name in hubs.values():  # warm nginx's open-file cache and the page cache
            _mirror_once(nginx, name, envs[trees[0]])
        for _ in range(args.runs):  # trees and hubs alternate
            for entries, name in hubs.items():
                for tree in trees:
                    results[tree][entries].append(_mirror_once(nginx, name, envs[tree]))
            if 1 in hubs:
                floor.append(_floor_once(nginx, hubs[1], envs[trees[0]]))
    for tree in trees:
        _print_rows(f"{tree}: asynchub mirror --quiet --yes", args.runs, results[tree])
    if floor:
        title = "floor: aiohttp + pydantic + anyio, one request (the 1-entry file)"
        _print_rows(title, args.runs, {1: floor})
    for tree in trees:
        print(f"\n{tree}: imports (wall, user+sys), medians")
        for name, (wall, cpu) in _floor(envs[tree], args.runs).items():
            print(f"  {name:<32} {wall:.3f} {cpu:.3f}")
    shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
