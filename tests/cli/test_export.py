"""``tracemux export``, ``import`` and ``delete`` through the installed command: a
round trip through either format gives back the same runs; deleting asks first."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.cli.test_runs import tracemux
from tests.ui.conftest import TOOL_ONLY_WORD, Recorded, fill_store, record_chat_session
from tracemux import TracingService
from tracemux.destinations import SQLiteStore


@pytest.fixture
def source(make_service, store: SQLiteStore) -> tuple[SQLiteStore, Recorded, list[str]]:
    svc: TracingService = make_service([store])
    rec = fill_store(svc, agent_runs=2)
    chat = record_chat_session(svc)
    svc.shutdown(10)
    return store, rec, chat


def _snapshot(store: SQLiteStore) -> dict[str, tuple[dict, list[dict]]]:
    return {
        r.run_id: (r.to_dict(), [s.to_dict() for s in store.spans(r.run_id)])
        for r in store.runs(1000)
    }


def test_jsonl_round_trip_gives_the_same_runs(source, tmp_path: Path) -> None:
    store, _, chat = source
    out = tmp_path / "runs.jsonl"
    done = tracemux("export", "--db", store.path, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"exported 6 runs (jsonl) to {out}"
    fresh = SQLiteStore(tmp_path / "fresh.db")
    back = tracemux("import", "--db", fresh.path, str(out))
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == f"imported 6 runs into {fresh.path}"
    assert _snapshot(fresh) == _snapshot(store)
    assert {r.run_id for r in fresh.runs(search=TOOL_ONLY_WORD)} == {chat[0]}  # indexed
    # importing again replaces, never duplicates
    assert tracemux("import", "--db", fresh.path, str(out)).returncode == 0
    assert _snapshot(fresh) == _snapshot(store)
    assert {r.run_id for r in fresh.runs(search=TOOL_ONLY_WORD)} == {chat[0]}


def _comparable(store: SQLiteStore) -> dict[str, tuple]:
    out = {}
    for r in store.runs(1000):
        spans = [
            (s.span_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns, s.status, s.inputs,
             s.outputs, s.usage, s.model, s.error, [(g["level"], g["message"]) for g in s.logs])
            for s in store.spans(r.run_id)
        ]  # fmt: skip
        out[r.run_id] = (
            r.name, r.trace_id, r.user_id, r.session_id, r.project, r.tags, r.start_ns,
            r.end_ns, r.status, r.span_count, r.error_count, r.input_tokens, r.output_tokens,
            r.inputs, r.outputs, r.error, spans,
        )  # fmt: skip
    return out


def test_otlp_json_is_otlp_and_round_trips(source, tmp_path: Path) -> None:
    store, rec, _ = source
    out = tmp_path / "runs.otlp.jsonl"
    done = tracemux("export", "--db", store.path, "--format", "otlp", "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1  # up to 100 runs per request
    body = orjson.loads(lines[0])
    # a valid ExportTraceServiceRequest once ids are read as OTLP JSON has them (hex)
    spans = [s for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert len(spans) == sum(r.span_count for r in store.runs(100))
    for s in spans:
        assert len(s["traceId"]) == 32 and len(s["spanId"]) == 16
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in s:
                s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
    request = ParseDict(body, ExportTraceServiceRequest())
    failed = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
              if s.status.code == 2]  # fmt: skip
    assert {s.name for s in failed} == {"WebSearch", "Splitter", "ingest-docs"}

    fresh = SQLiteStore(tmp_path / "fresh.db")
    back = tracemux("import", "--db", fresh.path, str(out))
    assert back.returncode == 0, back.stderr
    assert _comparable(fresh) == _comparable(store)
    agent = fresh.run(rec.agent_runs[0])
    assert agent.status == "partial" and agent.error_count == 1


def test_export_by_id_and_filter(source, tmp_path: Path) -> None:
    store, rec, chat = source
    out = tmp_path / "some.jsonl"
    done = tracemux("export", "--db", store.path, "-o", str(out), "--session", "s-chat")
    assert done.returncode == 0
    runs = [json.loads(li) for li in out.read_text().splitlines() if '"type":"run"' in li]
    assert [r["run_id"] for r in runs] == list(reversed(chat))
    done = tracemux("export", "--db", store.path, "-o", str(out), rec.failed_run[:8])
    assert done.stderr.strip().startswith("exported 1 runs")
    bad = tracemux("export", "--db", store.path, "-o", str(out), "zzzz")
    assert bad.returncode == 2 and "no run 'zzzz'" in bad.stderr


def test_import_refuses_a_file_that_is_not_an_export(store: SQLiteStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "run", "run_id": "x"}\nnot json\n')
    done = tracemux("import", "--db", store.path, str(bad))
    assert done.returncode == 2
    assert "line 1: a run without" in done.stderr
    bad.write_text('{"hello": 1}\n')
    assert (
        "line 1: neither a tracemux record nor an OTLP request"
        in tracemux("import", "--db", store.path, str(bad)).stderr
    )
    assert store.count_runs() == 0


def test_delete_asks_and_deletes(source) -> None:
    store, rec, chat = source
    before = store.count_runs()
    refused = tracemux("delete", "--db", store.path, "--session", "s-chat")  # stdin: no tty
    assert refused.returncode == 1
    assert "pass --yes" in refused.stderr
    assert "2 runs (8 spans)" in refused.stdout
    assert store.count_runs() == before
    nothing = tracemux("delete", "--db", store.path)
    assert nothing.returncode == 2 and "name runs, give a filter, or pass --all" in nothing.stderr
    done = tracemux("delete", "--db", store.path, "--session", "s-chat", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"deleted 2 runs from {store.path}" in done.stdout
    assert store.count_runs() == before - 2
    assert all(store.run(r) is None for r in chat)
    assert store.runs(search=TOOL_ONLY_WORD) == []
    one = tracemux("delete", "--db", store.path, rec.failed_run[:8], "-y")
    assert one.returncode == 0 and store.run(rec.failed_run) is None
