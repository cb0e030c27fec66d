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
import threading
import time
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


def asynchub_cmd(job: Job) -> Command:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    script = str(HERE / "fetch_asynchub.py")
    return Command([sys.executable, script, str(job.write_json("asynchub.json"))], env)


def aria2_args(limits: dict[str, int]) -> list[str]:
    """aria2c concurrency matching asynchub's caps (aria2c allows -x up to 16)."""
    split = limits["max_parts_per_file"]
    per_server = min(16, split, limits["max_connections_per_host"])
    min_split = min(1024, max(1, round(limits["part_size"] / MiB)))
    return [
        f"--max-concurrent-downloads={limits['max_files']}",
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
    "aria2c": aria2_cmd,
    "old onnx.hub": oldhub_cmd,
    "curl+sha256sum": curl_cmd,
}
SEQUENTIAL = {"old onnx.hub", "curl+sha256sum"}


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float  # user + system of the contender and its children
    peak_rss_mib: float  # largest resident set of any one of its processes
    stdout: str


def run_measured(cmd: Command, timeout: float) -> Sample:
    """Run to completion, wall time plus rusage of the whole process tree (wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd.argv,
        env=cmd.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        # The output is small; read it in threads so wait4 sees the exit at once.
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [
            threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
            threading.Thread(target=lambda: err.append(proc.stderr.read())),  # type: ignore[union-attr]
        ]
        for t in readers:
            t.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join()
    finally:
        timer.cancel()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd.argv[0]} failed (exit {proc.returncode}) after {seconds:.1f} s:\n"
            + err[0].decode(errors="replace")[-3000:]
        )
    return Sample(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        stdout=out[0].decode(errors="replace"),
    )


def reset_output(out: Path) -> None:
    """Empty the destination and flush dirty pages so runs start alike."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.sync()


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
