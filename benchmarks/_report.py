"""Medians, the results table, the targets of issue 3, and RESULTS.md."""

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
    samples: list[Sample] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    inner_seconds: list[float] = field(default_factory=list)  # measured in-process

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)


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
    runs: dict[str, Runs]
    planned_connections: int
    calibration: Calibration | None = None


def _fmt_ratio(base: Runs | None, runs: Runs) -> str:
    return f"{base.seconds / runs.seconds:.2f}x" if base and base.samples else "-"


def table(results: list[ScenarioResult]) -> str:
    head = (
        "| scenario | contender | median s | MiB/s | files/s | vs aria2c | vs old "
        "| peak RSS MiB | CPU s/GiB | conns | runs |"
    )
    lines = [head, "|" + "---|" * 11]
    for res in results:
        sc = res.scenario
        aria, old = res.runs.get("aria2c"), res.runs.get("old onnx.hub")
        for name, runs in res.runs.items():
            if not runs.samples:
                continue
            sec = runs.seconds
            cpu = statistics.median(s.cpu_seconds for s in runs.samples)
            rss = max(s.peak_rss_mib for s in runs.samples)
            conns = statistics.median(runs.connections) if runs.connections else 0
            mibs = sc.total_bytes / MiB / sec
            lines.append(
                f"| {sc.number} | {name} | {sec:.2f} | {mibs:.0f} "
                f"| {len(sc.files) / sec:.3g} | {_fmt_ratio(aria, runs)} "
                f"| {_fmt_ratio(old, runs)} | {rss:.0f} "
                f"| {cpu / (sc.total_bytes / GiB):.2f} | {conns:.0f} "
                f"| {len(runs.samples)} |"
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


def _mibs(res: ScenarioResult, name: str) -> float | None:
    runs = res.runs.get(name)
    if not runs or not runs.samples:
        return None
    return res.scenario.total_bytes / MiB / runs.seconds


def targets(results: list[ScenarioResult], s1_speed: float | None) -> list[Target]:
    """The issue's targets for asynchub with its defaults, from the medians."""
    by = {r.scenario.number: r for r in results}
    out: list[Target] = []

    def vs_aria(res: ScenarioResult, what: str) -> None:
        a, b = _mibs(res, "asynchub"), _mibs(res, "aria2c")
        if a is None or b is None:
            out.append(Target(what, None, "asynchub or aria2c did not run"))
            return
        out.append(
            Target(
                what,
                a >= b * (1 - TOLERANCE),
                f"{a:.0f} vs {b:.0f} MiB/s ({a / b:.2f}x)",
            )
        )

    if 1 in by:
        a, b = _mibs(by[1], "asynchub"), _mibs(by[1], "aria2c")
        ok = None if a is None or b is None else a >= 0.9 * b
        detail = "-" if ok is None else f"{a:.0f} vs {b:.0f} MiB/s ({a / b:.0%})"
        out.append(Target("S1 >= 90% of aria2c's throughput, verifying", ok, detail))
    for n in (2, 4):
        if n not in by:
            continue
        res = by[n]
        cap = res.scenario.cap or 0
        aggregate = res.planned_connections * cap / MiB
        bound = f"{res.planned_connections} conns x {cap / MiB:.0f} MiB/s"
        if s1_speed and s1_speed < aggregate:
            aggregate, bound = s1_speed, "scenario 1's speed"
        a = _mibs(res, "asynchub")
        ok = None if a is None else a >= 0.9 * aggregate
        detail = "-"
        if a is not None:
            detail = f"{a:.0f} of {aggregate:.0f} MiB/s ({bound}): {a / aggregate:.0%}"
            inner = res.runs["asynchub"].inner_seconds
            if inner:
                e = res.scenario.total_bytes / MiB / statistics.median(inner)
                detail += f"; engine alone, without start-up: {e / aggregate:.0%}"
        out.append(Target(f"S{n} >= 90% of the aggregate cap", ok, detail))
        vs_aria(res, f"S{n} no slower than aria2c")
        m = _mibs(res, "asynchub mirror")
        if m is not None:
            detail = f"{m:.1f} of {aggregate:.0f} MiB/s: {m / aggregate:.1%}"
            what = f"S{n} hub.mirror >= 90% of the cap (beyond the issue's targets)"
            out.append(Target(what, m >= 0.9 * aggregate, detail))
    if 3 in by:
        res = by[3]
        a, b = res.runs.get("asynchub"), res.runs.get("aria2c")
        if a and b and a.samples and b.samples:
            n_files = len(res.scenario.files)
            fa, fb = n_files / a.seconds, n_files / b.seconds
            out.append(
                Target(
                    "S3 matches aria2c's files/s",
                    fa >= fb * (1 - TOLERANCE),
                    f"{fa:.0f} vs {fb:.0f} files/s ({fa / fb:.2f}x)",
                )
            )
    if 2 in by:
        a, o = by[2].runs.get("asynchub"), by[2].runs.get("old onnx.hub")
        if a and o and a.samples and o.samples:
            ratio = o.seconds / a.seconds
            out.append(Target("S2 >= 10x the old client", ratio >= 10, f"{ratio:.1f}x"))
    for res in results:
        runs = res.runs.get("asynchub")
        if runs and runs.samples:
            rss = max(s.peak_rss_mib for s in runs.samples)
            out.append(
                Target(
                    f"S{res.scenario.number} peak RSS < 200 MiB",
                    rss < 200,
                    f"{rss:.0f} MiB",
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
    return out


def load_lines(results: list[ScenarioResult]) -> list[str]:
    """Other processes' CPU use during the runs (this machine may be shared)."""
    lines = []
    for res in results:
        loads = [s.other_load for r in res.runs.values() for s in r.samples]
        if loads:
            worst = max(loads)
            note = "  (WARNING: busy machine, timings disturbed)" if worst > 0.3 else ""
            lines.append(
                f"S{res.scenario.number} other processes before the runs: median "
                f"{statistics.median(loads):.2f}, max {worst:.2f} cores{note}"
            )
    return lines


def cpu_lines(results: list[ScenarioResult]) -> list[str]:
    lines = []
    for res in results:
        vals = []
        for name in ("asynchub", "aria2c"):
            runs = res.runs.get(name)
            if runs and runs.samples:
                cpu = statistics.median(s.cpu_seconds for s in runs.samples)
                vals.append(f"{name} {cpu / (res.scenario.total_bytes / GiB):.2f}")
        if vals:
            lines.append(f"S{res.scenario.number} CPU s/GiB: " + ", ".join(vals))
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
    table_md: str,
    notes: list[str],
    config_note: str,
) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scen = "\n".join(
        f"- S{r.scenario.number}: {r.scenario.title}: {len(r.scenario.files)} files, "
        f"{r.scenario.total_bytes / MiB:.0f} MiB"
        for r in results
    )
    notes_text = "\n".join(notes)
    path.write_text(
        f"# Benchmark results\n\n"
        f"- Date: {now}\n- Machine: {machine()}\n- Command: `{command_line()}`\n"
        f"- Revision: {revision()}\n"
        f"- asynchub configuration: {config_note}\n\n"
        f"Scenarios:\n{scen}\n\n"
        "Medians of the runs; `vs aria2c` and `vs old` are speed ratios (above 1x is "
        "faster); times are whole processes, start-up included; peak RSS is the "
        "largest resident set of any process of the contender; `conns` is the number "
        "of distinct connections nginx saw in one run. See benchmarks/README.md for "
        "what each contender does.\n\n"
        f"{table_md}\n\n```\n{notes_text}\n```\n"
    )
