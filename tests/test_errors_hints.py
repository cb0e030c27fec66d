"""Every error a user can receive: defined in asynchub.errors, rooted, hinted; and
load_composite_model's failures, which are asynchub errors too."""

from __future__ import annotations

import inspect

import onnx
import pytest
from onnx import TensorProto, helper

import asynchub
from asynchub import (
    AsyncHubError,
    CompositeLoadError,
    CompositeMergeError,
    Hub,
    ModelNotFoundError,
    errors,
    hub,
)
from asynchub._composite import Loader, load_pair, merge_composite

from .hub_server import HubServer

# the keyword arguments each class needs beyond its message
_EXTRA: dict[str, dict[str, object]] = {
    "HTTPStatusError": {"status": 418},
    "RemoteFileNotFoundError": {"status": 404},
    "ArchiveUnavailableError": {"status": 404},
    "HubAuthError": {"status": 401},
    "RetryableStatusError": {"status": 503, "url": "u", "retry_after": None},
    "IntegrityError": {"path": "p", "expected": "a", "actual": "b"},
    "MirrorError": {"failures": []},
}


def _make(name: str, hint: str | None = None) -> AsyncHubError:
    cls = getattr(errors, name)
    kwargs = dict(_EXTRA.get(name, {}))
    if hint is not None and "hint" in inspect.signature(cls).parameters:
        kwargs["hint"] = hint
    error: AsyncHubError = cls("something failed", **kwargs)
    return error


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "AsyncHubError"])
def test_every_error_has_a_hint_by_default(name: str) -> None:
    error = _make(name)
    assert error.hint, name
    assert str(error) == f"something failed ({error.hint})"


@pytest.mark.parametrize(
    "name",
    ["ConfigError", "ManifestError", "TransferError", "UnexpectedContentError"]
    + ["CacheError", "MirrorError", "TLSError", "CompositeMergeError"],
)
def test_a_raise_site_hint_replaces_the_default(name: str) -> None:
    assert getattr(errors, name).default_hint
    assert _make(name, hint="do this instead").hint == "do this instead"


def test_http_status_hint_follows_the_status_unless_the_class_has_one() -> None:
    limited = errors.HTTPStatusError("x", status=429)
    assert limited.hint is not None and "rate-limiting" in limited.hint
    assert errors.RetryableStatusError("x", status=503, url="u", retry_after=None).hint
    missing = errors.RemoteFileNotFoundError("x", status=404)
    assert missing.hint == errors.RemoteFileNotFoundError.default_hint


@pytest.mark.parametrize(
    ("name", "bases"),
    [
        ("TLSError", (errors.NetworkError, ConnectionError)),
        ("HostNotFoundError", (errors.NetworkError, ConnectionError)),
        ("RetryableStatusError", (errors.HTTPStatusError, errors.TransferError)),
    ],
)
def test_transfer_errors_a_user_can_receive_are_public(
    name: str, bases: tuple[type[BaseException], ...]
) -> None:
    cls = getattr(errors, name)
    assert cls.__module__ == "asynchub.errors" and name in errors.__all__
    assert getattr(asynchub, name) is cls and name in asynchub.__all__
    assert issubclass(cls, bases)


def test_retryable_status_error_keeps_its_message_and_retry_after() -> None:
    err = errors.RetryableStatusError(
        "u answered 503", status=503, url="u", retry_after=2
    )
    assert err.message == "u answered 503" and err.retry_after == 2
    assert err.status == 503 and err.url == "u"


# load_composite_model ------------------------------------------------------------


def _model(domains: dict[str, int]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]
    )
    opsets = [helper.make_opsetid(d, v) for d, v in domains.items()]
    return helper.make_model(graph, opset_imports=opsets)


def test_models_with_a_custom_domain_at_two_versions_are_a_merge_error() -> None:
    net = _model({"": 13, "com.acme": 1})
    pre = _model({"": 13, "com.acme": 2})
    with pytest.raises(CompositeMergeError, match="com.acme") as caught:
        merge_composite(net, pre, ("Net", "Pre"))
    assert isinstance(caught.value, ValueError)  # what onnx.hub raised
    assert caught.value.hint == CompositeMergeError.default_hint


def test_graphs_that_do_not_connect_are_a_merge_error() -> None:
    net, pre = _model({"": 13}), _model({"": 13})
    pre.graph.node[0].output[0] = "x"  # the same names in both graphs clash
    pre.graph.output[0].name = "x"
    with pytest.raises(CompositeMergeError, match="Can not merge Pre into Net"):
        merge_composite(net, pre, ("Net", "Pre"))


def _loader(
    answers: dict[str, onnx.ModelProto | None | Exception],
) -> Loader:
    async def load(name: str, repo: str) -> onnx.ModelProto | None:
        answer = answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return load


@pytest.mark.anyio
async def test_a_failed_load_is_raised_as_itself_not_in_a_group() -> None:
    missing = ModelNotFoundError("no model named Pre")
    load = _loader({"Net": _model({"": 13}), "Pre": missing})
    with pytest.raises(ModelNotFoundError) as caught:
        await load_pair(load, ("Net", "r"), ("Pre", "r"))
    assert caught.value is missing and isinstance(caught.value, AssertionError)


@pytest.mark.anyio
async def test_when_both_loads_fail_the_preprocessing_error_is_raised() -> None:
    pre, net = ModelNotFoundError("no Pre"), ModelNotFoundError("no Net")
    load = _loader({"Net": net, "Pre": pre})
    with pytest.raises(ModelNotFoundError) as caught:
        await load_pair(load, ("Net", "r"), ("Pre", "r"))
    assert caught.value is pre


@pytest.mark.anyio
@pytest.mark.parametrize("declined", ["Net", "Pre"])
async def test_a_declined_model_is_a_composite_load_error(declined: str) -> None:
    answers: dict[str, onnx.ModelProto | None | Exception] = {
        "Net": _model({"": 13}),
        "Pre": _model({"": 13}),
    }
    answers[declined] = None
    which = "network" if declined == "Net" else "preprocessing"
    with pytest.raises(CompositeLoadError, match=f"the {which} model: {declined}") as e:
        await load_pair(_loader(answers), ("Net", "r"), ("Pre", "r"))
    assert isinstance(e.value, RuntimeError)  # what onnx.hub raised
    assert e.value.hint is not None and "silent=True" in e.value.hint


def test_load_composite_model_raises_model_not_found_itself(
    hub_server: HubServer,
) -> None:
    """Before, the task group wrapped it: an ExceptionGroup escaped."""
    with pytest.raises(ModelNotFoundError, match="NoSuchModel"):
        hub.load_composite_model("NoSuchModel", "TinyMLP-preproc")


def test_load_composite_model_declined_at_the_prompt(hub_server: HubServer) -> None:
    client = Hub(confirm=lambda message: False)
    try:
        with pytest.raises(CompositeLoadError, match="network model: TinyMLP"):
            client.load_composite_model(
                "TinyMLP", "TinyMLP-preproc", network_repo="acme/zoo"
            )
    finally:
        client.close()


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        (
            {"ASYNCHUB_EVENT_LOOP": "trio"},
            "ASYNCHUB_EVENT_LOOP='trio': input should be",
        ),
        (
            {"ASYNCHUB_READ_TIMEOUT": "-3"},
            "ASYNCHUB_READ_TIMEOUT='-3': input should be",
        ),
        ({"ASYNCHUB_TRUST": "lax"}, "ASYNCHUB_TRUST='lax': input should be"),
        (
            {"ASYNCHUB_MIN_SPLIT_SECONDS": "-1"},
            "ASYNCHUB_MIN_SPLIT_SECONDS='-1': input should be greater",
        ),
    ],
)
def test_a_wrong_variable_is_named_in_one_line(
    environ: dict[str, str], says: str
) -> None:
    from asynchub import HubConfig
    from asynchub.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        HubConfig.from_env(environ)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert "pydantic.dev" not in message  # pydantic's own link is not for users
