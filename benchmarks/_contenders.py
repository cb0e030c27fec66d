"""The contenders: how each one is started, and how one run is measured."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _data import REPO, MiB, Scenario  # noqa: F401

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    base_url: str
    out: Path  # destination folder, emptied before each run
    work: Path  # where input files for the contenders go
    config: dict[str, object]  # HubConfig fields for the engine row (defaults if empty)
    aria2: tuple[str, ...]  # aria2c's concurrency options for this scenario

    def rows(self) -> list[tuple[str, str, str, int]]:
        return [
            (f"{self.base_url}/{f.rel}", str(self.out / f.rel), f.sha256, f.size)
            for f in self.scenario.files
        ]

    def write_json(self, name: str) -> Path:
        path = self.work / name
        path.write_text(json.dumps({"files": self.rows(), "config": self.config}))
        return path


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] | None = None


def _asynchub_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCHUB_")}
    return dict(env, PYTHONPATH=path, **extra)


def engine_cmd(job: Job) -> Command:
    """The in-process engine (no manifest, no CLI): Engine.fetch of every file."""
    script = str(HERE / "fetch_asynchub.py")
    argv = [sys.executable, script, str(job.write_json("asynchub.json"))]
    return Command(argv, _asynchub_env())


def mirror_cli_cmd(job: Job) -> Command:
    """What a user runs: ``asynchub mirror DEST --repo URL`` as its own process.

    The console script (``asynchub``, from pyproject) runs the same
    ``asynchub.cli:main`` as ``python -m asynchub``; ``-q`` because a benchmark has
    no terminal, ``--yes`` because 127.0.0.1 is not on the trusted list.
    """
    hub = job.scenario.hub
    script = Path(sys.executable).with_name("asynchub")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "asynchub"]
    argv = [
        *head,
        "mirror",
        str(job.out / hub),
        "--repo",
        f"{job.base_url}/{hub}",
        "--quiet",
        "--yes",
    ]
    return Command(argv, _asynchub_env(ONNX_HOME=str(job.work / "onnx-home")))


# aria2c's concurrency per scenario: the fastest of the settings tried with
# ``run.py --aria2-sweep`` (README.md lists them), never more connections at once
# than asynchub's per-host cap (16): more connections to one host is a politeness
# choice, not an efficiency, and both clients get the same budget.
ARIA2_BEST: dict[int, tuple[str, ...]] = {
    1: ("-j16", "-x1", "-s1"),
    2: ("-j16", "-x1", "-s1"),
    3: ("-j16", "-x1", "-s1"),
    4: ("-j1", "-x16", "-s16", "-k1M"),
    5: ("-j4", "-x4", "-s4", "-k1M"),
}
ARIA2_COMMON = (
    "--file-allocation=none",
    "--allow-overwrite=true",
    "--auto-file-renaming=false",
    "--show-console-readout=false",
    "--summary-interval=0",
    "--download-result=hide",
    "--console-log-level=warn",
)
# Tried per scenario by --aria2-sweep (tmpfs, alternating, medians).
ARIA2_SWEEP: dict[int, list[tuple[str, ...]]] = {
    1: [
        ("-j16", "-x1", "-s1"),
        ("-j16", "-x4", "-s4"),
        ("-j8", "-x1", "-s1"),
        ("-j16", "-x1", "-s1", "--enable-mmap=true"),
        ("-j16", "-x1", "-s1", "--disk-cache=0"),
        ("-j16", "-x1", "-s1", "--disk-cache=64M"),
    ],
    2: [
        ("-j16", "-x1", "-s1"),
        ("-j8", "-x2", "-s2", "-k1M"),
        ("-j4", "-x4", "-s4", "-k1M"),
        ("-j16", "-x1", "-s1", "--enable-mmap=true"),
    ],
    3: [
        ("-j16", "-x1", "-s1"),
        ("-j8", "-x2", "-s2", "-k1M"),
        ("-j4", "-x4", "-s4", "-k1M"),
        ("-j16", "-x1", "-s1", "--enable-mmap=true"),
    ],
    4: [
        ("-j1", "-x16", "-s16", "-k1M"),
        ("-j1", "-x16", "-s16", "-k4M"),
        ("-j1", "-x16", "-s16", "-k1M", "--enable-mmap=true"),
        ("-j1", "-x16", "-s16", "-k1M", "--disk-cache=64M"),
    ],
    5: [
        ("-j4", "-x4", "-s4", "-k1M"),
        ("-j4", "-x4", "-s4", "-k16M"),
        ("-j4", "-x1", "-s1"),
        ("-j4", "-x4", "-s4", "-k1M", "--enable-mmap=true"),
        ("-j4", "-x4", "-s4", "-k1M", "--disk-cache=64M"),
    ],
}


def aria2_cmd(job: Job) -> Command:
    """aria2c with one ``-i`` input file: ``out=``, ``checksum=sha-256=`` per file."""
    lines = []
    for f in job.scenario.files:
        lines += [
            f"{job.base_url}/{f.rel}",
            f"  out={f.rel}",
            f"  checksum=sha-256={f.sha256}",
        ]
    inp = job.work / "aria2-input.txt"
    inp.write_text("\n".join(lines) + "\n")
    argv = ["aria2c", f"--input-file={inp}", f"--dir={job.out}", *job.aria2]
    return Command([*argv, *ARIA2_COMMON])


def floor_cmd(job: Job) -> Command:
    """The smallest correct aiohttp program (``fetch_floor.py``), a floor."""
    script = str(HERE / "fetch_floor.py")
    return Command([sys.executable, script, str(job.write_json("floor.json"))])


def oldhub_cmd(job: Job) -> Command:
    script = str(HERE / "fetch_oldhub.py")
    return Command([sys.executable, script, str(job.write_json("oldhub.json"))])


def curl_cmd(job: Job) -> Command:
    """curl then sha256sum -c, one file after another, from a generated shell script."""
    lines = ["set -e"]
    for url, dest, sha, _ in job.rows():
        d = shlex.quote(dest)
        lines.append(f"curl -sS --fail --create-dirs -o {d} {shlex.quote(url)}")
        lines.append(f"echo {sha}'  '{d} | sha256sum --check --status")
    script = job.work / "curl-sha256sum.sh"
    script.write_text("\n".join(lines) + "\n")
    return Command(["bash", str(script)])


CONTENDERS: dict[str, Callable[[Job], Command]] = {
    "asynchub mirror": mirror_cli_cmd,
    "aria2c": aria2_cmd,
    "asynchub engine": engine_cmd,
    "aiohttp floor": floor_cmd,
    "old onnx.hub": oldhub_cmd,
    "curl+sha256sum": curl_cmd,
}
DEFAULT_CONTENDERS = ("asynchub mirror", "aria2c", "asynchub engine")
SEQUENTIAL = {"old onnx.hub", "curl+sha256sum"}


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float  # user + system of the contender and its children
    peak_rss_mib: float  # largest resident set of any one of its processes
    stdout: str
    other_load: float = 0.0  # cores used by other processes just before the run
    started: float = 0.0  # epoch seconds just before the process was started


def run_measured(cmd: Command, measure: Path, timeout: float) -> Sample:
    """Run to completion under the ``measure`` launcher: wall time and rusage."""
    stats = measure.parent / "last-run.txt"
    stats.unlink(missing_ok=True)
    started = time.time()
    proc = subprocess.Popen(
        [str(measure), str(stats), *cmd.argv],
        env=cmd.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own process group
        proc.communicate()
        raise RuntimeError(f"{cmd.argv[0]} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd.argv[0]} failed (exit {proc.returncode}):\n"
            + err.decode(errors="replace")[-3000:]
        )
    wall, user, system, maxrss_kib = stats.read_text().split()
    return Sample(
        seconds=float(wall),
        cpu_seconds=float(user) + float(system),
        peak_rss_mib=int(maxrss_kib) / 1024,
        stdout=out.decode(errors="replace"),
        started=started,
    )


def warm_cache(root: Path, scenario: Scenario) -> None:
    """Read the served files so nginx serves them from the page cache.

    Some VMs reclaim idle page-cache pages proactively (DAMON); without this, the
    first contender after a pause would measure the disk.
    """
    buf = bytearray(8 * MiB)
    for f in scenario.files:
        with open(root / f.rel, "rb", buffering=0) as src:
            while src.readinto(buf):
                pass


KEEP_OUTPUT_BYTES = 2 * 1024 * MiB


def fresh_output(base: Path, run: int, size: int) -> Path:
    """A new, empty destination for one run of ``size`` bytes; dirty pages flushed.

    Earlier outputs are kept while they total under ``KEEP_OUTPUT_BYTES`` and removed
    otherwise. Both extremes distort: on ext4, creating files right after deleting
    thousands makes inode allocation scan the recently deleted ones (2000 small
    files took the old client 2.4 s instead of 1.1 s), while many GiB of kept
    outputs in the page cache made 1 GiB of writes cost twice the CPU on this VM.
    """
    kept = sorted(base.glob("run-*"), key=lambda p: int(p.name[4:]))
    if kept and len(kept) * size >= KEEP_OUTPUT_BYTES:
        remove_outputs(base)
    out = base / f"run-{run}"
    out.mkdir(parents=True)
    os.sync()
    return out


def remove_outputs(base: Path) -> None:
    if base.exists():
        shutil.rmtree(base)


def check_output(job: Job) -> None:
    for f in job.scenario.files:
        path = job.out / f.rel
        if not path.is_file() or path.stat().st_size != f.size:
            raise RuntimeError(f"missing or wrong size after the run: {path}")


def planned_connections(scenario: Scenario, per_host: int = 16) -> int:
    """Connections at once both clients may use here: the per-host cap (16, asynchub's
    default) or fewer when there are fewer files than that and none is split."""
    return per_host
