"""Openlayer: one row per run on an inference pipeline's data stream (its REST API).

Openlayer has no span ingestion: a run is a row, ``POST
{base_url}/inference-pipelines/{id}/data-stream`` with ``{"config", "rows"}``, sent when the
run ends, as Langflow's Openlayer tracer (with ``openlayer.lib.tracing``) does. The
exporter therefore holds a run's spans until its root span arrives (the root finishes, and
is exported, last), then sends the whole tree as the row's ``steps``:

==================================  =========================================================
tracemux                            Openlayer row / step
==================================  =========================================================
run                                 ``inferenceId`` (run id), ``inferenceTimestamp``,
                                    ``latency`` (ms), ``output``, the root's inputs as
                                    columns (``inputVariableNames``), ``user_id``,
                                    ``session_id``, run metadata keys, ``tokens`` /
                                    ``promptTokens`` / ``completionTokens``, ``model``,
                                    ``provider`` summed/taken from the LLM steps
every span                          a step: ``name``, ``id``, ``type`` (llm ->
                                    ``chat_completion``, tool, agent, retriever, embedding,
                                    guardrail; others -> ``user_call``), ``inputs``,
                                    ``output``, ``metadata``, ``startTime`` / ``endTime``
                                    (seconds), ``latency`` (ms), nested ``steps``
LLM span                            ``model``, ``provider``, ``promptTokens``,
                                    ``completionTokens``, ``tokens``
tool / retriever span               ``functionName`` (its name) and ``arguments`` (its
                                    inputs) / ``documents`` (its output's documents list)
error                               ``metadata.error`` on the step (and on the run's row)
==================================  =========================================================

Pipeline per run, as Langflow chooses it from the run's flow name (the part of the run
name before `` - ``): ``OPENLAYER_PIPELINE_<FLOW>`` (the name upper-cased, other characters
as ``_``), then ``OPENLAYER_LANGFLOW_MAPPING`` (JSON ``{flow name: id}``), then
``OPENLAYER_INFERENCE_PIPELINE_ID``. A run with none is not sent (logged once a minute).

Spans of a run whose root never arrives are held up to a bound (``max_pending_spans``);
beyond it the oldest run's are dropped with a warning, and any still held at close are
reported in a warning too. Accounting: the pipeline counts a span exported when this
exporter takes it (holding it); if its run's row is then refused for good, the batch with
the root is counted dropped and the held spans of earlier batches are reported in a
warning.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from tracemux.destinations.base import Destination, ExportError
from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    post,
    require_key,
    safe_url,
)
from tracemux.destinations.otlp import error_message
from tracemux.destinations.probe import Probe
from tracemux.destinations.spanmap import dumps, json_value
from tracemux.errors import ConfigError
from tracemux.model import Record, RunInfo, SpanRecord
from tracemux.ratelimit import rate_limited

log = logging.getLogger(__name__)
_warn = rate_limited(log)

DEFAULT_BASE_URL = "https://api.openlayer.com/v1"
STREAM_PATH = "/inference-pipelines/{id}/data-stream"

#: tracemux span kind -> Openlayer step type
STEP_TYPES: dict[str, str] = {
    "llm": "chat_completion",
    "tool": "tool",
    "agent": "agent",
    "retriever": "retriever",
    "embedding": "embedding",
    "guardrail": "guardrail",
}

#: the row's columns, as Langflow's tracer declares them (``ConfigLlmData``)
BASE_CONFIG: dict[str, str] = {
    "outputColumnName": "output",
    "latencyColumnName": "latency",
    "costColumnName": "cost",
    "timestampColumnName": "inferenceTimestamp",
    "inferenceIdColumnName": "inferenceId",
    "numOfTokenColumnName": "tokens",
}

_OUTPUT_KEYS = ("message", "response", "result", "output")


def flow_name(run_name: str) -> str:
    """The flow name of a Langflow run name (``"flow name - flow id"``)."""
    return run_name.split(" - ")[0] if " - " in run_name else run_name


def env_key(name: str) -> str:
    """A flow name as Langflow spells it in ``OPENLAYER_PIPELINE_<FLOW>``."""
    return re.sub(r"[^a-zA-Z0-9]+", "_", name).strip("_").upper()


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _io(value: bytes | None) -> Any:
    return None if value is None else json_value(value)


def _raw(value: bytes | None) -> Any:
    """A captured value (valid JSON) embedded in the request as it is."""
    return None if value is None else orjson.Fragment(value)


def step_dict(span: SpanRecord, children: list[dict[str, Any]]) -> dict[str, Any]:
    """One span as an Openlayer step (``Step.to_dict``), with its nested steps."""
    meta = json_value(span.metadata)
    metadata: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    if meta is not None and not isinstance(meta, dict):
        metadata["metadata"] = meta
    if span.status == "error" or span.error is not None:
        metadata["error"] = error_message(span)
    end = max(span.end_ns, span.start_ns)
    step_type = STEP_TYPES.get(span.kind, "user_call")
    step: dict[str, Any] = {
        "name": span.name,
        "id": str(uuid.UUID(bytes=span.run.trace_id[:8] + span.span_id.to_bytes(8, "big"))),
        "type": step_type,
        "inputs": _raw(span.inputs),
        "output": _raw(span.outputs),
        "groundTruth": None,
        "metadata": metadata,
        "steps": children,
        "latency": _ms(end - span.start_ns),
        "startTime": span.start_ns / 1e9,
        "endTime": end / 1e9,
    }
    if step_type == "tool":
        step.update(functionName=span.name, arguments=step["inputs"])
    elif step_type == "retriever":
        out = _io(span.outputs)
        docs = out.get("documents") if isinstance(out, dict) else out
        step["documents"] = docs if isinstance(docs, list) else None
    elif step_type in ("chat_completion", "embedding"):
        usage = span.usage or {}
        prompt = usage.get("input_tokens")
        completion = usage.get("output_tokens")
        total = usage.get("total_tokens")
        if total is None and (prompt is not None or completion is not None):
            total = (prompt or 0) + (completion or 0)
        step.update(
            provider=None,
            promptTokens=None if prompt is None else int(prompt),
            completionTokens=None if completion is None else int(completion),
            tokens=None if total is None else int(total),
            cost=usage.get("cost"),
            model=span.model,
            modelParameters=None,
            rawOutput=None,
        )
    return step


def build_tree(root: SpanRecord, spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """The root's step with every span of the run nested under its parent."""
    children: dict[int, list[SpanRecord]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id is not None else root.span_id
        children.setdefault(parent, []).append(s)
    for kids in children.values():
        kids.sort(key=lambda s: s.start_ns)

    def build(span: SpanRecord, depth: int) -> dict[str, Any]:
        kids = children.get(span.span_id, []) if depth < 200 else []
        return step_dict(span, [build(k, depth + 1) for k in kids])

    tree = build(root, 0)
    tree["name"] = flow_name(root.run.name)  # Langflow names the root step after the flow
    tree["metadata"]["flow_name"] = tree["name"]
    known = {s.span_id for s in spans} | {root.span_id}
    orphans = [s for p, kids in children.items() if p not in known for s in kids]
    tree["steps"].extend(build(s, 1) for s in orphans)  # parent lost: under the root
    return tree


def _walk(steps: list[dict[str, Any]]) -> Any:
    for step in steps:
        yield step
        yield from _walk(step["steps"])


def _root_output(value: Any) -> Any:
    if isinstance(value, dict):
        for key in _OUTPUT_KEYS:
            if key in value:
                return value[key]
        return dumps(value)
    return value


def build_row(root: SpanRecord, spans: Sequence[SpanRecord]) -> tuple[dict[str, Any], list[str]]:
    """The data-stream row of a finished run and its input column names."""
    run = root.run
    tree = build_tree(root, spans)
    inputs = _io(root.inputs)
    columns = inputs if isinstance(inputs, dict) else ({} if inputs is None else {"input": inputs})
    row: dict[str, Any] = {
        "inferenceTimestamp": root.start_ns / 1e9,
        "inferenceId": run.run_id,
        "output": _root_output(_io(root.outputs)),  # the root step's too, as Langflow's
        "latency": tree["latency"],
        "cost": 0,
        "tokens": 0,
        "steps": [tree],
    }
    tree["output"] = row["output"]
    meta = json_value(run.metadata)
    if isinstance(meta, dict):
        row.update({k: v for k, v in meta.items() if k not in row})
    row["flow_name"] = flow_name(run.name)
    if tree["metadata"].get("error"):
        row["error"] = tree["metadata"]["error"]
    _aggregate_llm(row, tree["steps"])
    if run.user_id is not None:
        row["user_id"] = run.user_id
    if run.session_id is not None:
        row["session_id"] = run.session_id
    row.update({str(k): v for k, v in columns.items()})
    return row, [str(k) for k in columns]


def _aggregate_llm(row: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """Totals of the LLM steps on the row (as Langflow's tracer adds them)."""
    prompt = completion = tokens = 0
    cost = 0.0
    for step in _walk(steps):
        if step["type"] != "chat_completion":
            continue
        prompt += step.get("promptTokens") or 0
        completion += step.get("completionTokens") or 0
        tokens += step.get("tokens") or 0
        cost += step.get("cost") or 0.0
        if "model" not in row and step.get("model"):
            row["model"] = step["model"]
    if tokens:
        row.update(tokens=tokens, promptTokens=prompt, completionTokens=completion)
    if cost:
        row["cost"] = cost


class OpenlayerExporter:
    """Holds each run's spans until its root arrives, then streams the run's row."""

    def __init__(self, dest: Openlayer) -> None:
        self.dest = dest
        self.label = dest.describe()
        self.headers = {**dest.request_headers(), "Content-Type": "application/json"}
        self.secrets = dest.secrets()
        self.pending: OrderedDict[str, dict[int, SpanRecord]] = OrderedDict()
        self.npending = 0
        self.sent: OrderedDict[str, None] = OrderedDict()  # runs already streamed

    def hold(self, span: SpanRecord) -> None:
        run_id = span.run.run_id
        if run_id in self.sent:
            _warn.warning(
                ("late", self.label),
                "tracemux: %s: span %r of run %s ended after its run's row was sent; an "
                "Openlayer row cannot be amended, so it is not sent",
                self.label,
                span.name,
                run_id,
            )
            return
        held = self.pending.get(run_id)
        if held is None:
            held = self.pending[run_id] = {}
        if span.span_id not in held:
            held[span.span_id] = span
            self.npending += 1
        while self.npending > self.dest.max_pending_spans and len(self.pending) > 1:
            old_id, old = self.pending.popitem(last=False)
            self.npending -= len(old)
            _warn.warning(
                ("evicted", self.label),
                "tracemux: %s: dropped %d spans of run %s: its end did not arrive before "
                "%d spans of later runs were waiting",
                self.label,
                len(old),
                old_id,
                self.dest.max_pending_spans,
            )

    async def export(self, batch: Sequence[Record]) -> None:
        """Hold spans; stream the rows of the runs whose root span is in ``batch``.

        The rows of one batch go in one request per pipeline, so the batch succeeds or
        fails as a whole. When it fails for good (not retryable), the held spans of its
        runs are let go: the pipeline counts the batch as dropped.
        """
        roots: dict[str, SpanRecord] = {}
        for rec in batch:
            if not rec.is_span:
                continue
            span: SpanRecord = rec  # type: ignore[assignment]
            if span.is_root:
                if span.run.run_id not in self.sent:
                    roots[span.run.run_id] = span
            else:
                self.hold(span)
        if not roots:
            return
        by_pipeline: dict[str, list[SpanRecord]] = {}
        for root in roots.values():
            pipeline = self.dest.pipeline_for(root.run)
            if pipeline is None:
                _warn.info(
                    ("no_pipeline", self.label),
                    "tracemux: %s: no inference pipeline for flow %r; its runs are not sent",
                    self.label,
                    flow_name(root.run.name),
                )
            else:
                by_pipeline.setdefault(pipeline, []).append(root)
        done: list[str] = [r for r in roots if self.dest.pipeline_for(roots[r].run) is None]
        try:
            for pipeline, pipeline_roots in by_pipeline.items():
                await self.stream(pipeline, pipeline_roots)
                # streamed: a retry of this batch must not send these rows again
                done += [root.run.run_id for root in pipeline_roots]
        except ExportError as exc:
            given_up = not exc.retryable and (not exc.too_large or len(batch) == 1)
            if given_up:  # (a too large batch is split and sent again, down to one root)
                self.report_lost(roots, batch)
                self.forget(roots)
            else:
                self.forget(done)
            raise
        self.forget(roots)

    async def stream(self, pipeline: str, roots: list[SpanRecord]) -> None:
        """POST the rows of ``roots`` (finished runs) to ``pipeline``'s data stream."""
        rows: list[dict[str, Any]] = []
        input_names: dict[str, None] = {}
        nspans = 0
        for root in roots:
            held = list(self.pending.get(root.run.run_id, {}).values())
            row, names = build_row(root, held)
            rows.append(row)
            input_names.update(dict.fromkeys(names))
            nspans += len(held) + 1
        config: dict[str, Any] = {**BASE_CONFIG, "inputVariableNames": list(input_names)}
        if any("user_id" in row for row in rows):
            config["userIdColumnName"] = "user_id"
        if any("session_id" in row for row in rows):
            config["sessionIdColumnName"] = "session_id"
        await post(
            self.label,
            self.dest.base_url + STREAM_PATH.format(id=pipeline),
            dumps({"config": config, "rows": rows}).encode("utf-8"),
            self.headers,
            timeout=self.dest.timeout,
            secrets=self.secrets,
            what=f"{len(rows)} runs ({nspans} spans)",
        )

    def report_lost(self, roots: Mapping[str, SpanRecord], batch: Sequence[Record]) -> None:
        """Say how many spans of earlier batches (counted exported when they were held)
        go with rows that were given up; the pipeline counts only this batch's."""
        in_batch = {id(rec) for rec in batch}
        earlier = sum(
            1
            for run_id in roots
            for span in self.pending.get(run_id, {}).values()
            if id(span) not in in_batch
        )
        if earlier:
            _warn.warning(
                ("lost_held", self.label),
                "tracemux: %s: the rows of %d runs were given up; %d of their spans came in "
                "earlier batches (counted as exported when held) and are lost with them",
                self.label,
                len(roots),
                earlier,
            )

    def forget(self, roots: Mapping[str, SpanRecord] | list[str]) -> None:
        """Let go of the held spans of runs that were sent (or given up)."""
        for run_id in roots:
            self.npending -= len(self.pending.pop(run_id, {}))
            self.sent[run_id] = None
        while len(self.sent) > 4096:
            self.sent.popitem(last=False)

    def close(self) -> None:
        """Report the spans of runs that never ended."""
        if self.npending:
            log.warning(
                "tracemux: %s: %d spans of %d unfinished runs were not sent (their runs "
                "did not end before shutdown)",
                self.label,
                self.npending,
                len(self.pending),
            )
        self.pending.clear()
        self.npending = 0


@dataclass(frozen=True, repr=False)
class Openlayer(Destination):
    """Stream each run as a row to an Openlayer inference pipeline.

    ``api_key``: ``OPENLAYER_API_KEY``. ``pipeline_id``: the default inference pipeline
    (``OPENLAYER_INFERENCE_PIPELINE_ID``). ``pipelines``: ``{flow name: pipeline id}``
    (``OPENLAYER_LANGFLOW_MAPPING``). ``flow_pipelines``: ``{FLOW_KEY: pipeline id}`` from
    ``OPENLAYER_PIPELINE_<FLOW_KEY>`` variables (see :func:`env_key`). ``base_url``:
    ``OPENLAYER_BASE_URL``. At least one pipeline is required.
    """

    max_batch: ClassVar[int] = 512

    api_key: str = field(default="", repr=False)
    pipeline_id: str | None = None
    pipelines: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    flow_pipelines: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    max_pending_spans: int = 100_000

    def __post_init__(self) -> None:
        owner = "Openlayer"
        require_key("api_key", self.api_key, owner=owner)
        object.__setattr__(self, "base_url", check_url("base_url", self.base_url, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))
        for name in ("pipelines", "flow_pipelines"):
            object.__setattr__(self, name, _pairs(getattr(self, name), name))
        if self.pipeline_id is not None:
            _check_id("pipeline_id", self.pipeline_id)
        if self.pipeline_id is None and not self.pipelines and not self.flow_pipelines:
            raise ConfigError("Openlayer: pipeline_id (or a pipelines mapping) is required")
        if (
            isinstance(self.max_pending_spans, bool)
            or not isinstance(self.max_pending_spans, int)
            or self.max_pending_spans < 1
        ):
            raise ConfigError("Openlayer: max_pending_spans must be a positive integer")

    def pipeline_for(self, run: RunInfo) -> str | None:
        """The inference pipeline of ``run`` (Langflow's order), or None."""
        name = flow_name(run.name)
        found = dict(self.flow_pipelines).get(env_key(name))  # type: ignore[arg-type]
        return found or dict(self.pipelines).get(name) or self.pipeline_id  # type: ignore[arg-type]

    def request_headers(self) -> dict[str, str]:
        """Authentication headers, as the SDK sends them."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def open(self) -> OpenlayerExporter:
        return OpenlayerExporter(self)

    def probe(self) -> Probe:
        """For ``tracemux doctor``: read one configured inference pipeline."""
        pipeline = self.pipeline_id or next(
            iter(pid for _, pid in (*self.pipelines, *self.flow_pipelines))  # type: ignore[misc]
        )
        return Probe(
            "GET",
            f"{self.base_url}/inference-pipelines/{pipeline}",
            self.request_headers(),
            auth_vars="OPENLAYER_API_KEY",
            url_var="OPENLAYER_BASE_URL and the pipeline id",
            ok=f"credentials accepted (pipeline {pipeline} found)",
        )

    def describe(self) -> str:
        n = len(self.pipelines) + len(self.flow_pipelines)
        parts = [f"openlayer:{safe_url(self.base_url)}"]
        if self.pipeline_id:
            parts.append(f"pipeline={self.pipeline_id}")
        if n:
            parts.append(f"+{n} flow pipelines")
        return " ".join(parts) + f" ({mask_secret(self.api_key)} {self.identity_tag()})"

    def __repr__(self) -> str:
        return f"Openlayer({self.describe()})"


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value):
        raise ConfigError(f"Openlayer: {name} must be a pipeline id (letters, digits, - and _)")
    return value


def _pairs(value: object, name: str) -> tuple[tuple[str, str], ...]:
    items: Any
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (tuple, list)):
        items = value
    else:
        raise ConfigError(f"Openlayer: {name} must map flow names to pipeline ids")
    out = []
    for item in items:
        try:
            key, pid = item
        except (TypeError, ValueError):
            raise ConfigError(f"Openlayer: {name} must map flow names to pipeline ids") from None
        if not isinstance(key, str) or not key:
            raise ConfigError(f"Openlayer: {name} has a key that is not a non-empty string")
        out.append((key, _check_id(f"{name}[{key!r}]", pid)))
    return tuple(sorted(out))
