"""``asynchub mirror`` (the command, as its own process) against aria2c, on nginx.

    .venv/bin/python benchmarks/run.py                  # everything, ~15 minutes
    .venv/bin/python benchmarks/run.py --quick          # smaller data, one run each
    .venv/bin/python benchmarks/run.py --scenario 1 --fs tmpfs
    .venv/bin/python benchmarks/run.py --aria2-sweep    # try aria2c's settings
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
import os
import shutil
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
    ARIA2_BEST,
    ARIA2_SWEEP,
    CONTENDERS,
    DEFAULT_CONTENDERS,
    SEQUENTIAL,
    Command,
    Job,
    check_output,
    fresh_output,
    planned_connections,
    remove_outputs,
    run_measured,
    warm_cache,
)
from _data import (  # noqa: E402
    LATENCY_MODEL,
    MiB,
    Scenario,
    calibration_plan,
    ensure_files,
    ensure_latency_hub,
    load_scenarios,
)
from _load import busy_seconds, process_tree_cpu, wait_for_quiet  # noqa: E402
from _report import (  # noqa: E402
    LAT_BASE,
    LAT_COLD,
    LAT_CURL,
    LAT_WARM,
    Calibration,
    Latency,
    Runs,
    ScenarioResult,
    latency_table,
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


FS_ROOTS = {"tmpfs": Path("/dev/shm/asynchub-bench"), "disk": WORK / "out"}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one_run(
    runs: Runs, job: Job, server: Nginx, measure: Path, counter: Iterator[int]
) -> None:
    """One measured run of ``runs.contender`` into a fresh folder on ``runs.fs``."""
    sc = job.scenario
    out = fresh_output(FS_ROOTS[runs.fs], next(counter), sc.total_bytes)
    run_job = dataclasses.replace(job, out=out)
    warm_cache(server.root, sc)
    server.log_counts()
    quiet = wait_for_quiet(server.pid, patience=5.0)
    busy0, srv0 = busy_seconds(), process_tree_cpu(server.pid)
    timeout = min(3600.0, 3 * sc.total_bytes / (sc.cap or 50 * MiB) + 120)
    sample = run_measured(CONTENDERS[runs.contender](run_job), measure, timeout)
    busy1, srv1 = busy_seconds(), process_tree_cpu(server.pid)
    other = max(0.0, busy1 - busy0 - (srv1 - srv0) - sample.cpu_seconds)
    sample.other_load = quiet
    counts = server.log_counts()
    check_output(run_job)
    runs.samples.append(sample)
    runs.connections.append(counts.connections)
    runs.requests.append(counts.requests)
    if counts.window_seconds > 0:
        runs.window_rates.append(counts.window_bytes / counts.window_seconds)
    runs.first_request_ms.append((counts.first_file_start - sample.started) * 1000)
    inner = sample.stdout.strip().splitlines()[-1:] if sample.stdout else []
    if inner and inner[0].startswith("{"):
        runs.inner_seconds.append(json.loads(inner[0]).get("fetch_s", 0.0))
    print(
        f"  S{sc.number} {runs.fs:5s} {runs.contender:15s} run {len(runs.samples)}: "
        f"{sample.seconds:7.2f} s, RSS {sample.peak_rss_mib:4.0f} MiB, "
        f"CPU {sample.cpu_seconds:5.2f} s, first file "
        f"{runs.first_request_ms[-1]:5.0f} ms, {counts.connections} conns, "
        f"{counts.requests} requests {dict(sorted(counts.statuses.items()))}, "
        f"other load {quiet:.2f} before, {other / sample.seconds:.2f} during",
        flush=True,
    )
    if runs.fs == "tmpfs":  # RAM: never keep tmpfs outputs past the run
        remove_outputs(out)


def run_scenario(
    res: ScenarioResult,
    job: Job,
    server: Nginx,
    measure: Path,
    reps: int,
    counter: Iterator[int],
) -> None:
    """Contenders and output places alternate (rotating order) for ``reps`` rounds."""
    keys = list(res.runs)
    for rep in range(reps):
        order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in order:
            runs = res.runs[key]
            if runs.contender in SEQUENTIAL and job.scenario.cap and rep > 0:
                continue  # the cap alone sets a sequential client's time
            one_run(runs, job, server, measure, counter)


def aria2_sweep(
    sc: Scenario, job: Job, server: Nginx, measure: Path, reps: int, c: Iterator[int]
) -> tuple[str, ...]:
    """Every aria2c setting of ARIA2_SWEEP on tmpfs, alternating; returns the best."""
    options = ARIA2_SWEEP[sc.number]
    runs = {opt: Runs("aria2c", "tmpfs") for opt in options}
    for rep in range(reps):
        for opt in options[rep % len(options) :] + options[: rep % len(options)]:
            one_run(runs[opt], dataclasses.replace(job, aria2=opt), server, measure, c)
    for opt, r in runs.items():
        print(f"  S{sc.number} aria2c {' '.join(opt)}: median {r.seconds:.2f} s")
    return min(options, key=lambda o: runs[o].seconds)


def latency(server: Nginx, data_root: Path, measure: Path, reps: int) -> Latency:
    """First model: fresh processes, cold and warm cache, against curl + onnx.load."""
    hub, model_file = ensure_latency_hub(data_root)
    url = f"{server.base_url}/{hub}"
    home = WORK / "latency-home"
    py = sys.executable
    load = (
        "import sys; from asynchub import hub; "
        f"m = hub.load({LATENCY_MODEL!r}, repo=sys.argv[1], silent=True); "
        "assert m is not None"
    )
    got = WORK / "latency-curl.onnx"
    onnx_load = "import sys, onnx; onnx.load(sys.argv[1])"
    curl = (
        f"curl -sS --fail -o {got} {url}/tiny/tiny.onnx && {py} -c '{onnx_load}' {got}"
    )
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("ASYNCHUB_")},
        PYTHONPATH=str(HERE.parent),
        ONNX_HOME=str(home),
    )
    commands = {
        LAT_COLD: Command([py, "-c", load, url], env),
        LAT_WARM: Command([py, "-c", load, url], env),
        LAT_CURL: Command(["bash", "-c", curl], env),
        LAT_BASE: Command([py, "-c", onnx_load, str(model_file)], env),
    }
    result = Latency()
    names = list(commands)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            if name == LAT_COLD:
                shutil.rmtree(home, ignore_errors=True)
            elif name == LAT_WARM and not home.exists():
                run_measured(commands[LAT_COLD], measure, 120)
            wait_for_quiet(server.pid, patience=5.0)
            sample = run_measured(commands[name], measure, 120)
            result.samples.setdefault(name, []).append(sample.seconds)
            result.rss.setdefault(name, []).append(sample.peak_rss_mib)
            print(f"  latency {name}: {sample.seconds:.3f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data, one run each")
    parser.add_argument(
        "--scenario", type=int, action="append", choices=[1, 2, 3, 4, 5]
    )
    parser.add_argument("--reps", type=int, help="runs per row (default 3, quick 1)")
    parser.add_argument("--contender", action="append", choices=list(CONTENDERS))
    parser.add_argument("--fs", action="append", choices=list(FS_ROOTS))
    parser.add_argument("--no-latency", action="store_true", help="skip first-model")
    parser.add_argument(
        "--aria2-sweep",
        action="store_true",
        help="try aria2c's settings per scenario (tmpfs) and use the fastest",
    )
    parser.add_argument(
        "--sweep-reps", type=int, default=1, help="runs per aria2c setting (sweep)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="HubConfig override for the engine row, e.g. limits.part_size=8M",
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
    # Byte-compiled, as an installed package is: with PYTHONDONTWRITEBYTECODE set
    # and no __pycache__, every asynchub process would compile the package again.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "asynchub"], cwd=HERE.parent
    )
    scenarios_wanted = sorted(set(args.scenario or [1, 2, 3, 4, 5]))
    reps = args.reps or (1 if args.quick else 3)
    contenders = args.contender or list(DEFAULT_CONTENDERS)
    places = args.fs or list(FS_ROOTS)
    overrides = config_overrides(args.set)
    overrides.setdefault("cache_dir", str(WORK / "cache"))
    note = f"defaults; engine row: {args.set}" if args.set else "defaults"
    uptimes = [uptime()]
    print(uptimes[0])

    data_root = WORK / ("data-quick" if args.quick else "data")
    print("test data:")
    scenarios = load_scenarios(data_root, args.quick, scenarios_wanted)
    cal_rel, cal_size = calibration_plan(args.quick)
    raw_rel = "cal/raw-256M.bin"
    ensure_files(data_root, [(cal_rel, cal_size), (raw_rel, 256 * MiB)], "cal")
    shim, measure = build_helpers(WORK / "bin")

    info: list[str] = []
    lat: Latency | None = None
    with Nginx(WORK, data_root, args.port, None, args.mss, shim) as plain:
        info += machine_limits(plain, raw_rel)
        if not args.no_latency:
            print("\nfirst model latency:")
            lat = latency(plain, data_root, measure, max(reps, 5))
    for line in info:
        print(line)

    results: list[ScenarioResult] = []
    counter = itertools.count(1)
    chosen: list[str] = []
    for root in FS_ROOTS.values():
        remove_outputs(root)
    try:
        for n, sc in enumerate(scenarios, start=1):
            size = f"{len(sc.files)} files, {sc.total_bytes / MiB:.0f} MiB"
            print(f"\nscenario {sc.number}: {sc.title} ({size})")
            res = ScenarioResult(
                sc,
                {(c, fs): Runs(c, fs) for c in contenders for fs in places},
                planned_connections(sc),
            )
            with Nginx(
                WORK, data_root, args.port + n, sc.cap, args.mss, shim
            ) as server:
                if sc.cap:
                    res.calibration = calibrate(server, cal_rel, sc.cap)
                    print("  calibration: " + res.calibration.row())
                (WORK / "jobs").mkdir(parents=True, exist_ok=True)
                job = Job(
                    sc,
                    server.base_url,
                    WORK,
                    WORK / "jobs",
                    overrides,
                    ARIA2_BEST[sc.number],
                )
                if args.aria2_sweep:
                    best = aria2_sweep(
                        sc, job, server, measure, args.sweep_reps, counter
                    )
                    job = dataclasses.replace(job, aria2=best)
                chosen.append(f"S{sc.number} aria2c settings: {' '.join(job.aria2)}")
                run_scenario(res, job, server, measure, reps, counter)
            results.append(res)
            for root in FS_ROOTS.values():
                remove_outputs(root)
            uptimes.append(uptime())
    finally:
        for root in FS_ROOTS.values():
            remove_outputs(root)

    tables = table(results)
    if lat:
        tables += "\n\n" + latency_table(lat)
    lines = list(info) + chosen
    lines += [
        f"S{r.scenario.number} {fs} asynchub engine in-process fetch time (median, "
        f"without interpreter start and imports): "
        f"{statistics.median(runs.inner_seconds):.2f} s"
        for r in results
        for (name, fs), runs in r.runs.items()
        if name == "asynchub engine" and runs.inner_seconds
    ]
    lines += load_lines(results, uptimes)
    lines += ["", "Targets (asynchub mirror, defaults):"]
    lines += [t.line() for t in targets(results, lat)]
    print("\n" + tables + "\n\n" + "\n".join(lines))
    if args.write_results:
        write_results(HERE / "RESULTS.md", results, tables, lines, note)
        print(f"\nwrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
