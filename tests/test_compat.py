"""Old ``onnx.hub`` scripts, unchanged but for one added line, against a local hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from asynchub import compat
from asynchub.hosting._build import write_manifest

from .hub_server import HubServer

ADDED_LINE = "import asynchub.compat; asynchub.compat.install()\n"

# Scripts as public users wrote them for onnx.hub (see the issue); only ADDED_LINE
# is prepended.
SCRIPTS = {
    "zoo_test": """
        import onnx
        import onnx.hub

        models = onnx.hub.list_models()
        names = sorted({m.model.lower() for m in models})
        info = onnx.hub.get_model_info(models[0].model)
        inputs = info.metadata["io_ports"]["inputs"]
        print("NAMES", ",".join(names))
        print("INPUTS", inputs[0]["name"])
        print("DIR", onnx.hub._ONNX_HUB_DIR)
    """,
    "by_size": """
        from onnx import hub

        models = sorted(hub.list_models(), key=lambda m: m.metadata["model_bytes"])
        print("SMALLEST", models[0].model, models[0].opset)
    """,
    "load_mnist": """
        import onnx
        from onnx import hub

        model = hub.load("mnist")
        onnx.checker.check_model(model)
        print("LOADED", model.graph.name)
    """,
    "composite": """
        from onnx import hub

        model = hub.load_composite_model("TinyMLP", "TinyMLP-preproc")
        print("NODES", len(model.graph.node))
    """,
}


@pytest.fixture
def zoo(tmp_path: Path, example_hub: Path) -> Iterator[dict[str, str]]:
    """The example hub plus an ``mnist``, served in the official zoo's layouts."""
    root = tmp_path / "zoo"
    shutil.copytree(example_hub, root)
    model = onnx.load(str(root / "vision/classification/tinynet/model/tinynet-13.onnx"))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"model_name": "MNIST"})
    mnist = root / "vision/classification/mnist/model/mnist-8.onnx"
    mnist.parent.mkdir(parents=True)
    onnx.save(model, str(mnist))
    write_manifest(root)
    server = HubServer(root).start()
    env = {**os.environ, **server.env()}
    yield env
    server.stop()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_old_script_runs_unchanged(
    name: str, zoo: dict[str, str], tmp_path: Path, cache_dir: Path
) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text(ADDED_LINE + textwrap.dedent(SCRIPTS[name]))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=zoo,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    if name == "zoo_test":
        assert "mnist" in out and "tinynet" in out
        assert f"DIR {cache_dir}" in out
    elif name == "load_mnist":
        assert "LOADED" in out
    elif name == "composite":
        assert "NODES" in out
    else:
        assert "SMALLEST" in out


def test_without_the_line_onnx_hub_is_not_asynchub() -> None:
    import asynchub.hub

    compat.uninstall()
    assert getattr(onnx, "hub", None) is not asynchub.hub
    assert compat.install() is asynchub.hub
    from onnx import hub

    assert hub is asynchub.hub
    import onnx.hub as imported

    assert imported is asynchub.hub
    assert hub._verify_repo_ref("onnx/models:main")
    assert not hub._verify_repo_ref("acme/zoo:main")
    compat.uninstall()
