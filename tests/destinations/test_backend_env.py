"""LangWatch, Opik, Traceloop, Arize and Openlayer from the environment, and as values.

``TracingService.from_env()`` enables each exactly when Langflow 1.13's tracer for it is
enabled (``langflow/services/tracing/{langwatch,opik,traceloop,arize_phoenix,openlayer}.py``):

- LangWatch: ``LANGWATCH_API_KEY`` set;
- Opik: ``OPIK_URL_OVERRIDE`` or ``OPIK_API_KEY`` set;
- Traceloop: ``TRACELOOP_API_KEY`` non-blank (and a ``TRACELOOP_BASE_URL`` with a host);
- Arize AX: ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID`` both set;
- Openlayer: ``OPENLAYER_API_KEY`` and a pipeline for the run's flow.

Where Langflow silently disables a half-configured tracer, tracemux raises ``ConfigError``
naming the variable (tested per backend in ``test_<backend>.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.destinations.conftest import CaptureServer
from tracemux import TracingService
from tracemux.config import destinations_from_env
from tracemux.destinations import Arize, LangWatch, Openlayer, Opik, SQLiteStore, Traceloop
from tracemux.destinations.env import remote_destinations_from_env

KEY = "key-0123456789abcdef0123"

ENABLING: dict[type, dict[str, str]] = {
    LangWatch: {"LANGWATCH_API_KEY": KEY},
    Opik: {"OPIK_URL_OVERRIDE": "http://127.0.0.1:5173/api"},
    Traceloop: {"TRACELOOP_API_KEY": KEY},
    Arize: {"ARIZE_API_KEY": KEY, "ARIZE_SPACE_ID": "space"},
    Openlayer: {"OPENLAYER_API_KEY": KEY, "OPENLAYER_INFERENCE_PIPELINE_ID": "pipe"},
}


@pytest.mark.parametrize("kind", list(ENABLING), ids=lambda k: k.__name__)
def test_each_is_enabled_by_langflows_variables_alone(kind: type) -> None:
    (dest,) = remote_destinations_from_env(ENABLING[kind])
    assert type(dest) is kind


def test_all_at_once_with_the_local_store(tmp_path: object) -> None:
    env = {k: v for e in ENABLING.values() for k, v in e.items()}
    env["TRACEMUX_DB"] = f"{tmp_path}/traces.db"
    dests = destinations_from_env(env)
    assert [type(d) for d in dests] == [SQLiteStore, LangWatch, Opik, Traceloop, Arize, Openlayer]
    svc = TracingService.from_env(env)
    try:
        assert [type(d) for d in svc.destinations] == [type(d) for d in dests]
        labels = " ".join(d.describe() for d in svc.destinations) + repr(svc.stats())
        assert KEY not in labels
    finally:
        svc.shutdown(5)


def test_equal_configuration_is_one_value() -> None:
    for kind, env in ENABLING.items():
        a, b = remote_destinations_from_env(env), remote_destinations_from_env(dict(env))
        assert a == b and hash(a[0]) == hash(b[0]), kind.__name__
    assert LangWatch(api_key=KEY) != LangWatch(api_key=KEY + "x")
    assert Opik(url="http://h/api", workspace="a") != Opik(url="http://h/api", workspace="b")
    assert Openlayer(api_key=KEY, pipelines={"A": "p1", "B": "p2"}) == Openlayer(
        api_key=KEY, pipelines={"B": "p2", "A": "p1"}
    )


def test_tenants_use_their_own_credentials_per_run(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([LangWatch(api_key="sk-lw-default-000000000", endpoint=capture.url)])
    tenants = {
        "acme": Opik(url=capture.url + "/api", api_key="opik-acme-0000000000", workspace="acme"),
        "globex": Opik(url=capture.url + "/api", api_key="opik-globex-00000000", workspace="gx"),
    }
    for tenant, dest in tenants.items():
        with svc.trace_run(f"{tenant}-flow", destinations=[dest]) as run, run.span("step"):
            pass
    with svc.trace_run("default-flow"):
        pass
    assert svc.flush(10)
    seen = {}
    for req in capture.snapshot():
        if req.path.endswith("/traces/batch"):
            for trace in req.json()["traces"]:
                seen[trace["name"]] = (req.headers["comet-workspace"], req.headers["authorization"])
    assert seen == {
        "acme-flow": ("acme", "opik-acme-0000000000"),
        "globex-flow": ("gx", "opik-globex-00000000"),
    }
    (lw,) = capture.trace_requests()
    assert {s.name for s in capture.spans()} == {"default-flow"}
    assert lw.headers["authorization"] == "Bearer sk-lw-default-000000000"


@pytest.mark.parametrize(
    "bad",
    [
        {"api_key": "has space"},
        {"api_key": "line\nbreak"},
        {"timeout": 0},
        {"timeout": float("nan")},
    ],
)
@pytest.mark.parametrize("kind", list(ENABLING), ids=lambda k: k.__name__)
def test_garbage_settings_fail_at_configuration_time(kind: type, bad: dict) -> None:
    from tracemux.config import ConfigError

    base = {
        LangWatch: {"api_key": KEY},
        Opik: {"url": "http://127.0.0.1/api", "api_key": KEY},
        Traceloop: {"api_key": KEY},
        Arize: {"api_key": KEY, "space_id": "s"},
        Openlayer: {"api_key": KEY, "pipeline_id": "p"},
    }[kind]
    with pytest.raises(ConfigError) as exc:
        kind(**{**base, **bad})
    assert "has space" not in str(exc.value) and "break" not in str(exc.value)
