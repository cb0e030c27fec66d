"""The ``asynchub`` command, in-process (``cli.main``) and as a real subprocess.

Servers are real: the example hub on ``tests.hub_server.HubServer`` (``/plain/``),
on ``tests.servers.Server`` for per-file faults, and on ``asynchub serve`` itself.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from asynchub import AsyncHub, HubConfig, __version__
from asynchub._sync import run as run_sync
from asynchub.cli import build_parser, main
from asynchub.cli._parser import _ADDERS, named_command
from asynchub.manifest import Manifest

from .harness import Behavior, Server
from .hub_server import HubServer

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "ONNX_HUB_MANIFEST.json"
TINYNET_13 = "vision/classification/tinynet/model/tinynet-13.onnx"
TINYNET_17 = "vision/classification/tinynet/model/tinynet-17.onnx"
Result = tuple[int, str, str]


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)  # conftest already pointed ONNX_HOME at a temp folder
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: object, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m asynchub ARGS`` in a subprocess (``env``: extra variables)."""
    command = [sys.executable, "-m", "asynchub", *(str(a) for a in args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**subprocess_env(), **(env or {})},
        check=False,
    )


@contextmanager
def asynchub_serve(folder: Path, stop: int = signal.SIGINT) -> Iterator[str]:
    """``asynchub serve FOLDER --port 0`` in a subprocess; yields its URL."""
    command = [sys.executable, "-m", "asynchub", "serve", str(folder), "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving DIR at URL"
        assert line.startswith("serving "), (
            line,
            process.stderr.read() if process.stderr else "",
        )
        yield line.split(" at ")[-1].strip()
        process.send_signal(stop)
        assert process.wait(timeout=10) == 0  # Ctrl-C or SIGTERM: a clean stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def hub_files(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and ".asynchub" not in p.parts
    }


@contextmanager
def faulty_hub(root: Path, behaviors: dict[str, Behavior]) -> Iterator[str]:
    """The hub folder on a Server thread, with per-file faults; yields its URL."""
    server = Server().start_thread()
    try:
        server.add(f"/hub/{MANIFEST}", (root / MANIFEST).read_bytes())
        for relative, path in hub_files(root).items():
            server.add(f"/hub/{relative}", path.read_bytes(), behaviors.get(relative))
        yield server.url("/hub/")
    finally:
        server.stop_thread()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------ list and info


def test_list_prints_a_table_and_json_lines(
    capsys: pytest.CaptureFixture[str], example_hub: Path
) -> None:
    code, out, err = cli(capsys, "list", "--repo", example_hub)
    assert code == 0 and err == ""
    assert out.split()[:4] == ["model", "opset", "size", "tags"]
    assert all(name in out for name in ("TinyNet", "TinyMLP-preproc", "echo-qa"))
    code, out, _ = cli(capsys, "list", "--repo", example_hub, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    manifest = json.loads((example_hub / MANIFEST).read_text())
    assert code == 0 and rows == manifest
    code, out, _ = cli(capsys, "list", "--repo", example_hub, "--tag", "text", "--json")
    assert sorted(json.loads(line)["model"] for line in out.splitlines()) == [
        "TinyText",
        "echo-qa",
    ]


def test_info_shows_metadata_and_io_ports(
    capsys: pytest.CaptureFixture[str], example_hub: Path
) -> None:
    code, out, _ = cli(
        capsys, "info", "tinynet", "--opset", "13", "--repo", example_hub, "--json"
    )
    entry = json.loads(out)
    assert code == 0 and (entry["model"], entry["opset_version"]) == ("TinyNet", 13)
    assert entry["metadata"]["model_sha"] == sha256(example_hub / TINYNET_13)
    code, out, _ = cli(capsys, "info", "TinyNet", "--repo", example_hub)
    assert code == 0 and out.startswith("TinyNet (opset 17)\n")
    assert TINYNET_17 in out and sha256(example_hub / TINYNET_17) in out
    assert any(
        line.split()[:3] == ["input", "x", "tensor(float)"] for line in out.splitlines()
    )
    assert any(line.split()[:2] == ["output", "probs"] for line in out.splitlines())


def test_errors_are_one_line_with_a_hint(
    capsys: pytest.CaptureFixture[str], example_hub: Path
) -> None:
    code, out, err = cli(capsys, "info", "nope", "--repo", example_hub)
    assert (code, out) == (1, "")
    assert err == (
        "asynchub: error: No models found with name nope (run 'asynchub list' "
        "to see the names)\n"
    )
    code, _, err = cli(
        capsys, "info", "TinyNet", "--opset", "99", "--repo", example_hub
    )
    assert code == 1 and "use --opset 13 or --opset 17" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "--debug", "info", "nope", "--repo", example_hub)
    assert code == 1 and "\nTraceback (most recent" in f"\n{err}"
    assert "ModelNotFoundError" in err


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["mirror"],
        ["mirror", "d", "--shard", "5/2"],
        ["mirror", "d", "--concurrency", "0"],
        ["download"],
        ["download", "TinyNet", "--all"],
        ["list", "--repo", "no such thing!"],
        ["cache"],
        ["manifest", "build", "/definitely/not/a/folder"],
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "--version")[:2] == (0, f"{__version__}\n")
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in (
        "list",
        "info",
        "download",
        "mirror",
        "cache",
        "manifest",
        "serve",
        "trust",
        "demo",
    ):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["mirror", "d", "--repo", "r", "--tag", "a", "--shard", "1/4", "-q", "--yes"],
        ["-q", "--cache-dir", "c", "download", "m", "--with-data", "--opset", "7"],
        ["--cache-dir=c", "--debug", "cache", "prune", "--unlisted", "--repo", "x"],
        ["trust", "add", "x"],
        ["manifest", "build", "d", "--output", "o"],
        ["serve", "d", "--port", "0"],
        ["list", "--json", "--tag", "t"],
        ["info", "m", "--opset", "3"],
        ["demo", "--dir", "d"],
    ],
)
def test_the_named_command_alone_parses_like_the_whole_parser(argv: list[str]) -> None:
    """main builds only the command it is given; the result is the same."""
    command = named_command(argv)
    assert command == next(a for a in argv if a in _ADDERS)
    alone = build_parser(command)
    assert vars(alone.parse_args(argv)) == vars(build_parser().parse_args(argv))
    commands = next(a for a in alone._actions if a.dest == "command")
    assert list(commands.choices or ()) == [command]


@pytest.mark.parametrize(
    "argv", [["--help"], ["--help", "mirror"], ["-q", "--help"], ["--quiet", "-h"]]
)
def test_help_lists_every_command_wherever_it_is_asked(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert named_command(argv) is None
    code, out, _ = cli(capsys, *argv)
    assert code == 0
    assert all(name in out for name in _ADDERS)


def test_a_mistyped_command_is_told_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = cli(capsys, "mirorr", "d")
    assert code == 2 and "invalid choice: 'mirorr'" in err and "'mirror'" in err


# A quiet mirror of an http:// hub needs none of these: the server side, the
# terminal drawing, the model loader, cache admin, archives, the HF listing code.
NOT_FOR_A_QUIET_MIRROR = (
    "aiohttp.web",
    "rich",
    "onnx",
    "numpy",
    "tarfile",
    "difflib",
    "asynchub.hosting",
    "asynchub.cache._admin",
    "asynchub.cache._archive",
    "asynchub.sources.hf_manifest",
    "asynchub.sources.hf_listing",
)


def test_quiet_mirror_imports_only_what_it_uses(
    hub_server: HubServer, tmp_path: Path
) -> None:
    """The lazy imports stay honest: a real ``mirror --quiet`` as the program
    (``main()`` reads ``sys.argv``) leaves the modules it does not need unloaded,
    and froze the import-time objects for the collector."""
    argv = ["asynchub", "mirror", str(tmp_path / "m")]
    argv += ["--repo", f"{hub_server.base}/plain/", "--quiet", "--yes"]
    code = (
        "import gc, sys\n"
        "from asynchub.cli import main\n"
        f"sys.argv = {argv!r}\n"
        "status = main()\n"
        f"loaded = sorted(m for m in {NOT_FOR_A_QUIET_MIRROR!r} if m in sys.modules)\n"
        "print(status, gc.get_freeze_count() > 0, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 True []"
    assert (tmp_path / "m" / MANIFEST).is_file()


def test_main_with_argv_leaves_the_collector_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the program freezes its objects; a caller passing argv does not."""
    frozen = gc.get_freeze_count()
    assert cli(capsys, "--version")[0] == 0
    assert gc.get_freeze_count() == frozen


# ------------------------------------------------------------------- mirror


def test_mirror_serve_and_load_through_subprocesses(
    example_hub: Path, tmp_path: Path
) -> None:
    dest, report_file = tmp_path / "mirror", tmp_path / "report.json"
    with asynchub_serve(example_hub) as url:
        done = run_cli("mirror", dest, "--repo", url, "--yes", "--report", report_file)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text())
    assert (report["files_done"], report["failed"], report["ok"]) == (12, [], True)
    assert f"hub ready: {dest / MANIFEST} (6 models)" in done.stdout
    assert "[12/12] fetched" in done.stderr  # plain progress lines: not a terminal

    with asynchub_serve(dest) as url:

        async def load() -> bytes:
            async with AsyncHub(HubConfig(cache_dir=tmp_path / "cache")) as client:
                model = await client.load("TinyNet", repo=url, opset=13, silent=True)
            assert model is not None
            return model.SerializeToString()

        assert run_sync(load) == (example_hub / TINYNET_13).read_bytes()


HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop not installed"),
        ),
    ],
)
def test_mirror_runs_on_each_event_loop(
    example_hub: Path, tmp_path: Path, loop: str
) -> None:
    dest = tmp_path / "mirror"
    with asynchub_serve(example_hub) as url:
        done = run_cli(
            "--debug",
            "mirror",
            dest,
            "--repo",
            url,
            "--yes",
            env={"ASYNCHUB_EVENT_LOOP": loop},
        )
    assert done.returncode == 0, done.stderr
    assert f"event loop: {loop}" in done.stderr
    mirrored = {rel: sha256(p) for rel, p in hub_files(dest).items()}
    assert mirrored == {rel: sha256(p) for rel, p in hub_files(example_hub).items()}


def test_an_unknown_event_loop_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str],
    example_hub: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASYNCHUB_EVENT_LOOP", "trio")
    code, out, err = cli(capsys, "mirror", tmp_path / "m", "--repo", example_hub)
    assert code == 2 and out == "" and "ASYNCHUB_EVENT_LOOP='trio'" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"]
)
def test_serve_stops_promptly_while_a_client_stalls_mid_body(
    tmp_path: Path, stop: int
) -> None:
    """A client that stops reading holds a response open; the stop must not wait
    aiohttp's default 60 s for it, and Ctrl-C must be a clean exit on every Python."""
    (tmp_path / "big.onnx").write_bytes(os.urandom(32 << 20))
    with asynchub_serve(tmp_path, stop=stop) as url:  # asserts exit 0 within 10 s
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        client = socket.create_connection((host, int(port)))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(f"GET /big.onnx HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert client.recv(64).startswith(b"HTTP/1.1 200")  # the body is under way
    client.close()


def test_mirror_with_a_failing_file_exits_1_and_says_what_to_rerun(
    capsys: pytest.CaptureFixture[str], example_hub: Path, tmp_path: Path
) -> None:
    dest, report_file = tmp_path / "mirror", tmp_path / "r.json"
    broken = {TINYNET_13: Behavior(fail_first=10**6, fail_status=404)}
    with faulty_hub(example_hub, broken) as url:
        code, out, err = cli(
            capsys, "mirror", dest, "--repo", url, "--yes", "--report", report_file
        )
    assert code == 1
    assert "fetched 11 files" in out and "failed 1" in out and "hub ready" not in out
    assert f"asynchub: error: {TINYNET_13}: {url}{TINYNET_13} answered 404" in err
    assert (
        f"run: asynchub mirror {dest} --repo {url} --yes --report {report_file}" in err
    )
    report = json.loads(report_file.read_text())
    assert [f["path"] for f in report["failed"]] == [TINYNET_13]
    assert not (dest / MANIFEST).exists()


def test_mirror_dry_run_json_and_quiet(
    capsys: pytest.CaptureFixture[str], example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    total = sum(p.stat().st_size for p in hub_files(example_hub).values())
    code, out, err = cli(
        capsys, "mirror", dest, "--repo", example_hub, "--dry-run", "--no-data"
    )
    assert code == 0 and err == "" and not dest.exists()
    assert out.startswith("6 files to fetch (") and "of 6 selected" in out
    code, out, err = cli(capsys, "mirror", dest, "--repo", example_hub, "--json")
    report = json.loads(out)
    assert code == 0 and err == ""  # --json: the report only, no progress
    assert (report["files_done"], report["bytes_done"]) == (12, total)
    code, out, err = cli(capsys, "-q", "mirror", tmp_path / "m2", "--repo", example_hub)
    assert code == 0 and err == "" and out.startswith("fetched 12 files")


def test_mirror_shards_cover_the_selection_once(
    capsys: pytest.CaptureFixture[str], example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "shared"
    reports = []
    for index in range(3):
        code, out, _ = cli(
            capsys,
            "mirror",
            dest,
            "--repo",
            example_hub,
            "--shard",
            f"{index}/3",
            "--json",
        )
        assert code == 0
        reports.append(json.loads(out))
    fetched = [f["path"] for r in reports for f in r["done"]]
    assert sorted(fetched) == sorted(hub_files(example_hub))
    assert [r["manifest_written"] for r in reports] == [False, False, True]
    assert (
        Manifest.parse((dest / MANIFEST).read_bytes()).to_json()
        == Manifest.parse((example_hub / MANIFEST).read_bytes()).to_json()
    )


# -------------------------------------------------------- download and cache


def test_download_then_cache_ls_du_verify(
    capsys: pytest.CaptureFixture[str], hub_server: HubServer, cache_dir: Path
) -> None:
    url = f"{hub_server.base}/plain/"
    code, out, _ = cli(capsys, "download", "tinynet", "--repo", url, "--yes")
    assert code == 0 and out.startswith("fetched 1 file (")
    sha = sha256(hub_server.root / TINYNET_17)
    cached = (
        cache_dir / "vision/classification/tinynet/model" / f"{sha}_tinynet-17.onnx"
    )
    assert cached.read_bytes() == (hub_server.root / TINYNET_17).read_bytes()

    code, out, _ = cli(capsys, "cache", "ls", "--json")
    items = [json.loads(line) for line in out.splitlines()]
    models = [i for i in items if i["kind"] == "model"]
    assert code == 0 and len(models) == 1
    assert (models[0]["model"], models[0]["opset"], models[0]["size"]) == (
        "TinyNet",
        17,
        cached.stat().st_size,
    )
    code, out, _ = cli(capsys, "cache", "ls")
    assert code == 0 and "TinyNet" in out and "1 item," in out

    code, out, _ = cli(capsys, "cache", "du", "--json")
    usage = json.loads(out)
    assert code == 0 and usage["by_kind"]["model"] == cached.stat().st_size
    assert usage["total"] == sum(
        p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()
    )

    assert cli(capsys, "cache", "verify")[:2] == (0, "checked 1 item: 0 corrupt\n")
    data = bytearray(cached.read_bytes())
    data[10] ^= 0xFF
    cached.write_bytes(bytes(data))
    code, out, err = cli(capsys, "cache", "verify")
    relative = cached.relative_to(cache_dir).as_posix()
    assert code == 1 and out.startswith(f"CORRUPT {relative}: SHA-256 is ")
    assert "cache verify --fix" in err and cached.exists()
    code, out, _ = cli(capsys, "cache", "verify", "--fix", "--json")
    result = json.loads(out)
    assert code == 0 and result["removed"] == [relative] and not cached.exists()
    assert cli(capsys, "cache", "verify")[:2] == (0, "checked 0 items: 0 corrupt\n")

    code, out, _ = cli(capsys, "download", "TinyNet", "--repo", url, "--yes")
    assert (
        code == 0 and cached.read_bytes() == (hub_server.root / TINYNET_17).read_bytes()
    )


def test_download_all_with_filters(
    capsys: pytest.CaptureFixture[str], example_hub: Path, cache_dir: Path
) -> None:
    code, out, _ = cli(
        capsys,
        "download",
        "--all",
        "--repo",
        example_hub,
        "--tag",
        "vision",
        "--latest-only",
        "--with-data",
        "--json",
    )
    report = json.loads(out)
    assert code == 0 and report["mode"] == "cache" and report["models"] == 3
    assert report["files_done"] == 6 and report["dest"] == str(cache_dir)
    code, out, _ = cli(capsys, "download", "--all", "--repo", example_hub, "--dry-run")
    assert (
        code == 0 and out.startswith("3 files to fetch") and "3 already in place" in out
    )


def test_cache_prune_removes_leftovers_and_superseded_files(
    capsys: pytest.CaptureFixture[str], example_hub: Path, cache_dir: Path
) -> None:
    assert cli(capsys, "download", "TinyNet", "--repo", example_hub)[0] == 0
    folder = cache_dir / "vision/classification/tinynet/model"
    kept = folder / f"{sha256(example_hub / TINYNET_17)}_tinynet-17.onnx"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    state = {
        "url": "x",
        "sha256": None,
        "pid": int(dead.stdout),
        "host": os.uname().nodename,
    }
    (folder / f"{kept.name}.aaaa.asynchub-part").write_bytes(b"x" * 100)
    (folder / f"{kept.name}.aaaa.asynchub-state").write_text(json.dumps(state))
    live = {**state, "pid": os.getpid()}  # a download still running: left alone
    (folder / f"{kept.name}.bbbb.asynchub-part").write_bytes(b"y" * 10)
    (folder / f"{kept.name}.bbbb.asynchub-state").write_text(json.dumps(live))
    (folder / f"{kept.name}.asynchub-lock").write_text("")
    older = folder / f"{'0' * 64}_tinynet-17.onnx"  # same path, another SHA-256
    older.write_bytes(b"old")
    unlisted = folder / f"{'1' * 64}_mystery-9.onnx"
    unlisted.write_bytes(b"??")
    temp = sorted(
        f"vision/classification/tinynet/model/{kept.name}{suffix}"
        for suffix in (".aaaa.asynchub-part", ".aaaa.asynchub-state", ".asynchub-lock")
    )
    superseded = f"vision/classification/tinynet/model/{older.name}"

    code, out, _ = cli(
        capsys, "cache", "prune", "--dry-run", "--json", "--repo", example_hub
    )
    result = json.loads(out)
    assert code == 0 and result["removed"] == sorted([*temp, superseded])
    assert result["dry_run"] is True and len(result["busy"]) == 2 and older.exists()
    code, out, _ = cli(capsys, "cache", "prune", "--temp-only", "--json")
    assert json.loads(out)["removed"] == temp and older.exists()
    code, out, _ = cli(capsys, "cache", "prune", "--repo", example_hub)
    assert code == 0 and out == f"removed {superseded}\nremoved 1 item (3 B)\n"
    assert not older.exists() and unlisted.exists() and kept.exists()
    code, out, _ = cli(capsys, "cache", "prune", "--unlisted", "--repo", example_hub)
    assert code == 0 and not unlisted.exists() and kept.exists()
    assert (folder / f"{kept.name}.bbbb.asynchub-part").exists()


# ---------------------------------------------------- manifest, trust, demo


def test_manifest_build_writes_a_valid_manifest(
    capsys: pytest.CaptureFixture[str], example_hub: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "zoo"
    for relative, path in hub_files(example_hub).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / relative)
    code, out, _ = cli(capsys, "manifest", "build", folder, "--json")
    assert code == 0 and json.loads(out) == {
        "path": str(folder / MANIFEST),
        "entries": 6,
    }
    manifest = Manifest.parse((folder / MANIFEST).read_bytes())
    for entry in manifest:
        meta = entry.metadata
        assert meta.model_sha == sha256(folder / entry.model_path)
        assert meta.model_bytes == (folder / entry.model_path).stat().st_size
        assert meta.model_with_data_path is not None
        assert meta.model_with_data_sha == sha256(folder / meta.model_with_data_path)
        assert meta.io_ports is not None and meta.io_ports.inputs
    assert (
        manifest.to_json()
        == Manifest.parse((example_hub / MANIFEST).read_bytes()).to_json()
    )
    elsewhere = tmp_path / "out" / "hub.json"
    code, out, _ = cli(capsys, "manifest", "build", folder, "--output", elsewhere)
    assert code == 0 and out == f"wrote {elsewhere}: 6 entries\n"
    assert elsewhere.read_text() == (folder / MANIFEST).read_text()


def test_trust_add_and_list(
    capsys: pytest.CaptureFixture[str], example_hub: Path, tmp_path: Path
) -> None:
    with faulty_hub(example_hub, {}) as url:
        code, _, err = cli(capsys, "mirror", tmp_path / "m", "--repo", url, "--no-data")
        assert code == 1 and "not on the trusted list" in err and "--yes" in err
        code, out, _ = cli(capsys, "trust", "add", url)
        assert code == 0 and out.startswith(f"trusted {url} (saved in ")
        assert cli(capsys, "mirror", tmp_path / "m", "--repo", url, "--no-data")[0] == 0
    assert cli(capsys, "trust", "add", "acme/zoo")[1].startswith(
        "trusted acme/zoo:main"
    )
    code, out, _ = cli(capsys, "trust", "list", "--json")
    assert code == 0 and json.loads(out) == ["onnx/models:main", url, "acme/zoo:main"]


def test_demo_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "demo", "--dir", tmp_path / "demo")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("demo passed: 6 of 6 models match")
    assert "loaded TinyNet (opset 17) over HTTP" in err
    assert (tmp_path / "demo" / "mirror" / MANIFEST).is_file()
    mirror = tmp_path / "demo" / "mirror"
    assert err.splitlines()[-1] == (
        f"next: ASYNCHUB_OFFLINE=1 asynchub list --repo {mirror}; in Python, "
        f"hub.load('TinyNet', repo={str(mirror)!r})"
    )


def test_subprocess_entry_points(example_hub: Path) -> None:
    version = run_cli("--version")
    assert (version.returncode, version.stdout) == (0, f"{__version__}\n")
    listed = run_cli("list", "--repo", example_hub, "--json")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 6
    usage = run_cli("mirror")
    assert usage.returncode == 2 and "DEST" in usage.stderr
    script = Path(sys.executable).parent / "asynchub"
    if script.exists():  # installed with pip install -e .: the console script too
        result = subprocess.run(
            [str(script), "--version"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            check=False,
        )
        assert (result.returncode, result.stdout) == (0, f"{__version__}\n")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_demo_draws_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    command = [sys.executable, "-m", "asynchub", "demo"]
    process = subprocess.Popen(
        command,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**subprocess_env(), "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=60) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "overall  12/12 files" in text  # the overall bar: files done / total
    assert "\x1b[" in text and "KiB" in text  # drawn live with sizes
    assert "demo passed: 6 of 6" in text
    # the finished bars are drawn before the lines that follow the mirror
    assert text.rfind("overall  12/12 files") < text.find("mirrored into")
    assert "next: 'asynchub demo --dir D' keeps the mirror" in text
