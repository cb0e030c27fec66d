"""asynchub against aria2c, curl and the old onnx.hub strategy, on a local nginx.

    .venv/bin/python benchmarks/run.py                  # everything, ~20 minutes
    .venv/bin/python benchmarks/run.py --quick          # smaller data, one run each
    .venv/bin/python benchmarks/run.py --scenario 2 --set limits.max_files=32
    .venv/bin/python benchmarks/run.py --write-results  # also update RESULTS.md

Needs nginx, aria2c, curl and gcc (Debian: apt-get install -y nginx-light aria2 curl
gcc). Generated data and logs go to benchmarks/_work/ (gitignored). See README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _contenders import (  # noqa: E402
    CONTENDERS,
    SEQUENTIAL,
    Job,
    applies,
    check_output,
    fresh_output,
    planned_connections,
    remove_outputs,
    run_measured,
    warm_cache,
)
from _data import MiB, calibration_plan, ensure_files, load_scenarios  # noqa: E402
from _load import busy_seconds, process_tree_cpu, wait_for_quiet  # noqa: E402
from _report import (  # noqa: E402
    Calibration,
    Runs,
    ScenarioResult,
    cpu_lines,
    load_lines,
    table,
    targets,
    write_results,
)
from _server import Nginx, build_helpers, check_tools  # noqa: E402

from asynchub.config import HubConfig  # noqa: E402

WORK = HERE / "_work"


def parse_value(text: str) -> object:
    """JSON, or a size such as 8M / 512K / 1G (binary units)."""
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    if text[-1:].upper() in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1].upper()]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_overrides(pairs: list[str]) -> dict[str, object]:
    """``limits.part_size=8M`` ... -> nested HubConfig fields."""
    config: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = parse_value(value)
    HubConfig.model_validate(config)  # fail early on a typo
    return config


def curl_seconds(url: str, byte_range: str | None = None) -> tuple[float, int]:
    """One fresh curl connection: seconds from request to last byte, and bytes."""
    argv = [
        "curl",
        "-sS",
        "--fail",
        "-o",
        "/dev/null",
        "-w",
        "%{time_pretransfer} %{time_total} %{size_download}",
    ]
    if byte_range:
        argv += ["-r", byte_range]
    out = subprocess.run(
        argv + [url], capture_output=True, text=True, check=True, timeout=300
    )
    pre, total, size = out.stdout.split()
    return float(total) - float(pre), int(size)


def calibrate(server: Nginx, rel: str, cap: int) -> Calibration:
    full = [curl_seconds(f"{server.base_url}/{rel}") for _ in range(2)]
    first = [curl_seconds(f"{server.base_url}/{rel}", f"0-{MiB - 1}") for _ in range(3)]
    return Calibration(
        cap=cap,
        full_rate=statistics.median(size / sec for sec, size in full),
        first_mib_rate=statistics.median(size / sec for sec, size in first),
    )


def machine_limits(server: Nginx, rel: str) -> list[str]:
    raw = [curl_seconds(f"{server.base_url}/{rel}") for _ in range(3)]
    raw_speed = statistics.median(size / sec for sec, size in raw) / MiB
    buf = bytes(64 * MiB)
    best = min(_timed_hash(buf) for _ in range(5))
    return [
        f"machine: one curl -o /dev/null over loopback: {raw_speed:.0f} MiB/s",
        f"machine: hashlib sha256 on one core: {64 / best:.0f} MiB/s",
    ]


def _timed_hash(buf: bytes) -> float:
    t = time.perf_counter()
    hashlib.sha256(buf).digest()
    return time.perf_counter() - t


def scenario1_speed(results: list[ScenarioResult], saved: Path) -> float | None:
    """Fastest median MiB/s of scenario 1 (this run, else the last saved one)."""
    for res in results:
        speeds = [
            res.scenario.total_bytes / MiB / runs.seconds
            for runs in res.runs.values()
            if res.scenario.number == 1 and runs.samples
        ]
        if speeds:
            saved.write_text(json.dumps({"mib_s": max(speeds)}))
            return max(speeds)
    return json.loads(saved.read_text())["mib_s"] if saved.exists() else None


def run_scenario(
    res: ScenarioResult,
    job: Job,
    server: Nginx,
    measure: Path,
    reps: int,
    baseline_reps: int,
    counter: Iterator[int],
) -> None:
    """Contenders alternate (rotating order) until each has its runs."""
    sc = res.scenario
    names = list(res.runs)
    wanted = {n: baseline_reps if (n in SEQUENTIAL and sc.cap) else reps for n in names}
    slowest = sc.total_bytes / (sc.cap or 50 * MiB)
    timeout = min(3600.0, 3 * slowest + 120)
    for rep in range(max(wanted.values())):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            runs = res.runs[name]
            if len(runs.samples) >= wanted[name]:
                continue
            out = fresh_output(job.out, next(counter), sc.total_bytes)
            run_job = dataclasses.replace(job, out=out)
            warm_cache(server.root, sc)
            server.log_counts()
            quiet = wait_for_quiet(server.pid)
            busy0, srv0 = busy_seconds(), process_tree_cpu(server.pid)
            sample = run_measured(CONTENDERS[name](run_job), measure, timeout)
            busy1, srv1 = busy_seconds(), process_tree_cpu(server.pid)
            other = max(0.0, busy1 - busy0 - (srv1 - srv0) - sample.cpu_seconds)
            sample.other_load = quiet
            counts = server.log_counts()
            check_output(run_job)
            runs.samples.append(sample)
            runs.connections.append(counts.connections)
            runs.requests.append(counts.requests)
            inner = sample.stdout.strip().splitlines()[-1:] if sample.stdout else []
            if inner:
                runs.inner_seconds.append(json.loads(inner[0]).get("fetch_s", 0.0))
            print(
                f"  S{sc.number} {name:15s} run {len(runs.samples)}: "
                f"{sample.seconds:7.2f} s, "
                f"{sc.total_bytes / MiB / sample.seconds:6.0f} MiB/s, "
                f"RSS {sample.peak_rss_mib:4.0f} MiB, CPU {sample.cpu_seconds:5.2f} s, "
                f"{counts.connections} conns ({counts.in_flight:.1f} busy), "
                f"{counts.requests} requests "
                f"{dict(sorted(counts.statuses.items()))}, other load "
                f"{quiet:.2f} before; kernel+other {other / sample.seconds:.2f} during",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data, one run each")
    parser.add_argument("--scenario", type=int, action="append", choices=[1, 2, 3, 4])
    parser.add_argument(
        "--reps", type=int, help="runs per contender (default 3, quick 1)"
    )
    parser.add_argument(
        "--baseline-reps",
        type=int,
        default=1,
        help="runs of the sequential baselines in capped scenarios (the cap sets "
        "their time)",
    )
    parser.add_argument("--contender", action="append", choices=list(CONTENDERS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="HubConfig override for asynchub, e.g. limits.part_size=8M",
    )
    parser.add_argument(
        "--mss", type=int, default=1448, help="TCP MSS of paced connections"
    )
    parser.add_argument("--port", type=int, default=18480)
    parser.add_argument(
        "--write-results", action="store_true", help="write benchmarks/RESULTS.md"
    )
    args = parser.parse_args()
    # A TERM (e.g. from a timeout) unwinds like Ctrl-C, so nginx is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    check_tools()
    scenarios_wanted = sorted(set(args.scenario or [1, 2, 3, 4]))
    reps = args.reps or (1 if args.quick else 3)
    contenders = args.contender or list(CONTENDERS)
    overrides = config_overrides(args.set)
    config = HubConfig.model_validate(overrides)
    limits = config.limits.model_dump()
    overrides.setdefault("cache_dir", str(WORK / "cache"))
    note = f"defaults except {args.set}" if args.set else "defaults (HubConfig())"
    print(f"asynchub limits: {limits}")

    data_root = WORK / ("data-quick" if args.quick else "data")
    print("test data:")
    scenarios = load_scenarios(data_root, args.quick, scenarios_wanted)
    cal_rel, cal_size = calibration_plan(args.quick)
    raw_rel = "cal/raw-256M.bin"
    ensure_files(data_root, [(cal_rel, cal_size), (raw_rel, 256 * MiB)], "cal")
    shim, measure = build_helpers(WORK / "bin")

    info: list[str] = []
    with Nginx(WORK, data_root, args.port, None, args.mss, shim) as plain:
        info += machine_limits(plain, raw_rel)
    for line in info:
        print(line)

    results: list[ScenarioResult] = []
    outputs, counter = WORK / "out", itertools.count(1)
    remove_outputs(outputs)
    try:
        for n, sc in enumerate(scenarios, start=1):
            size = f"{len(sc.files)} files, {sc.total_bytes / MiB:.0f} MiB"
            print(f"\nscenario {sc.number}: {sc.title} ({size})")
            res = ScenarioResult(
                sc,
                {c: Runs(c) for c in contenders if applies(c, sc)},
                planned_connections(sc, limits),
            )
            with Nginx(
                WORK, data_root, args.port + n, sc.cap, args.mss, shim
            ) as server:
                if sc.cap:
                    res.calibration = calibrate(server, cal_rel, sc.cap)
                    print("  calibration: " + res.calibration.row())
                (WORK / "jobs").mkdir(parents=True, exist_ok=True)
                job = Job(
                    sc, server.base_url, outputs, WORK / "jobs", overrides, limits
                )
                run_scenario(
                    res, job, server, measure, reps, args.baseline_reps, counter
                )
            results.append(res)
            remove_outputs(outputs)
    finally:
        remove_outputs(outputs)

    s1_speed = scenario1_speed(
        results, WORK / f"s1-{'quick' if args.quick else 'full'}.json"
    )
    table_md = table(results)
    lines = list(info)
    lines += [
        f"S{r.scenario.number} asynchub in-process fetch time (median, without "
        f"interpreter start and imports): "
        f"{statistics.median(r.runs['asynchub'].inner_seconds):.2f} s"
        for r in results
        if "asynchub" in r.runs and r.runs["asynchub"].inner_seconds
    ]
    lines += cpu_lines(results)
    lines += load_lines(results)
    lines += ["", "Targets (asynchub with the configuration above):"]
    lines += [t.line() for t in targets(results, s1_speed)]
    print("\n" + table_md + "\n\n" + "\n".join(lines))
    if args.write_results:
        write_results(HERE / "RESULTS.md", results, table_md, lines, note)
        print(f"\nwrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
