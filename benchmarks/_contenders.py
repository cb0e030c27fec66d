"""The contenders: how each one is started, and how one run is measured."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _data import REPO, MiB, Scenario

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    base_url: str
    out: Path  # destination folder, emptied before each run
    work: Path  # where input files for the contenders go
    config: dict[str, object]  # HubConfig fields for asynchub (defaults if empty)
    limits: dict[str, int]  # the effective asynchub Limits (for aria2c's mapping)

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


def _asynchub_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


def asynchub_cmd(job: Job) -> Command:
    script = str(HERE / "fetch_asynchub.py")
    argv = [sys.executable, script, str(job.write_json("asynchub.json"))]
    return Command(argv, _asynchub_env())


def aria2_args(limits: dict[str, int]) -> list[str]:
    """aria2c concurrency matching asynchub's caps (aria2c allows -x up to 16).

    aria2c has no cap on connections per host, only downloads at once (-j) and
    connections per download (-x): -j is bounded by asynchub's per-host cap so that
    both use at most the same number of connections to the one server (asynchub
    keeps more files than connections in flight; its extra files wait for one).
    """
    split = limits["max_parts_per_file"]
    per_host = limits["max_connections_per_host"]
    per_server = min(16, split, per_host)
    min_split = min(1024, max(1, round(limits["part_size"] / MiB)))
    downloads = min(limits["max_files"], per_host)
    return [
        f"--max-concurrent-downloads={downloads}",
        f"--max-connection-per-server={per_server}",
        f"--split={split}",
        f"--min-split-size={min_split}M",
    ]


def aria2_cmd(job: Job) -> Command:
    lines = []
    for f in job.scenario.files:
        lines += [
            f"{job.base_url}/{f.rel}",
            f"  out={f.rel}",
            f"  checksum=sha-256={f.sha256}",
        ]
    inp = job.work / "aria2-input.txt"
    inp.write_text("\n".join(lines) + "\n")
    argv = [
        "aria2c",
        f"--input-file={inp}",
        f"--dir={job.out}",
        *aria2_args(job.limits),
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--show-console-readout=false",
        "--summary-interval=0",
        "--download-result=hide",
        "--console-log-level=warn",
    ]
    return Command(argv)


def mirror_cmd(job: Job) -> Command:
    """``hub.mirror`` of the zoo's hub folder (scenario 2 only, see MIRRORABLE)."""
    hub_dir = job.scenario.files[0].rel.split("/", 1)[0]  # "s2"
    spec = {
        "repo": f"{job.base_url}/{hub_dir}",
        "dest": str(job.out / hub_dir),
        "files": len(job.scenario.files),
        "config": job.config,
    }
    path = job.work / "mirror.json"
    path.write_text(json.dumps(spec))
    script = str(HERE / "fetch_mirror.py")
    return Command([sys.executable, script, str(path)], _asynchub_env())


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
    "asynchub": asynchub_cmd,
    "asynchub mirror": mirror_cmd,
    "aria2c": aria2_cmd,
    "old onnx.hub": oldhub_cmd,
    "curl+sha256sum": curl_cmd,
}
SEQUENTIAL = {"old onnx.hub", "curl+sha256sum"}
MIRRORABLE = {2}  # scenarios laid out as a hub, with a manifest (the zoo)


def applies(contender: str, scenario: Scenario) -> bool:
    """Whether ``contender`` runs in ``scenario`` (the mirror needs a hub)."""
    return contender != "asynchub mirror" or scenario.number in MIRRORABLE


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float  # user + system of the contender and its children
    peak_rss_mib: float  # largest resident set of any one of its processes
    stdout: str
    other_load: float = 0.0  # cores used by other processes just before the run


def run_measured(cmd: Command, measure: Path, timeout: float) -> Sample:
    """Run to completion under the ``measure`` launcher: wall time and rusage."""
    stats = measure.parent / "last-run.txt"
    stats.unlink(missing_ok=True)
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


def planned_connections(scenario: Scenario, limits: dict[str, int]) -> int:
    """How many connections asynchub's limits allow at once for this scenario."""
    per_file = sorted(
        (
            1
            if f.size <= limits["split_threshold"]
            else min(
                limits["max_parts_per_file"], math.ceil(f.size / limits["part_size"])
            )
            for f in scenario.files
        ),
        reverse=True,
    )
    possible = sum(per_file[: limits["max_files"]])
    return min(possible, limits["max_connections"], limits["max_connections_per_host"])
