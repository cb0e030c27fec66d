"""The public surface: complete ``__all__``s, sync/async parity, error compatibility."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import pytest

import asynchub
from asynchub import client, errors, hub


def _public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__).startswith("asynchub")
        and (callable(value) or isinstance(value, type))
    }


def test_package_all_is_sorted_and_complete() -> None:
    names = list(asynchub.__all__)
    assert names == sorted(names, key=str.casefold) or names == sorted(names)
    assert all(hasattr(asynchub, n) for n in names)
    exported_errors = {n for n in errors.__all__}
    assert exported_errors <= set(names)
    assert {"AsyncHub", "Hub", "HubConfig", "hub", "ModelInfo"} <= set(names)


@pytest.mark.parametrize("module", [hub, errors, client])
def test_module_all_lists_every_public_definition(module: types.ModuleType) -> None:
    defined_here = {
        n
        for n in _public_names(module)
        if getattr(module, n).__module__ == module.__name__
    }
    assert defined_here <= set(module.__all__)


ONNX_HUB_FUNCTIONS = [
    "list_models",
    "get_model_info",
    "load",
    "download_model_with_test_data",
    "load_composite_model",
]


@pytest.mark.parametrize("name", ONNX_HUB_FUNCTIONS)
def test_sync_and_async_twins_have_the_same_parameters(name: str) -> None:
    sync_sig = inspect.signature(getattr(hub, name))
    async_sig = inspect.signature(getattr(hub, "a" + name))
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    assert inspect.iscoroutinefunction(getattr(hub, "a" + name))


@pytest.mark.parametrize("name", ONNX_HUB_FUNCTIONS)
def test_client_methods_match_the_module_functions(name: str) -> None:
    module_params = list(inspect.signature(getattr(hub, name)).parameters)
    for cls in (client.AsyncHub, client.Hub):
        method_params = list(inspect.signature(getattr(cls, name)).parameters)[1:]
        assert method_params == module_params, cls


def test_onnx_hub_defaults_kept() -> None:
    sig = inspect.signature(hub.load)
    assert sig.parameters["repo"].default == "onnx/models:main"
    assert sig.parameters["opset"].default is None
    assert sig.parameters["force_reload"].default is False
    assert sig.parameters["silent"].default is False
    assert inspect.signature(hub.set_dir).parameters["new_dir"]


@pytest.mark.parametrize(
    "cls",
    [
        errors.ManifestNotFoundError,
        errors.ModelNotFoundError,
        errors.OpsetNotFoundError,
        errors.IntegrityError,
    ],
)
def test_old_assertion_errors_still_catchable(cls: type[Exception]) -> None:
    assert issubclass(cls, AssertionError)
    assert issubclass(cls, errors.AsyncHubError)


def test_every_error_is_rooted_and_hinted() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.AsyncHubError)
    err = errors.DiskFullError("could not write x: No space left on device")
    assert "free some space" in str(err) and err.hint


@pytest.mark.parametrize("module", ["asynchub", "asynchub.cli"])
def test_import_does_not_pull_in_onnx_or_numpy(module: str) -> None:
    """onnx and numpy take ~0.15 s to import; only loading a model needs them."""
    heavy = "{'onnx', 'numpy'}"
    code = f"import sys, {module}; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_engine_import_leaves_clients_and_mirror_unloaded() -> None:
    """The package exports its clients lazily (PEP 562): the engine starts faster."""
    code = (
        "import sys, asynchub._transfer; "
        "print(sorted(m for m in ('asynchub.client', 'asynchub.mirror', "
        "'asynchub.manifest') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_lazy_exports_resolve_and_unknown_names_fail() -> None:
    assert asynchub.AsyncHub is client.AsyncHub
    assert set(dir(asynchub)) >= set(asynchub.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        asynchub.nope  # noqa: B018
