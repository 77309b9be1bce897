"""tracemux as the tracing service of the real Langflow 1.13 (lfx and langflow-base from PyPI).

Each test runs real flows in a subprocess, in a side environment built by
``tracemux.bench.sidevenv`` (``lfx==1.13.*``: ~570 MB, ~1 min; ``langflow-base==1.13.*``: ~1.8 GB,
~2.5 min, the first time only), with tracemux registered the documented way: an
``lfx.toml`` in ``LANGFLOW_CONFIG_DIR``. The flows themselves are in
:mod:`tracemux.bench.langflow_side` (shared with ``tracemux bench``).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.destinations.conftest import CaptureServer, Reply
from tests.integrations.support import clean_environ
from tracemux.bench.sidevenv import side_venv
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredSpan

# slow; the first run on a clean machine builds the side venvs inside a fixture (minutes)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

LFX_REQUIREMENTS = ["lfx==1.13.*"]
LANGFLOW_REQUIREMENTS = ["langflow-base==1.13.*"]

#: variables of the test machine that must not leak into the flows' environment


@pytest.fixture(scope="module")
def lfx_python() -> Path:
    return side_venv("lfx113", LFX_REQUIREMENTS, upgrade_pip=True)


@pytest.fixture(scope="module")
def langflow_python() -> Path:
    return side_venv("langflow113", LANGFLOW_REQUIREMENTS, upgrade_pip=True)


@pytest.fixture
def langfuse_server() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    yield server
    server.stop()


def run_side(
    python: Path,
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    register: str = "tracemux",
    timeout: float = 300,
) -> dict[str, Any]:
    """Run :mod:`tracemux.bench.langflow_side` with ``args``; its JSON result. ``register``:
    the tracing service the ``lfx.toml`` in ``LANGFLOW_CONFIG_DIR`` names (``tracemux``,
    ``stock`` for Langflow's own, ``none`` for no file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **clean_environ(),
        "TMPDIR": str(workdir),  # Langflow's lock files and telemetry outbox stay here
        "LANGFLOW_CONFIG_DIR": str(workdir),
        "LANGFLOW_DATABASE_URL": f"sqlite:///{workdir / 'langflow.db'}",
        "DO_NOT_TRACK": "true",
        "TRACEMUX_DB": str(workdir / "traces.db"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "tracemux.bench.langflow_side",
            *args,
            "--register",
            register,
        ],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    sys.stderr.write(f"[{' '.join(args)}] {json.dumps(_figures(result))}\n")
    return result


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("ms_per_run", "lag_p99_ms", "lag_max_ms", "threads_before", "threads_after")
    return {k: result[k] for k in keys if k in result}


def runs_by_name(store: SQLiteStore) -> dict[str, Any]:
    """Stored runs by flow name (lfx names a run ``<flow name> - <flow id>``)."""
    return {run.name.split(" - ")[0]: run for run in store.runs(limit=1000)}


def children(spans: list[StoredSpan], parent: StoredSpan) -> list[str]:
    return sorted(s.name for s in spans if s.parent_id == parent.span_id)


def span_named(spans: list[StoredSpan], name: str) -> StoredSpan:
    (found,) = [s for s in spans if s.name == name]
    return found


# -- flows --------------------------------------------------------------------------------


def test_real_flows_store_the_component_tree_langchain_runs_and_errors(
    lfx_python: Path, tmp_path: Path
) -> None:
    result = run_side(lfx_python, tmp_path / "flows", "flows", "--concurrent", "20")
    assert result["service"] == "tracemux.integrations.langflow.TracingService"
    assert result["is_lfx_service"]  # a real lfx BaseTracingService, built by lfx
    errors = result["errors"]
    assert {k for k, v in errors.items() if v} == {"boom-arun", "boom-start"}
    assert "boom from the component" in errors["boom-arun"]

    store = SQLiteStore(tmp_path / "flows" / "traces.db")
    runs = runs_by_name(store)
    assert len(runs) == 6 + 20
    for name, run in runs.items():
        spans = store.spans(run.run_id)
        root = span_named(spans, run.name)
        assert run.project == "Langflow"  # Langflow's default project name
        assert run.session_id == f"session-{name}"
        kind = name.split("-")[0]
        middle = {"chat": [], "chain": ["Chain (chain)"], "conc": ["Chain (chain)"]}.get(
            kind, ["Boom (boom)"]
        )
        assert children(spans, root) == sorted(
            ["Chat Input (chat_input)", *middle]
            + ([] if kind == "boom" else ["Chat Output (chat_output)"])
        ), name
        if kind in ("chain", "conc"):
            chain = span_named(spans, "Chain (chain)")
            (sequence,) = [s for s in spans if s.parent_id == chain.span_id]
            assert sequence.name == "RunnableSequence"
            assert children(spans, sequence) == [
                "ChatPromptTemplate",
                "FakeListChatModel",
                "StrOutputParser",
            ]
            llm = span_named(spans, "FakeListChatModel")
            assert llm.kind == "llm" and "pong" in json.dumps(llm.outputs)
            if kind == "conc":  # each concurrent run has its own question, nested right
                assert f"question {int(name[5:])}" in json.dumps(sequence.inputs)
            assert run.status == "ok"
        if kind == "boom":
            boom = span_named(spans, "Boom (boom)")
            assert boom.status == "error"
            assert "boom from the component" in boom.error["traceback"]
            assert run.status == "error"
    # Graph.arun ends the run with the error; Graph.async_start never calls end_tracers:
    # the run is ended as incomplete (here at teardown, when Langflow shuts down)
    assert "boom from the component" in runs["boom-arun"].error["message"]
    assert runs["boom-start"].error["type"] == "IncompleteRun"
    stats = result["stats"]
    assert stats["incomplete_runs"] == 1 and stats["open_runs"] == 0
    assert stats["dropped_total"] == 0 and stats["exported"] == stats["recorded"]


# -- registration -------------------------------------------------------------------------


def test_installing_tracemux_does_not_take_over_langflow(lfx_python: Path, tmp_path: Path) -> None:
    """No ``lfx.services`` entry point: without the lfx.toml, lfx has no tracing service;
    with it, tracemux's; with ``LANGFLOW_DEACTIVATE_TRACING`` nothing is recorded."""
    code = (
        "from importlib.metadata import entry_points;"
        "print([e.value for e in entry_points(group='lfx.services')])"
    )
    eps = subprocess.run(
        [str(lfx_python), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "tracemux" not in eps

    plain = run_side(lfx_python, tmp_path / "plain", "rotation", "--runs", "2", register="none")
    assert plain["service"] == "builtins.NoneType"
    assert not (tmp_path / "plain" / "traces.db").exists()

    off = run_side(
        lfx_python,
        tmp_path / "off",
        "rotation",
        "--runs",
        "2",
        env={"LANGFLOW_DEACTIVATE_TRACING": "true"},
    )
    assert off["service"] == "tracemux.integrations.langflow.TracingService"
    assert off["stats"]["recorded"] == 0


# -- per-run credentials, threads, loop lag ---------------------------------------------------


def _auth_public_key(headers: dict[str, str]) -> str:
    raw = base64.b64decode(headers["authorization"].split(" ", 1)[1]).decode()
    return raw.split(":", 1)[0] + "|" + raw.split(":", 1)[1]


def test_a_new_langfuse_key_pair_per_run_adds_one_thread_and_each_run_uses_its_keys(
    lfx_python: Path, tmp_path: Path, langfuse_server: CaptureServer
) -> None:
    runs = 200
    result = run_side(
        lfx_python,
        tmp_path / "rotation",
        "rotation",
        "--runs",
        str(runs),
        "--rotate",
        env={"LANGFUSE_BASE_URL": langfuse_server.url},
    )
    # the only thread the 200 runs (200 tenants) may leave behind: tracemux's export thread
    # (already started by the warm-up run when it had a destination, the local store)
    assert set(result["new_threads"]) <= {"tracemux-export"}, result["new_threads"]
    assert result["threads_after"] <= result["threads_before"] + 1
    assert result["tracemux_threads"] == ["tracemux-export"], result
    seen: dict[str, str] = {}
    for span in langfuse_server.spans():
        if span.parent_span_id:
            continue
        name = span.name.split(" - ")[0]
        if name.startswith("rot-"):
            seen[name] = _auth_public_key(span.request.headers)
    assert len(seen) == runs
    for name, keys in seen.items():
        i = name[4:]
        assert keys == f"pk-lf-{i}|sk-lf-{i}", (name, keys)
    assert result["stats"]["dropped_total"] == 0


def test_event_loop_lag_with_a_backend_answering_in_half_a_second(
    lfx_python: Path, tmp_path: Path, langfuse_server: CaptureServer
) -> None:
    """Stock Langflow stalls its loop ~1 s per run here (a blocking auth check and flush);
    the figure is reported, and only a generous bound is asserted (machines are noisy)."""
    langfuse_server.respond = lambda req: Reply(
        200, {"Content-Type": "application/x-protobuf"}, b"", delay=0.5
    )
    result = run_side(
        lfx_python,
        tmp_path / "lag",
        "looplag",
        "--runs",
        "100",
        env={
            "LANGFUSE_BASE_URL": langfuse_server.url,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-lag",
            "LANGFUSE_SECRET_KEY": "sk-lf-lag",
        },
    )
    assert result["lag_p99_ms"] < 250, result
    assert result["ms_per_run"] < 500, result  # a run never waits for the 0.5 s backend
    assert result["stats"]["dropped_total"] == 0


# -- Langflow's own trace view (langflow-base) --------------------------------------------


def test_langflow_native_trace_rows_are_written_as_without_tracemux(
    langflow_python: Path, tmp_path: Path
) -> None:
    """Langflow's trace view (its ``trace`` and ``span`` tables, written by its native
    tracer) shows the same rows with tracemux registered as with Langflow's own service."""
    stock = run_side(langflow_python, tmp_path / "stock", "native", register="stock")
    assert stock["service"] == "langflow.services.tracing.service.TracingService"
    result = run_side(langflow_python, tmp_path / "native", "native")
    assert result["service"] == "tracemux.integrations.langflow.TracingService"
    native = result["native"]
    assert native == stock["native"]
    assert set(native) == {"chat-arun", "chain-arun", "boom-arun"}, native
    assert native["chat-arun"]["status"] == "ok"
    assert [s[0] for s in native["chat-arun"]["spans"]] == ["Chat Input", "Chat Output"]
    assert native["boom-arun"]["status"] == "error"
    assert ["Boom", "error", "", True] in native["boom-arun"]["spans"]
    chain = {s[0]: s for s in native["chain-arun"]["spans"]}
    assert chain["FakeListChatModel"][2] == "Chain"  # LangChain runs, by the native callback
    # and tracemux recorded the same runs in its own store
    store = SQLiteStore(tmp_path / "native" / "traces.db")
    assert set(runs_by_name(store)) == {"chat-arun", "chain-arun", "boom-arun"}
