"""Medians, the results table, the targets of issue 11, and RESULTS.md."""

from __future__ import annotations

import platform
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from _contenders import Sample
from _data import GiB, MiB, Scenario

# "No slower than aria2c" and "matches aria2c" allow this much run-to-run noise.
TOLERANCE = 0.02


@dataclass
class Runs:
    contender: str
    fs: str  # "tmpfs" or "disk": where the output went
    samples: list[Sample] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    inner_seconds: list[float] = field(default_factory=list)  # measured in-process
    first_request_ms: list[float] = field(default_factory=list)  # start -> 1st file
    window_rates: list[float] = field(default_factory=list)  # bytes/s, transfer window

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def rss(self) -> float:
        return max(s.peak_rss_mib for s in self.samples)


@dataclass
class Calibration:
    cap: int
    full_rate: float  # bytes/s of one connection over the calibration file
    first_mib_rate: float  # bytes/s of a 1 MiB range on a fresh connection

    @property
    def ok(self) -> bool:
        return all(
            abs(r / self.cap - 1) <= 0.10 for r in (self.full_rate, self.first_mib_rate)
        )

    def row(self) -> str:
        verdict = "OK" if self.ok else "WARNING: off by more than 10%, ratios untrusted"
        return (
            f"cap {self.cap / MiB:.0f} MiB/s per connection: one connection measured "
            f"{self.full_rate / MiB:.2f} MiB/s ({self.full_rate / self.cap:.1%}), "
            f"first 1 MiB at {self.first_mib_rate / MiB:.2f} MiB/s "
            f"({self.first_mib_rate / self.cap:.1%}) -> {verdict}"
        )


@dataclass
class ScenarioResult:
    scenario: Scenario
    runs: dict[tuple[str, str], Runs]  # (contender, fs) -> runs
    planned_connections: int
    calibration: Calibration | None = None

    def get(self, name: str, fs: str) -> Runs | None:
        runs = self.runs.get((name, fs))
        return runs if runs and runs.samples else None


@dataclass
class Latency:
    """The first-model row: medians of fresh processes, seconds."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        vals = self.samples.get(name)
        return statistics.median(vals) if vals else None


def _gib(res: ScenarioResult) -> float:
    return res.scenario.total_bytes / GiB


def table(results: list[ScenarioResult]) -> str:
    head = (
        "| scenario | output | contender | median s | MiB/s | time vs aria2c "
        "| CPU s/GiB | CPU vs aria2c | peak RSS MiB | start to 1st file ms "
        "| window MiB/s | conns | runs |"
    )
    lines = [head, "|" + "---|" * 13]
    for res in results:
        sc = res.scenario
        for (name, fs), runs in res.runs.items():
            if not runs.samples:
                continue
            aria = res.get("aria2c", fs)
            sec, cpu = runs.seconds, runs.cpu / _gib(res)
            ratio = f"{aria.seconds / sec:.2f}x" if aria else "-"
            cpu_ratio = f"{cpu / (aria.cpu / _gib(res)):.2f}x" if aria else "-"
            first = (
                f"{statistics.median(runs.first_request_ms):.0f}"
                if runs.first_request_ms
                else "-"
            )
            window = (
                f"{statistics.median(runs.window_rates) / MiB:.0f}"
                if runs.window_rates
                else "-"
            )
            conns = statistics.median(runs.connections) if runs.connections else 0
            lines.append(
                f"| {sc.number} | {fs} | {name} | {sec:.2f} "
                f"| {sc.total_bytes / MiB / sec:.0f} | {ratio} | {cpu:.2f} "
                f"| {cpu_ratio} | {runs.rss:.0f} | {first} | {window} "
                f"| {conns:.0f} | {len(runs.samples)} |"
            )
    return "\n".join(lines)


def latency_table(lat: Latency) -> str:
    lines = ["| first model (fresh process) | median s | peak RSS MiB | runs |"]
    lines.append("|---|---|---|---|")
    for name, vals in lat.samples.items():
        rss = max(lat.rss.get(name) or [0.0])
        lines.append(
            f"| {name} | {statistics.median(vals):.3f} | {rss:.0f} | {len(vals)} |"
        )
    return "\n".join(lines)


@dataclass
class Target:
    name: str
    passed: bool | None  # None: could not be evaluated
    detail: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        return f"{verdict}  {self.name}: {self.detail}"


MIRROR = "asynchub mirror"


def targets(results: list[ScenarioResult], lat: Latency | None) -> list[Target]:
    """Issue 11's targets for ``asynchub mirror`` (defaults), from the medians."""
    out: list[Target] = []
    for res in results:
        n = res.scenario.number
        for fs in ("tmpfs", "disk"):
            m, a = res.get(MIRROR, fs), res.get("aria2c", fs)
            if m is None or a is None:
                continue
            r = a.seconds / m.seconds
            out.append(
                Target(
                    f"S{n} {fs}: mirror >= 1.0x aria2c (wall)",
                    r >= 1.0,
                    f"{m.seconds:.2f} vs {a.seconds:.2f} s ({r:.2f}x)",
                )
            )
            c = m.cpu / a.cpu
            out.append(
                Target(
                    f"S{n} {fs}: CPU s/GiB <= 1.5x aria2c",
                    c <= 1.5,
                    f"{m.cpu / _gib(res):.2f} vs {a.cpu / _gib(res):.2f} ({c:.2f}x)",
                )
            )
            out.append(
                Target(
                    f"S{n} {fs}: peak RSS < 200 MiB", m.rss < 200, f"{m.rss:.0f} MiB"
                )
            )
            cap = res.scenario.cap
            if cap and m.window_rates:
                agg = res.planned_connections * cap
                w = statistics.median(m.window_rates)
                out.append(
                    Target(
                        f"S{n} {fs}: >= 95% of the aggregate cap (transfer window)",
                        w >= 0.95 * agg,
                        f"{w / MiB:.0f} of {agg / MiB:.0f} MiB/s "
                        f"({res.planned_connections} x {cap / MiB:.0f}): {w / agg:.0%}",
                    )
                )
        m = res.get(MIRROR, "tmpfs")
        if m and m.first_request_ms and res.scenario.entries in (184, 2000):
            limit = 250 if res.scenario.entries >= 2000 else 150
            ms = statistics.median(m.first_request_ms)
            out.append(
                Target(
                    f"S{n}: start to first file request <= {limit} ms "
                    f"({res.scenario.entries} entries)",
                    ms <= limit,
                    f"{ms:.0f} ms",
                )
            )
    for res in results:
        if res.calibration:
            out.append(
                Target(
                    f"S{res.scenario.number} calibration within 10%",
                    res.calibration.ok,
                    res.calibration.row(),
                )
            )
    if lat:
        warm, base = lat.median(LAT_WARM), lat.median(LAT_BASE)
        if warm is not None and base is not None:
            extra = (warm - base) * 1000
            out.append(
                Target(
                    "warm hub.load adds <= 150 ms to import onnx + onnx.load",
                    extra <= 150,
                    f"{warm:.3f} vs {base:.3f} s: +{extra:.0f} ms",
                )
            )
    return out


LAT_COLD = "hub.load, cold cache"
LAT_WARM = "hub.load, warm cache"
LAT_CURL = "curl + import onnx + onnx.load"
LAT_BASE = "import onnx + onnx.load (cached file)"


def load_lines(results: list[ScenarioResult], uptimes: list[str]) -> list[str]:
    """Other processes' CPU use during the runs (this machine may be shared)."""
    lines = [f"uptime: {u}" for u in uptimes]
    for res in results:
        loads = [s.other_load for r in res.runs.values() for s in r.samples]
        if loads:
            worst = max(loads)
            note = "  (busy machine: timings disturbed)" if worst > 0.3 else ""
            lines.append(
                f"S{res.scenario.number} other processes before the runs: median "
                f"{statistics.median(loads):.2f}, max {worst:.2f} cores{note}"
            )
    return lines


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    import os

    return (
        f"{os.cpu_count()} CPUs ({cpu}), {int(mem) / 1024 / 1024:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"{_version(['nginx', '-v'])}, {_version(['aria2c', '--version'])}, "
        f"{_version(['curl', '--version']).split(' (')[0]}"
    )


def command_line() -> str:
    return "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def revision() -> str:
    """The commit measured, and whether asynchub/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "asynchub"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return "?"
    return head + (" (asynchub/ with uncommitted changes)" if dirty else "")


def write_results(
    path: Path,
    results: list[ScenarioResult],
    tables: str,
    notes: list[str],
    config_note: str,
) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scen = "\n".join(
        f"- S{r.scenario.number}: {r.scenario.title}: {len(r.scenario.files)} files, "
        f"{r.scenario.total_bytes / MiB:.0f} MiB, {r.scenario.entries} manifest entries"
        for r in results
    )
    notes_text = "\n".join(notes)
    path.write_text(
        f"# Benchmark results\n\n"
        f"- Date: {now}\n- Machine: {machine()}\n- Command: `{command_line()}`\n"
        f"- Revision: {revision()}\n"
        f"- asynchub configuration: {config_note}\n\n"
        f"Scenarios:\n{scen}\n\n"
        "Medians of the runs, contenders alternating. Times are whole processes, "
        "start-up included; `time vs aria2c` is aria2c's time over this row's (above "
        "1x is faster), against aria2c writing to the same place; CPU is user+sys of "
        "the whole process tree; peak RSS is the largest resident set of any of its "
        "processes; `start to 1st file` is from starting the process to nginx "
        "starting the first file (not manifest) response; `window` is file bytes "
        "over the span from the first file request's start to the last one's end. "
        "See benchmarks/README.md.\n\n"
        f"{tables}\n\n```\n{notes_text}\n```\n"
    )
