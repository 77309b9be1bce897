"""Traceloop: OTLP with the attributes ``traceloop-sdk`` and its LangChain instrumentation set.

Names come from ``opentelemetry.semconv_ai.SpanAttributes`` (``traceloop.*``) and the
OpenTelemetry ``gen_ai.*`` semantic conventions the instrumentations write:

==================================  =========================================================
tracemux                            Traceloop attribute
==================================  =========================================================
span kind                           ``traceloop.span.kind`` (root -> workflow, agent, tool;
                                    others -> task); ``llm``/``embedding`` spans are
                                    GenAI spans (``gen_ai.operation.name`` chat /
                                    embeddings) as the instrumentations send them
span name, run name                 ``traceloop.entity.name``, ``traceloop.workflow.name``
inputs / outputs                    ``traceloop.entity.input`` / ``.output`` (JSON; the input
                                    as the decorators write it, ``{"args": [], "kwargs":
                                    {...}}``); LLM spans also ``gen_ai.input.messages`` /
                                    ``gen_ai.output.messages``
model                               ``gen_ai.request.model``, ``gen_ai.response.model``
usage                               ``gen_ai.usage.input_tokens`` / ``output_tokens``,
                                    ``llm.usage.total_tokens``
user id, session id, run metadata   ``traceloop.association.properties.<k>`` on every span
                                    (``user_id``, ``session_id``, the run's metadata keys)
tool span                           ``gen_ai.tool.name``
error                               status ERROR and an ``exception`` event
==================================  =========================================================

Endpoint: ``{base_url}/v1/traces``; ``Authorization: Bearer <api key>`` unless
``TRACELOOP_HEADERS`` gives headers (then those replace it, as in the SDK). Resource
``service.name``: the run's project, else ``app_name`` (Langflow passes its project name as
the SDK's ``app_name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_headers,
    check_timeout,
    check_url,
    mask_secret,
    require_key,
    safe_url,
)
from tracemux.destinations.otlp import RemoteDestination, traces_url
from tracemux.destinations.probe import Probe, otlp_probe
from tracemux.destinations.spanmap import STATUS_UNSET, Attrs, SpanMapper, dumps, json_value
from tracemux.errors import ConfigError
from tracemux.model import RunInfo, SpanRecord

DEFAULT_BASE_URL = "https://api.traceloop.com"

SPAN_KIND = "traceloop.span.kind"
WORKFLOW_NAME = "traceloop.workflow.name"
ENTITY_NAME = "traceloop.entity.name"
ENTITY_INPUT = "traceloop.entity.input"
ENTITY_OUTPUT = "traceloop.entity.output"
ASSOCIATION = "traceloop.association.properties"
OPERATION_NAME = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOTAL_TOKENS = "llm.usage.total_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"

#: tracemux span kind -> traceloop.span.kind (the decorators' kinds)
SPAN_KINDS: dict[str, str] = {"agent": "agent", "tool": "tool"}
#: GenAI spans: tracemux kind -> gen_ai.operation.name
OPERATIONS: dict[str, str] = {"llm": "chat", "embedding": "embeddings"}


def entity_input(value: bytes | None) -> str | None:
    """An input as the decorators record it: ``{"args": [...], "kwargs": {...}}``."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace")  # captured values are valid JSON
    if value[:1] == b"{":
        return '{"args":[],"kwargs":' + text + "}"
    return '{"args":[' + text + '],"kwargs":{}}'


def entity_output(value: bytes | None) -> str | None:
    """An output as JSON text."""
    return None if value is None else value.decode("utf-8", "replace")


def _text_part(content: Any) -> dict[str, Any]:
    text = content if isinstance(content, str) else dumps(content)
    return {"type": "text", "content": text}


def messages(value: bytes | None, default_role: str) -> str | None:
    """``gen_ai.*.messages``: ``[{"role", "parts": [{"type": "text", "content"}]}]``."""
    if value is None:
        return None
    parsed = json_value(value)
    if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
        parsed = parsed["messages"]
    if (
        isinstance(parsed, list)
        and parsed
        and all(isinstance(m, dict) and "role" in m for m in parsed)
    ):
        out = [
            {"role": str(m["role"]), "parts": [_text_part(m.get("content", ""))]} for m in parsed
        ]
    elif isinstance(parsed, dict) and "role" in parsed:
        out = [{"role": str(parsed["role"]), "parts": [_text_part(parsed.get("content", ""))]}]
    else:
        out = [{"role": default_role, "parts": [_text_part(parsed)]}]
    return dumps(out)


class TraceloopMapper(SpanMapper):
    """Span -> Traceloop attributes (see the module docstring)."""

    ok_status = STATUS_UNSET

    def __init__(self, app_name: str = "tracemux") -> None:
        self.app_name = app_name

    def project(self, run: RunInfo) -> str | None:
        return run.project or self.app_name

    def resource_attributes(self, project: str | None) -> Attrs:
        return [("service.name", project or self.app_name)]

    def run_attributes(self, run: RunInfo) -> Attrs:
        props: dict[str, Any] = {}
        meta = json_value(run.metadata)
        if isinstance(meta, dict):
            props.update((k, v if isinstance(v, str) else dumps(v)) for k, v in meta.items())
        if run.user_id is not None:
            props["user_id"] = run.user_id
        if run.session_id is not None:
            props["session_id"] = run.session_id
        attrs: Attrs = [(WORKFLOW_NAME, run.name)]
        attrs += [(f"{ASSOCIATION}.{k}", v) for k, v in props.items() if v is not None]
        return attrs

    def span_attributes(self, span: SpanRecord) -> Attrs:
        operation = OPERATIONS.get(span.kind)
        attrs: Attrs
        if operation is not None and not span.is_root:
            attrs = [
                (OPERATION_NAME, operation),
                (INPUT_MESSAGES, messages(span.inputs, "user")),
                (OUTPUT_MESSAGES, messages(span.outputs, "assistant")),
            ]
        else:
            kind = "workflow" if span.is_root else SPAN_KINDS.get(span.kind, "task")
            attrs = [
                (SPAN_KIND, kind),
                (ENTITY_NAME, span.name),
                (ENTITY_INPUT, entity_input(span.inputs)),
                (ENTITY_OUTPUT, entity_output(span.outputs)),
            ]
            if kind == "tool":
                attrs.append((TOOL_NAME, span.name))
        if span.model:
            attrs.append((REQUEST_MODEL, span.model))
            attrs.append((RESPONSE_MODEL, span.model))
        usage = span.usage
        if usage:
            for key, attr in (
                ("input_tokens", INPUT_TOKENS),
                ("output_tokens", OUTPUT_TOKENS),
                ("total_tokens", TOTAL_TOKENS),
            ):
                if key in usage:
                    attrs.append((attr, int(usage[key])))
        return attrs


@dataclass(frozen=True, repr=False)
class Traceloop(RemoteDestination):
    """Send runs to Traceloop (or any backend its SDK exports to) over OTLP/HTTP.

    ``api_key``: ``TRACELOOP_API_KEY`` (sent as a bearer token unless ``headers`` are
    given). ``base_url``: ``TRACELOOP_BASE_URL`` (``/v1/traces`` is appended).
    ``headers``: ``TRACELOOP_HEADERS``, replacing the bearer token as the SDK does (values
    treated as secrets). ``app_name``: the ``service.name`` resource attribute of runs
    without a project.
    """

    api_key: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = field(default=(), repr=False)
    app_name: str = "tracemux"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Traceloop"
        require_key("api_key", self.api_key, owner=owner)
        object.__setattr__(self, "base_url", check_url("base_url", self.base_url, owner=owner))
        object.__setattr__(self, "headers", check_headers(self.headers, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))
        if not isinstance(self.app_name, str) or not self.app_name.strip():
            raise ConfigError("Traceloop: app_name must be a non-empty string")

    def traces_url(self) -> str:
        return traces_url(self.base_url)

    def request_headers(self) -> dict[str, str]:
        if self.headers:
            return dict(self.headers)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {self.api_key}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key, *(v for _, v in self.headers))  # type: ignore[misc]

    def mapper(self) -> TraceloopMapper:
        return TraceloopMapper(self.app_name)

    def probe(self) -> Probe:
        """For ``tracemux doctor``: an empty OTLP request with the credentials."""
        return otlp_probe(self, "TRACELOOP_API_KEY / TRACELOOP_HEADERS", "TRACELOOP_BASE_URL")

    def describe(self) -> str:
        names = ", ".join(k for k, _ in self.headers)  # type: ignore[misc]
        auth = f"headers {names}" if names else mask_secret(self.api_key)
        return f"traceloop:{safe_url(self.base_url)} ({auth} {self.identity_tag()})"
