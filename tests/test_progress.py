"""Progress where people wait (issue 13): the module API's bars.

A real notebook runs in a real Jupyter kernel (nbclient + ipykernel) and loads a
model over a slow local server: the cell's output is a bar updated in place. Off
by ``ASYNCHUB_PROGRESS=0``; nothing at all when output is not interactive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .harness import Behavior
from .test_cli import TINYNET_17, faulty_hub
from .test_ux import run_python

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO_ROOT = Path(__file__).resolve().parents[1]
SLOW = {TINYNET_17: Behavior(rate=200)}  # 312 bytes in about 1.5 s


def _texts(outputs: list[Any]) -> list[str]:
    """Every text/plain shown by a cell, in order (display updates included)."""
    found = []
    for output in outputs:
        data = output.get("data", {})
        if "text/plain" in data:
            found.append(data["text/plain"])
        elif output.get("output_type") == "stream":
            found.append(output["text"])
    return found


def _run_notebook(cells: list[str], tmp_path: Path) -> list[Any]:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(
        notebook,
        timeout=90,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return [cell.outputs for cell in notebook.cells]


@pytest.mark.slow
def test_a_slow_load_in_a_notebook_shows_a_bar(
    example_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    with faulty_hub(example_hub, SLOW) as url:
        outputs = _run_notebook(
            [
                "from asynchub import hub\n"
                f"model = hub.load('TinyNet', repo={url!r}, silent=True)\n"
                "print('graph', model.graph.name)",
                "import os\n"
                "os.environ['ASYNCHUB_PROGRESS'] = '0'\n"
                f"hub.load('TinyNet', repo={url!r}, silent=True, force_reload=True)\n"
                "print('done')",
            ],
            tmp_path,
        )
    shown = _texts(outputs[0])
    bars = [text for text in shown if "tinynet-17.onnx" in text]
    assert len(bars) == 1, shown  # one output, updated in place
    assert "312/312 bytes" in bars[0] and "\x1b[" not in bars[0]
    assert "B/s" in bars[0]
    assert "kB/s" not in "".join(bars)  # one unit system: binary, as the summaries
    assert shown[-1].startswith("graph ")
    assert _texts(outputs[1]) == ["done\n"]  # switched off: no bar


def test_no_bar_when_output_is_not_interactive(example_hub: Path) -> None:
    with faulty_hub(example_hub, SLOW) as url:
        done = run_python(
            "from asynchub import hub\n"
            f"hub.download_model('TinyNet', repo={url!r}, silent=True)\n"
            "print('ok')\n"
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n" and "tinynet" not in done.stderr


def test_switches_in_the_config() -> None:
    from asynchub import HubConfig

    assert HubConfig.from_env({}).progress_bars is True
    assert HubConfig.from_env({"ASYNCHUB_PROGRESS": "0"}).progress_bars is False
    off = {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    assert HubConfig.from_env(off).progress_bars is False
    assert HubConfig.from_env({**off, "ASYNCHUB_PROGRESS": "1"}).progress_bars is True


def test_resumed_bytes_fill_the_bar_but_are_not_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI's bars after a resume: 90 MiB were on disk, 1 MiB arrives in 1 s."""
    import io

    from rich.console import Console

    from asynchub._transfer import FileProgress, FileStarted, FileVerified
    from asynchub._transfer.spec import FileResult
    from asynchub.cli._output import Output, ProgressDisplay
    from asynchub.mirror import MirrorPlan

    mib = 1024 * 1024
    clock = [100.0]
    output = Output()
    output.err = Console(file=io.StringIO(), width=120, force_terminal=True)
    monkeypatch.setattr(output.err, "get_time", lambda: clock[0])
    display = ProgressDisplay(output, style="bars")
    with display:
        display.plan(MirrorPlan(1, 91 * mib, 1, 91 * mib, 0, 0))
        dest = Path("/nowhere/m.onnx")
        display.event(FileStarted("m.onnx", dest, 91 * mib))
        display.event(FileProgress("m.onnx", 90 * mib, 91 * mib))  # resumed
        bars = display._bars
        assert bars is not None
        for step in range(1, 11):
            clock[0] += 0.1
            display.event(FileProgress("m.onnx", 90 * mib + step * mib // 10, 91 * mib))
        speeds = {task.description: task.speed for task in bars.tasks}
        overall = next(t for t in bars.tasks if t.description.startswith("overall"))
        assert overall.total == 1 * mib  # the bytes this run moves
        for speed in speeds.values():
            assert speed is not None and speed < 1.5 * mib, speeds  # not 90 MiB/s
        result = FileResult(dest, "0" * 64, 91 * mib, "http://x/", mib, 90 * mib)
        display.event(FileVerified("m.onnx", result))


def test_a_slow_load_on_a_terminal_draws_a_rich_bar(example_hub: Path) -> None:
    import os
    import subprocess
    import sys

    from .test_cli import subprocess_env

    with faulty_hub(example_hub, SLOW) as url:
        primary, secondary = os.openpty()
        code = (
            "from asynchub import hub\n"
            f"hub.download_model('TinyNet', repo={url!r}, silent=True)\n"
            "print('ok')\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code],
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
    assert "tinynet-17.onnx" in text and "312/312 bytes" in text and "\x1b[" in text
    assert "kB/s" not in text and text.rstrip().endswith("ok")
