"""nginx on 127.0.0.1, optionally paced per connection by an LD_PRELOAD shim."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = {
    "nginx": "nginx-light",
    "aria2c": "aria2",
    "curl": "curl",
    "gcc": "gcc",
    "sha256sum": "coreutils",
}


def check_tools() -> None:
    missing = {tool: pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)}
    if not shutil.which("nginx") and Path("/usr/sbin/nginx").exists():
        missing.pop("nginx")
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise SystemExit(
            f"missing tools: {', '.join(missing)}\n"
            f"install them with:  sudo apt-get install -y {pkgs}"
        )


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def build_helpers(work: Path) -> tuple[Path, Path]:
    """Compile the pacing shim and the measuring launcher (again if changed)."""
    work.mkdir(parents=True, exist_ok=True)
    shim, measure = work / "pacing_shim.so", work / "measure"
    _compile(HERE / "pacing_shim.c", shim, ["-shared", "-fPIC"], ["-ldl"])
    _compile(HERE / "measure.c", measure, [], [])
    return shim, measure


def _compile(source: Path, target: Path, flags: list[str], libs: list[str]) -> None:
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return
    cmd = ["gcc", "-O2", *flags, "-o", str(target), str(source), *libs]
    subprocess.run(cmd, check=True)


CONFIG = """\
daemon off;
master_process on;
worker_processes auto;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$connection $status $body_bytes_sent $msec $request_time $uri';
    access_log {dir}/access.log bench;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    open_file_cache max=10000 inactive=60s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""


@dataclass
class LogCounts:
    connections: int
    requests: int
    statuses: dict[int, int]
    body_bytes: int
    in_flight: float  # mean requests being served between the first start and last end
    first_file_start: float  # epoch seconds the first request for a non-manifest began
    window_bytes: int  # body bytes of file (non-manifest) requests
    window_seconds: float  # first file request's start to the last one's end


class Nginx:
    """One nginx master (not daemonised) serving ``root``; paced if ``rate`` is set."""

    def __init__(
        self, work: Path, root: Path, port: int, rate: int | None, mss: int, shim: Path
    ) -> None:
        self.dir = work / f"nginx-{port}"
        self.root = root
        self.port = port
        self.rate = rate
        self.mss = mss
        self.shim = shim
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.dir / "tmp").mkdir(parents=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(
            CONFIG.format(user=user, dir=self.dir, port=self.port, root=self.root)
        )
        env = dict(os.environ)
        if self.rate:
            env.update(
                LD_PRELOAD=str(self.shim),
                BENCH_PACE_RATE=str(self.rate),
                BENCH_PACE_MSS=str(self.mss),
            )
        log = str(self.dir / "error.log")
        cmd = [nginx_binary(), "-p", str(self.dir), "-c", str(conf), "-e", log]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nginx exited at startup, see {self.dir}/error.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise SystemExit(f"nginx did not listen on port {self.port} within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown of this master
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_counts(self) -> LogCounts:
        """Connections, requests, statuses and body bytes since the previous call."""
        log = self.dir / "access.log"
        with open(log, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        conns: set[str] = set()
        statuses: Counter[int] = Counter()
        sent, serving, first, last = 0, 0.0, float("inf"), 0.0
        file_first, file_last, file_bytes = float("inf"), 0.0, 0
        for line in data.decode().splitlines():
            conn, status, size, end, took, uri = line.split(maxsplit=5)
            conns.add(conn)
            statuses[int(status)] += 1
            sent += int(size)
            serving += float(took)
            start = float(end) - float(took)
            first = min(first, start)
            last = max(last, float(end))
            if not uri.endswith("/ONNX_HUB_MANIFEST.json"):
                file_first = min(file_first, start)
                file_last = max(file_last, float(end))
                file_bytes += int(size)
        span = last - first
        in_flight = serving / span if span > 0 else 0.0
        requests = sum(statuses.values())
        return LogCounts(
            len(conns),
            requests,
            dict(statuses),
            sent,
            in_flight,
            file_first,
            file_bytes,
            max(0.0, file_last - file_first),
        )
