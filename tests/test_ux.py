"""What a user meets (issue 13): help where they err, the conventions they bring.

Every test goes through a real entry point: the ``asynchub`` command in a
subprocess, or the module API (``from asynchub import hub``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asynchub import hub
from asynchub.errors import ModelNotFoundError

from .hub_server import HubServer
from .test_cli import MANIFEST, TINYNET_13, TINYNET_17, run_cli, sha256, subprocess_env


def _lines(text: str) -> list[str]:
    return text.splitlines()


def run_python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a subprocess with stdin closed (as in CI)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


# ------------------------------------------------------- help where people err


def test_a_misspelled_model_gets_the_closest_names(example_hub: Path) -> None:
    done = run_cli("info", "tinynt", "--repo", example_hub)
    assert done.returncode == 1 and done.stdout == ""
    assert _lines(done.stderr) == [
        "asynchub: error: No models found with name tinynt; did you mean "
        "'TinyNet', 'TinyText' or 'TinyMLP'? (run 'asynchub list' to see the names)"
    ]
    with pytest.raises(ModelNotFoundError, match="did you mean 'TinyNet'"):
        hub.load("tinynet17", repo=str(example_hub))
    done = run_cli("download", "TinyNte", "--repo", example_hub)
    assert done.returncode == 1 and "did you mean 'TinyNet'" in done.stderr


def test_filters_that_select_nothing_say_so_and_exit_1(
    example_hub: Path, cache_dir: Path
) -> None:
    done = run_cli("list", "--model", "tinyne", "--repo", example_hub)
    assert (done.returncode, done.stdout) == (1, "")
    assert "no model is named 'tinyne'; did you mean 'TinyNet'" in done.stderr
    done = run_cli("list", "--tag", "visoin", "--repo", example_hub)
    assert (done.returncode, done.stdout) == (1, "")
    assert _lines(done.stderr) == [
        "asynchub: error: no model has the tag 'visoin'; did you mean 'vision'?"
    ]
    done = run_cli("download", "--all", "--tag", "nosuchtag", "--repo", example_hub)
    assert done.returncode == 1
    assert "nothing to do: no model has the tag 'nosuchtag'" in done.stderr
    assert not any(cache_dir.rglob("*.onnx"))
    done = run_cli("download", "--all", "--opset", "99", "--repo", example_hub)
    assert done.returncode == 1 and "no selected model has opset 99" in done.stderr


def test_cli_errors_use_cli_words(example_hub: Path, hub_server: HubServer) -> None:
    done = run_cli("info", "TinyNet", "--opset", "3", "--repo", example_hub)
    assert done.returncode == 1
    assert _lines(done.stderr) == [
        "asynchub: error: TinyNet has no version with opset 3 (use --opset 13 or "
        "--opset 17, or leave out --opset for the newest)"
    ]
    untrusted = f"{hub_server.base}/plain/"
    done = run_cli("download", "TinyNet", "--repo", untrusted)
    assert done.returncode == 1 and "--yes" in done.stderr
    assert "silent=True" not in done.stderr


def test_force_downloads_again(example_hub: Path, cache_dir: Path) -> None:
    first = run_cli("download", "TinyNet", "--repo", example_hub, "--json")
    assert json.loads(first.stdout)["files_done"] == 1
    again = run_cli("download", "TinyNet", "--repo", example_hub, "--json")
    assert json.loads(again.stdout)["files_done"] == 0
    cached = next(cache_dir.rglob("*_tinynet-17.onnx"))
    cached.write_bytes(b"stale but with a marker")  # fingerprint changes: rehash
    forced = run_cli("download", "TinyNet", "--repo", example_hub, "--force", "--json")
    report = json.loads(forced.stdout)
    assert forced.returncode == 0 and report["files_done"] == 1
    assert sha256(cached) == sha256(example_hub / TINYNET_17)


def test_a_missing_repo_is_one_sentence_cause_first() -> None:
    done = run_cli("list", "--repo", "acme/no-such-zoo")
    assert done.returncode == 1 and done.stdout == ""
    # while the refused connections are retried, notices may say so (issue 9)
    *notices, line = _lines(done.stderr)
    for notice in notices:
        assert notice.startswith("asynchub: warning: still waiting for ")
        assert "127.0.0.1:9 refused" in notice and "; retrying" in notice
        assert "no answer" not in notice
    assert line.startswith("asynchub: error: could not fetch http://127.0.0.1:9/")
    assert "so the manifest of acme/no-such-zoo:main could not be read" in line
    assert "ASYNCHUB_OFFLINE=1" in line
    assert "((" not in line and "))" not in line  # no nested hints


@pytest.mark.parametrize(
    ("folder", "why"),
    [
        ("/dev/null/hub", "/dev/null is not a folder"),
        ("/proc/asynchub-test/hub", "cannot be used for downloads"),
    ],
)
def test_an_impossible_cache_dir_is_one_error_without_a_rerun(
    example_hub: Path, folder: str, why: str
) -> None:
    done = run_cli("--cache-dir", folder, "download", "TinyNet", "--repo", example_hub)
    assert done.returncode == 1
    errors = [line for line in _lines(done.stderr) if "error:" in line]
    assert len(errors) == 1 and why in errors[0] and "--cache-dir" in errors[0]
    assert "run: asynchub" not in done.stderr and "hub.set_dir" not in done.stderr


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into read-only folders",
)
def test_a_read_only_cache_dir_is_one_error(example_hub: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    done = run_cli("--cache-dir", folder, "download", "TinyNet", "--repo", example_hub)
    assert done.returncode == 1 and "run: asynchub" not in done.stderr
    assert "cannot be used for downloads" in done.stderr


def test_serve_of_a_missing_folder_is_one_error(tmp_path: Path) -> None:
    done = run_cli("serve", tmp_path / "nope", "--port", "0")
    assert done.returncode == 2
    assert _lines(done.stderr) == [
        f"asynchub: error: {tmp_path / 'nope'} is not a folder (give the hub folder "
        "that holds ONNX_HUB_MANIFEST.json)"
    ]


def test_the_sync_prompt_with_stdin_closed_raises_untrusted(
    hub_server: HubServer,
) -> None:
    url = f"{hub_server.base}/plain/"
    done = run_python(
        "from asynchub import hub\n"
        "from asynchub.errors import UntrustedRepoError\n"
        "try:\n"
        f"    hub.load('TinyNet', repo={url!r})\n"
        "except UntrustedRepoError as exc:\n"
        "    print('\\nmessage:', exc.message)\n"
        "    print('hint:', exc.hint)\n"
    )
    assert done.returncode == 0, done.stderr
    lines = _lines(done.stdout)
    assert lines[-2].endswith("Nobody can answer the prompt: stdin is closed")
    assert lines[-1].startswith("hint: pass silent=True if you trust it")
    assert "EOFError" not in done.stderr


def test_the_shipped_manifest_warning_appears_once_per_process() -> None:
    done = run_python(
        "from asynchub import Hub, hub\n"
        "for _ in range(2):\n"
        "    with Hub() as client:\n"
        "        client.list_models()\n"
        "hub.list_models()\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("using the manifest shipped with asynchub") == 1


# ------------------------------------------------ the conventions users bring


def test_download_quiet_prints_the_local_paths_only(
    example_hub: Path, cache_dir: Path
) -> None:
    done = run_cli("download", "TinyNet", "TinyMLP", "--repo", example_hub, "-q")
    assert done.returncode == 0 and done.stderr == ""
    paths = [Path(line) for line in _lines(done.stdout)]
    assert len(paths) == 2 and all(
        p.is_file() and cache_dir in p.parents for p in paths
    )
    assert sha256(paths[1]) == sha256(example_hub / TINYNET_17)
    again = run_cli("download", "TinyNet", "--repo", example_hub, "-q")  # cached
    assert again.stdout == f"{paths[1]}\n"


def test_download_local_dir_is_a_hub_folder(example_hub: Path, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    done = run_cli(
        "download", "TinyNet", "--opset", "13", "--local-dir", dest,
        "--repo", example_hub, "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _lines(done.stdout) == [str(dest / TINYNET_13)]
    assert (dest / TINYNET_13).read_bytes() == (example_hub / TINYNET_13).read_bytes()
    listed = run_cli("list", "--repo", dest, "--json")
    assert [json.loads(line)["model"] for line in _lines(listed.stdout)] == ["TinyNet"]


def test_include_and_exclude_patterns(example_hub: Path, tmp_path: Path) -> None:
    only = tmp_path / "onnx-only"
    done = run_cli("mirror", only, "--repo", example_hub, "--include", "*.onnx")
    assert done.returncode == 0, done.stderr
    files = {p.name for p in only.rglob("*") if p.is_file()}
    assert files and not any(name.endswith(".tar.gz") for name in files)
    without = tmp_path / "no-tinynet"
    done = run_cli("mirror", without, "--repo", example_hub, "--exclude", "*tinynet*")
    assert done.returncode == 0, done.stderr
    assert not list(without.rglob("*tinynet*"))
    models = {e["model"] for e in json.loads((without / MANIFEST).read_text())}
    assert "TinyNet" not in models and "TinyMLP" in models
    done = run_cli("download", "--all", "--repo", example_hub, "--include", "*.zip")
    assert done.returncode == 1 and "no file passes --include/--exclude" in done.stderr


def test_cache_ls_names_folder_repo_models_and_prune_keeps_them(
    example_hub: Path, cache_dir: Path
) -> None:
    assert (
        run_cli("download", "--all", "--repo", example_hub, "--with-data").returncode
        == 0
    )
    done = run_cli("cache", "ls")
    lines = _lines(done.stdout)
    assert done.returncode == 0 and lines[0].split() == [
        "model", "opset", "size", "last", "used", "repo", "file",
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:-1]]
    names = [(row[0], int(row[1])) for row in rows]
    assert names == sorted(names, key=lambda n: (n[0].casefold(), n[1]))
    assert all(
        row[0] != "-" and str(example_hub).endswith(row[-2].lstrip("…")) for row in rows
    )
    assert all(len(line) <= 100 and line == line.rstrip() for line in lines)
    sha = sha256(example_hub / TINYNET_13)
    assert any(row[-1] == f"{sha[:8]}_tinynet-13.onnx" for row in rows)
    assert lines[-1].startswith(f"{len(rows)} items, ")
    before = {p for p in cache_dir.rglob("*") if ".asynchub" not in p.parts}
    done = run_cli("cache", "prune", "--unlisted")
    assert done.returncode == 0 and done.stdout == "removed 0 items (0 B)\n"
    assert {p for p in cache_dir.rglob("*") if ".asynchub" not in p.parts} == before
    scanned = hub.scan_cache()
    assert len(scanned) == len(rows) and all(item.model for item in scanned)


def test_cache_rm_and_its_python_twin(
    example_hub: Path, cache_dir: Path, no_stamps: None
) -> None:
    assert (
        run_cli("download", "--all", "--repo", example_hub, "--with-data").returncode
        == 0
    )
    path = hub.download_model("TinyNet", repo=str(example_hub), opset=13)
    assert (
        path is not None
        and path.read_bytes() == (example_hub / TINYNET_13).read_bytes()
    )
    assert hub.get_dir() in str(path)
    done = run_cli("cache", "rm", "TinyNet", "--opset", "13")
    assert done.returncode == 0 and done.stdout.startswith("removed 2 items")
    assert not path.exists()
    left = {(i.model, i.opset) for i in hub.scan_cache()}
    assert ("TinyNet", 17) in left and ("TinyNet", 13) not in left
    done = run_cli("cache", "rm", "tinynt")
    assert done.returncode == 1 and "did you mean 'TinyNet'" in done.stderr
    assert "hub.scan_cache" not in done.stderr
    result = hub.remove_cached_model("tinynet")
    assert len(result.removed) == 2 and not any(
        i.model == "TinyNet" for i in hub.scan_cache()
    )
    extracted = hub.download_model_with_test_data("TinyMLP", repo=str(example_hub))
    assert extracted is not None and Path(extracted).is_dir()
    hub.remove_cached_model("TinyMLP")
    assert not Path(extracted).exists() and not list(cache_dir.rglob("*tinymlp-13*"))
    assert not [
        m
        for m in (cache_dir / ".asynchub" / "verified").glob("*.json")
        if "tinymlp-13" in m.read_text()
    ]


def test_trust_lives_in_the_config_folder(tmp_path: Path, cache_dir: Path) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "asynchub" / "trusted_repos.json"
    old = cache_dir / ".asynchub" / "trusted_repos.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps(["acme/old:main"]))
    listed = run_cli("trust", "list", "--json")
    assert json.loads(listed.stdout) == ["onnx/models:main", "acme/old:main"]
    done = run_cli("trust", "add", "acme/zoo")
    assert done.returncode == 0 and str(config) in done.stdout
    assert json.loads(config.read_text()) == ["acme/old:main", "acme/zoo:main"]
    other = run_cli("--cache-dir", tmp_path / "elsewhere", "trust", "list", "--json")
    assert json.loads(other.stdout)[-1] == "acme/zoo:main"
    done = run_cli("trust", "remove", "acme/zoo")
    assert done.returncode == 0 and "no longer trusted: acme/zoo:main" in done.stdout
    assert json.loads(config.read_text()) == ["acme/old:main"]
    done = run_cli("trust", "remove", "acme/zoo")
    assert done.returncode == 2 and "not on the saved trusted list" in done.stderr
    done = run_cli("trust", "remove", "onnx/models")
    assert done.returncode == 2 and "trusted by default" in done.stderr


def test_tables_are_sorted_and_not_padded(example_hub: Path) -> None:
    done = run_cli("list", "--repo", example_hub)
    lines = _lines(done.stdout)
    assert all(line == line.rstrip() for line in lines)
    keys = [(line.split()[0].casefold(), int(line.split()[1])) for line in lines[1:]]
    assert keys == sorted(keys) and len(keys) == 6
    done = run_cli("download", "TinyNet", "--repo", example_hub)
    assert done.stdout.startswith("fetched 1 file (")
    assert done.stderr.startswith("1 of 1 file to fetch")
    done = run_cli("download", "TinyMLP", "--repo", example_hub, "--dry-run")
    assert done.stdout.startswith("1 file to fetch")
