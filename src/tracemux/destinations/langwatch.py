"""LangWatch: its OTLP endpoint, with the attributes the official SDK (``langwatch``) sets.

The names come from ``langwatch.attributes.AttributeKey`` and what
``langwatch.telemetry.span.LangWatchSpan.update`` / ``LangWatchTrace.update`` write:

==================================  =========================================================
tracemux                            LangWatch attribute
==================================  =========================================================
span kind                           ``langwatch.span.type`` (llm, chain, tool, agent,
                                    guardrail; retriever -> rag, evaluator -> evaluation,
                                    the run's root -> workflow, a chain directly under
                                    it -> component as Langflow types its components,
                                    others -> span)
inputs / outputs                    ``langwatch.input`` / ``langwatch.output``: the SDK's
                                    typed value as JSON (``{"type": "text", "value": s}``,
                                    ``chat_messages`` for a list of ``{"role": ...}``,
                                    otherwise ``json``)
model                               ``gen_ai.request.model``
usage                               ``langwatch.metrics`` = ``{"prompt_tokens",
                                    "completion_tokens"}`` and
                                    ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``
session id, user id, tags, run      root span's ``metadata`` (JSON): ``thread_id``,
metadata                            ``user_id``, ``labels`` and the run's metadata keys;
                                    ``langwatch.origin`` = ``application`` (as the SDK)
error                               status ERROR and an ``exception`` event
==================================  =========================================================

Endpoint: ``{endpoint}/api/otel/v1/traces`` with ``Authorization: Bearer <api key>``, as
Langflow's LangWatch tracer configures its exporter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    require_key,
    safe_url,
)
from tracemux.destinations.otlp import RemoteDestination
from tracemux.destinations.probe import Probe, otlp_probe
from tracemux.destinations.spanmap import STATUS_UNSET, Attrs, SpanMapper, dumps, json_value
from tracemux.model import RunInfo, SpanRecord

DEFAULT_ENDPOINT = "https://app.langwatch.ai"
TRACES_PATH = "/api/otel/v1/traces"

SPAN_TYPE = "langwatch.span.type"
INPUT = "langwatch.input"
OUTPUT = "langwatch.output"
METRICS = "langwatch.metrics"
REQUEST_MODEL = "gen_ai.request.model"
PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
TRACE_METADATA = "metadata"
ORIGIN = "langwatch.origin"

#: tracemux span kind -> langwatch.span.type
SPAN_TYPES: dict[str, str] = {
    "llm": "llm",
    "chain": "chain",
    "tool": "tool",
    "agent": "agent",
    "guardrail": "guardrail",
    "retriever": "rag",
    "evaluator": "evaluation",
}


def typed_value(value: bytes | None) -> str | None:
    """An input or output as the SDK's typed value (``convert_typed_values``), as JSON.

    An object is wrapped without being parsed (captured values are valid JSON); a string
    becomes ``text``, a list of ``{"role": ...}`` objects ``chat_messages``, the rest
    ``json``.
    """
    if value is None:
        return None
    first = value[:1]
    if first == b"{" and not value.startswith(b'{"type":'):
        return '{"type":"json","value":' + value.decode("utf-8", "replace") + "}"
    parsed = json_value(value)
    if isinstance(parsed, str):
        typed: dict[str, Any] = {"type": "text", "value": parsed}
    elif isinstance(parsed, dict) and set(parsed) == {"type", "value"}:
        return value.decode("utf-8", "replace")  # already a typed value
    elif (
        isinstance(parsed, list)
        and parsed
        and all(isinstance(m, dict) and "role" in m for m in parsed)
    ):
        typed = {"type": "chat_messages", "value": parsed}
    else:
        typed = {"type": "json", "value": parsed}
    return dumps(typed)


def trace_metadata(run: RunInfo) -> str | None:
    """The root span's ``metadata`` JSON: the run's metadata, thread, user and labels."""
    meta = json_value(run.metadata)
    out: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    if meta is not None and not isinstance(meta, dict):
        out["metadata"] = meta
    if run.session_id is not None:
        out["thread_id"] = run.session_id
    if run.user_id is not None:
        out["user_id"] = run.user_id
    if run.tags:
        out["labels"] = list(run.tags)
    return dumps(out) if out else None


class LangWatchMapper(SpanMapper):
    """Span -> LangWatch attributes (see the module docstring)."""

    ok_status = STATUS_UNSET  # the SDK leaves a successful span's status unset

    def __init__(self, service_name: str = "tracemux") -> None:
        self.service_name = service_name

    def resource_attributes(self, project: str | None) -> Attrs:
        return [("service.name", self.service_name)]

    def run_attributes(self, run: RunInfo) -> Attrs:
        return []

    def span_attributes(self, span: SpanRecord) -> Attrs:
        if span.is_root:
            kind = "workflow"
        elif span.kind == "chain" and span.parent_id == span.run.root_span_id:
            kind = "component"  # a flow's component, as Langflow's tracer types it
        else:
            kind = SPAN_TYPES.get(span.kind, "span")
        attrs: Attrs = [
            (SPAN_TYPE, kind),
            (INPUT, typed_value(span.inputs)),
            (OUTPUT, typed_value(span.outputs)),
        ]
        if span.model:
            attrs.append((REQUEST_MODEL, span.model))
        usage = span.usage
        if usage:
            metrics: dict[str, Any] = {}
            if "input_tokens" in usage:
                metrics["prompt_tokens"] = int(usage["input_tokens"])
                attrs.append((PROMPT_TOKENS, int(usage["input_tokens"])))
            if "output_tokens" in usage:
                metrics["completion_tokens"] = int(usage["output_tokens"])
                attrs.append((COMPLETION_TOKENS, int(usage["output_tokens"])))
            if "cost" in usage:
                metrics["cost"] = float(usage["cost"])
            if metrics:
                attrs.append((METRICS, dumps(metrics)))
        if span.is_root:
            attrs.append((TRACE_METADATA, trace_metadata(span.run)))
            attrs.append((ORIGIN, "application"))
        return attrs


@dataclass(frozen=True, repr=False)
class LangWatch(RemoteDestination):
    """Send runs to LangWatch (cloud or self-hosted) through its OTLP endpoint.

    ``api_key``: the project's API key (``LANGWATCH_API_KEY``). ``endpoint``: LangWatch's
    base URL (``LANGWATCH_ENDPOINT``). ``timeout``: seconds per request.
    """

    api_key: str = field(default="", repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "LangWatch"
        require_key("api_key", self.api_key, owner=owner)
        object.__setattr__(self, "endpoint", check_url("endpoint", self.endpoint, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))

    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    def request_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def mapper(self) -> LangWatchMapper:
        return LangWatchMapper()

    def probe(self) -> Probe:
        """For ``tracemux doctor``: an empty OTLP request with the credentials."""
        return otlp_probe(self, "LANGWATCH_API_KEY", "LANGWATCH_ENDPOINT")

    def describe(self) -> str:
        key = f"{mask_secret(self.api_key)} {self.identity_tag()}"
        return f"langwatch:{safe_url(self.endpoint)} ({key})"
