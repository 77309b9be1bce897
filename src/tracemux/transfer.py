"""Export runs out of the local store, and import them back.

Two formats, one file of JSON lines each:

* ``jsonl``: tracemux's own. Per run one line ``{"type": "run", ...}`` (the run as
  :class:`~tracemux.destinations.sqlite.StoredRun` holds it) followed by one line
  ``{"type": "span", ...}`` per span. Importing it gives back the same runs, exactly.
* ``otlp``: OTLP JSON, one ``ExportTraceServiceRequest`` per line (up to
  :data:`RUNS_PER_REQUEST` runs each), as the OpenTelemetry Collector's file exporter
  writes and its ``otlpjsonfile`` receiver reads; a single line can be POSTed to any
  collector's ``/v1/traces`` as ``application/json``. Spans carry the OpenInference
  attributes tracemux sends to Phoenix and OTLP collectors (the same encoder), trace and
  span ids as hex, plus ``tracemux.run_id`` and ``tracemux.span.kind`` so that an import
  gives back run ids and span kinds. Importing OTLP JSON from elsewhere works too: a
  trace becomes a run (its root span's name and values, its spans' tokens and errors).
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from typing import IO, Any

import orjson

from tracemux.destinations.openinference import SPAN_KINDS, OpenInferenceMapper
from tracemux.destinations.otlp import encode_request, proto
from tracemux.destinations.spanmap import STATUS_ERROR, Attrs
from tracemux.destinations.sqlite import SQLiteStore, StoredRun, StoredSpan
from tracemux.model import ErrorInfo, LogEntry, Record, RunInfo, SpanRecord
from tracemux.version import __version__

FORMATS = ("jsonl", "otlp")
RUNS_PER_REQUEST = 100
RUN_ID_ATTR = "tracemux.run_id"
KIND_ATTR = "tracemux.span.kind"
_RUN_FIELDS = tuple(StoredRun.__dataclass_fields__)
_SPAN_FIELDS = tuple(StoredSpan.__dataclass_fields__)
_KIND_FROM_OI = {v: k for k, v in reversed(SPAN_KINDS.items())}  # CHAIN -> chain


class TransferError(ValueError):
    """A file that cannot be imported (the message says where and why)."""


# -- export ----------------------------------------------------------------------------


def export_runs(store: SQLiteStore, runs: Iterable[StoredRun], out: IO[bytes], fmt: str) -> int:
    """Write ``runs`` (with their spans, read from ``store``) to ``out`` in ``fmt``;
    returns how many runs were written."""
    if fmt == "jsonl":
        return _write_jsonl(store, runs, out)
    if fmt == "otlp":
        return _write_otlp(store, runs, out)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _write_jsonl(store: SQLiteStore, runs: Iterable[StoredRun], out: IO[bytes]) -> int:
    n = 0
    for run in runs:
        out.write(orjson.dumps({"type": "run", **_fields(run, _RUN_FIELDS)}) + b"\n")
        for span in store.spans(run.run_id):
            out.write(orjson.dumps({"type": "span", **_fields(span, _SPAN_FIELDS)}) + b"\n")
        n += 1
    return n


def _fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


class _ExportMapper(OpenInferenceMapper):
    """OpenInference attributes, plus what tracemux needs to import a run back."""

    def __init__(self) -> None:
        super().__init__(project=None)

    def run_attributes(self, run: RunInfo) -> Attrs:
        return [*super().run_attributes(run), (RUN_ID_ATTR, run.run_id)]

    def span_attributes(self, span: SpanRecord) -> Attrs:
        return [*super().span_attributes(span), (KIND_ATTR, span.kind)]


def _write_otlp(store: SQLiteStore, runs: Iterable[StoredRun], out: IO[bytes]) -> int:
    from google.protobuf.json_format import MessageToDict

    mapper = _ExportMapper()
    n = 0
    chunk: list[Record] = []
    in_chunk = 0
    for run in runs:
        chunk += _records(run, store.spans(run.run_id))
        in_chunk += 1
        n += 1
        if in_chunk == RUNS_PER_REQUEST:
            _write_request(chunk, mapper, __version__, out, MessageToDict)
            chunk, in_chunk = [], 0
    if chunk:
        _write_request(chunk, mapper, __version__, out, MessageToDict)
    return n


def _write_request(
    records: list[Record], mapper: _ExportMapper, version: str, out: IO[bytes], to_dict: Any
) -> None:
    data, count = encode_request(records, mapper, version)
    if not count:
        return
    request = proto().Request.FromString(data)
    body = to_dict(request)
    for rs in body.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:  # OTLP JSON: ids as hex, not protobuf's base64
                        span[key] = base64.b64decode(span[key]).hex()
    out.write(orjson.dumps(body) + b"\n")


def _json_bytes(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _records(run: StoredRun, spans: list[StoredSpan]) -> list[Record]:
    """A stored run's spans as the records the OTLP encoder takes."""
    info = RunInfo(
        run.run_id,
        run.name or "",
        (),
        user_id=run.user_id,
        session_id=run.session_id,
        project=run.project,
        tags=tuple(run.tags),
        metadata=_json_bytes(run.metadata),
        start_ns=run.start_ns,
    )
    out: list[Record] = []
    for s in spans:
        rec = SpanRecord()
        rec.run = info
        rec.span_id = int(s.span_id, 16)
        rec.parent_id = None if s.parent_id is None else int(s.parent_id, 16)
        rec.is_root = s.parent_id is None
        rec.name, rec.kind, rec.status = s.name, s.kind, s.status
        rec.start_ns, rec.end_ns = s.start_ns, s.end_ns
        rec.inputs, rec.outputs = _json_bytes(s.inputs), _json_bytes(s.outputs)
        rec.metadata = _json_bytes(s.metadata)
        rec.logs = [
            LogEntry(
                int(e.get("time_ns") or 0),
                str(e.get("level") or "info"),
                str(e.get("message") or ""),
                _json_bytes(e.get("fields")),
            )
            for e in s.logs
        ] or None
        rec.usage = s.usage
        rec.model = s.model
        err = s.error
        rec.error = (
            None
            if err is None
            else ErrorInfo(
                str(err.get("type") or ""),
                str(err.get("message") or ""),
                str(err.get("traceback") or ""),
            )
        )
        rec.nbytes = rec.refs = 0
        out.append(rec)
    return out


# -- import ----------------------------------------------------------------------------


def import_file(store: SQLiteStore, lines: Iterable[bytes]) -> int:
    """Import a file of either format into ``store``; returns how many runs. Raises
    :class:`TransferError` for a line that is neither, before writing anything."""
    runs: list[StoredRun] = []
    spans: list[StoredSpan] = []
    otlp: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise TransferError(f"line {number}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise TransferError(f"line {number}: expected a JSON object")
        try:
            if "resourceSpans" in obj:
                otlp += _otlp_spans(obj)
            elif obj.get("type") == "run":
                runs.append(_stored(StoredRun, obj, _RUN_FIELDS))
            elif obj.get("type") == "span":
                spans.append(_stored(StoredSpan, obj, _SPAN_FIELDS))
            else:
                raise TransferError("neither a tracemux record nor an OTLP request")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise TransferError(f"line {number}: {exc}") from None
    if otlp:
        more_runs, more_spans = _from_otlp(otlp)
        runs += more_runs
        spans += more_spans
    known = {r.run_id for r in runs}
    orphans = {s.run_id for s in spans} - known
    if orphans:
        raise TransferError(f"spans of runs the file does not hold: {sorted(orphans)[:3]}")
    return store.import_runs(runs, spans)


def _stored(cls: type, obj: dict[str, Any], names: Sequence[str]) -> Any:
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]  # fmt: skip
    missing = [n for n in required if n not in obj]
    if missing:
        raise TransferError(f"a {obj.get('type')} without {', '.join(missing)}")
    return cls(**{n: obj[n] for n in names if n in obj})


def _attr_value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_attr_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _attr_value(kv.get("value") or {}) for kv in items or []}


def _hex_id(value: str | None, size: int) -> str | None:
    if not value:
        return None
    if len(value) == size * 2:
        int(value, 16)  # hex, as OTLP JSON has it (ValueError otherwise)
        return value.lower()
    return base64.b64decode(value).hex()  # protobuf's JSON mapping


def _otlp_spans(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's spans, each with its attributes parsed and its resource's project."""
    out = []
    for rs in request.get("resourceSpans") or []:
        resource = _attrs((rs.get("resource") or {}).get("attributes"))
        project = resource.get("openinference.project.name")
        for ss in rs.get("scopeSpans") or []:
            for span in ss.get("spans") or []:
                out.append({**span, "attrs": _attrs(span.get("attributes")), "project": project})
    return out


def _json_attr(value: Any, mime: Any) -> Any:
    if value is None or mime == "text/plain":
        return value
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return value


def _from_otlp(raw: list[dict[str, Any]]) -> tuple[list[StoredRun], list[StoredSpan]]:
    """Runs (one per trace) and spans from OTLP spans."""
    traces: dict[str, list[StoredSpan]] = {}
    firsts: dict[str, dict[str, Any]] = {}
    for sp in raw:
        trace_id = _hex_id(sp.get("traceId"), 16) or ""
        a = sp["attrs"]
        run_id = a.get(RUN_ID_ATTR) or _run_id_of(trace_id)
        firsts.setdefault(run_id, {"trace_id": trace_id, "attrs": a, "project": sp["project"]})
        traces.setdefault(run_id, []).append(_otlp_span(run_id, sp, a))
    runs, spans = [], []
    for run_id, members in traces.items():
        members.sort(key=lambda s: (s.start_ns, s.span_id))
        ids = {s.span_id for s in members}
        root = next((s for s in members if s.parent_id not in ids), members[0])
        first = firsts[run_id]
        a = first["attrs"]
        usage = [s.usage or {} for s in members]
        tags = a.get("tag.tags")
        runs.append(
            StoredRun(
                run_id=run_id,
                trace_id=first["trace_id"],
                name=root.name,
                user_id=a.get("user.id"),
                session_id=a.get("session.id"),
                project=first["project"],
                tags=list(tags) if isinstance(tags, list) else [],
                metadata=root.metadata,
                start_ns=min(s.start_ns for s in members),
                end_ns=root.end_ns,
                status=_run_status(root, members),
                span_count=len(members),
                error_count=sum(s.status == "error" for s in members),
                input_tokens=sum(int(u.get("input_tokens") or 0) for u in usage),
                output_tokens=sum(int(u.get("output_tokens") or 0) for u in usage),
                inputs=root.inputs,
                outputs=root.outputs,
                error=root.error,
            )
        )
        spans += members
    return runs, spans


def _run_status(root: StoredSpan, members: list[StoredSpan]) -> str:
    if root.status == "error":
        return "error"
    return "partial" if any(s.status == "error" for s in members) else "ok"


def _run_id_of(trace_id: str) -> str:
    try:
        return str(uuid.UUID(hex=trace_id))
    except ValueError:
        return trace_id


def _otlp_span(run_id: str, sp: dict[str, Any], a: dict[str, Any]) -> StoredSpan:
    kind = a.get(KIND_ATTR) or _KIND_FROM_OI.get(a.get("openinference.span.kind"), "custom")
    usage = {
        k: int(a[attr])
        for k, attr in (
            ("input_tokens", "llm.token_count.prompt"),
            ("output_tokens", "llm.token_count.completion"),
            ("total_tokens", "llm.token_count.total"),
        )
        if a.get(attr) is not None
    }
    logs, error = [], None
    for event in sp.get("events") or []:
        ea = _attrs(event.get("attributes"))
        if event.get("name") == "exception":
            error = {
                "type": ea.get("exception.type") or "",
                "message": ea.get("exception.message") or "",
                "traceback": ea.get("exception.stacktrace") or "",
            }
        elif "log.level" in ea:
            logs.append(
                {
                    "time_ns": int(event.get("timeUnixNano") or 0),
                    "level": ea["log.level"],
                    "message": ea.get("log.message") or event.get("name") or "",
                    "fields": _json_attr(ea.get("log.fields"), None),
                }
            )
    failed = (sp.get("status") or {}).get("code") in (STATUS_ERROR, "STATUS_CODE_ERROR")
    start = int(sp.get("startTimeUnixNano") or 0)
    return StoredSpan(
        run_id=run_id,
        span_id=_hex_id(sp.get("spanId"), 8) or "",
        parent_id=_hex_id(sp.get("parentSpanId"), 8),
        name=str(sp.get("name") or ""),
        kind=kind,
        start_ns=start,
        end_ns=int(sp.get("endTimeUnixNano") or start),
        status="error" if failed else "ok",
        inputs=_json_attr(a.get("input.value"), a.get("input.mime_type")),
        outputs=_json_attr(a.get("output.value"), a.get("output.mime_type")),
        metadata=_json_attr(a.get("metadata"), None),
        logs=logs,
        usage=usage or None,
        model=a.get("llm.model_name") or a.get("embedding.model_name"),
        error=error,
    )
