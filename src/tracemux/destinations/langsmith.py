"""LangSmith: its OTLP endpoint, with the attributes the official SDK's OTel exporter sets.

Why OTLP and not the runs API. The SDK's default transport (``tracing_mode="langsmith"``)
posts run trees to ``/runs/multipart``, where every run must carry a ``dotted_order``
built from the start time and id of *each ancestor*. tracemux exports finished spans, and a
child finishes (and is exported) before its parent, so an exporter does not know the
intermediate ancestors' start times. LangSmith's OTLP endpoint (``/otel/v1/traces``, the
SDK's ``tracing_mode="otel"``) builds the tree from parent span ids on the server, which
fits finished spans exactly, and keeps one encoding for every backend. The attributes are
those of ``langsmith._internal.otel._otel_exporter``:

==================================  =========================================================
tracemux                            LangSmith attribute
==================================  =========================================================
span kind                           ``langsmith.span.kind`` (run type: llm, chain, tool,
                                    retriever, embedding, prompt, parser; others -> chain),
                                    ``gen_ai.operation.name``
span name                           ``langsmith.trace.name``
project (run's, else destination)   ``langsmith.trace.session_name``; ``Langsmith-Project``
                                    header
inputs / outputs                    ``gen_ai.prompt`` / ``gen_ai.completion`` (JSON objects;
                                    other values wrapped as ``{"input": ...}`` /
                                    ``{"output": ...}``)
model                               ``gen_ai.request.model``, ``gen_ai.system``,
                                    ``langsmith.metadata.ls_model_name``
usage                               ``gen_ai.usage.input_tokens`` / ``output_tokens`` /
                                    ``total_tokens``
run and span metadata, user id,     ``langsmith.metadata.<k>`` (``user_id``, ``session_id``;
session id                          objects as JSON text)
run tags (root span)                ``langsmith.span.tags`` (comma separated)
tool span                           ``gen_ai.tool.name``
error                               status ERROR and an ``exception`` event; success is OK
==================================  =========================================================

Authentication: ``x-api-key``.
"""

from __future__ import annotations

import functools
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
from tracemux.destinations.spanmap import STATUS_OK, Attrs, SpanMapper, dumps, json_value
from tracemux.errors import ConfigError
from tracemux.model import RunInfo, SpanRecord

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
DEFAULT_PROJECT = "default"
TRACES_PATH = "/otel/v1/traces"

# attribute names, as in langsmith._internal.otel._otel_exporter
RUN_TYPE = "langsmith.span.kind"
NAME = "langsmith.trace.name"
SESSION_NAME = "langsmith.trace.session_name"
METADATA = "langsmith.metadata"
TAGS = "langsmith.span.tags"
OPERATION_NAME = "gen_ai.operation.name"
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_TOTAL_TOKENS = "gen_ai.usage.total_tokens"
PROMPT = "gen_ai.prompt"
COMPLETION = "gen_ai.completion"
TOOL_NAME = "gen_ai.tool.name"

#: tracemux span kind -> LangSmith run type
RUN_TYPES: dict[str, str] = {
    "llm": "llm",
    "chain": "chain",
    "tool": "tool",
    "retriever": "retriever",
    "embedding": "embedding",
    "prompt": "prompt",
    "parser": "parser",
    "agent": "chain",
    "guardrail": "chain",
    "evaluator": "chain",
    "custom": "chain",
}

#: run type -> gen_ai.operation.name, as the SDK maps it
OPERATION_NAMES: dict[str, str] = {
    "llm": "chat",
    "tool": "execute_tool",
    "retriever": "embeddings",
    "embedding": "embeddings",
    "prompt": "chat",
}

# (substring test, gen_ai.system) in the SDK's order
_SYSTEMS: tuple[tuple[Any, str], ...] = (
    (lambda m: "anthropic" in m or m.startswith("claude"), "anthropic"),
    (lambda m: "bedrock" in m, "aws.bedrock"),
    (lambda m: "azure" in m and "openai" in m, "az.ai.openai"),
    (lambda m: "azure" in m and "inference" in m, "az.ai.inference"),
    (lambda m: "cohere" in m, "cohere"),
    (lambda m: "deepseek" in m, "deepseek"),
    (lambda m: "gemini" in m, "gemini"),
    (lambda m: "groq" in m, "groq"),
    (lambda m: "watson" in m or "ibm" in m, "ibm.watsonx.ai"),
    (lambda m: "mistral" in m, "mistral_ai"),
    (lambda m: "gpt" in m or "openai" in m, "openai"),
    (lambda m: "perplexity" in m or "sonar" in m, "perplexity"),
    (lambda m: "vertex" in m, "vertex_ai"),
    (lambda m: "xai" in m or "grok" in m, "xai"),
    (lambda m: "qwen" in m, "qwen"),
)


@functools.lru_cache(maxsize=512)
def gen_ai_system(model: str | None) -> str:
    """The ``gen_ai.system`` the SDK derives from a model name (``langchain`` if unknown)."""
    if model:
        m = model.lower()
        for test, system in _SYSTEMS:
            if test(m):
                return system
    return "langchain"


def safe_value(value: Any) -> Any:
    """A metadata value as the SDK puts it in an attribute: scalars kept, the rest JSON."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return dumps(value)


def io_object(value: bytes | None, key: str) -> str | None:
    """Inputs/outputs as a JSON object (LangSmith runs take objects), as text."""
    if value is None:
        return None
    if value[:1] == b"{":
        return value.decode("utf-8", "replace")
    return dumps({key: json_value(value)})


class LangSmithMapper(SpanMapper):
    """Span -> LangSmith attributes (see the module docstring)."""

    scope_name = "tracemux"
    ok_status = STATUS_OK
    overlapping = True  # span metadata may repeat a key of the run's metadata

    def __init__(self, project: str) -> None:
        self.default_project = project

    def project(self, run: RunInfo) -> str | None:
        return run.project or self.default_project

    def resource_attributes(self, project: str | None) -> Attrs:
        return [("service.name", "tracemux")]

    def run_attributes(self, run: RunInfo) -> Attrs:
        attrs: Attrs = [(SESSION_NAME, run.project or self.default_project)]
        meta = json_value(run.metadata)
        if isinstance(meta, dict):
            attrs.extend(
                (f"{METADATA}.{k}", safe_value(v)) for k, v in meta.items() if v is not None
            )
        if run.user_id is not None:
            attrs.append((f"{METADATA}.user_id", run.user_id))
        if run.session_id is not None:
            attrs.append((f"{METADATA}.session_id", run.session_id))
        return attrs

    def span_attributes(self, span: SpanRecord) -> Attrs:
        run_type = RUN_TYPES.get(span.kind, "chain")
        attrs: Attrs = [
            (RUN_TYPE, run_type),
            (NAME, span.name),
            (OPERATION_NAME, OPERATION_NAMES.get(run_type, run_type)),
            (SYSTEM, gen_ai_system(span.model)),
            (PROMPT, io_object(span.inputs, "input")),
            (COMPLETION, io_object(span.outputs, "output")),
        ]
        if span.model:
            attrs.append((REQUEST_MODEL, span.model))
            attrs.append((f"{METADATA}.ls_model_name", span.model))
        usage = span.usage
        if usage:
            for key, attr in (
                ("input_tokens", USAGE_INPUT_TOKENS),
                ("output_tokens", USAGE_OUTPUT_TOKENS),
                ("total_tokens", USAGE_TOTAL_TOKENS),
            ):
                if key in usage:
                    attrs.append((attr, int(usage[key])))
        if run_type == "tool":
            attrs.append((TOOL_NAME, span.name))
        if span.is_root and span.run.tags:
            attrs.append((TAGS, ", ".join(span.run.tags)))
        if span.metadata is not None and not span.is_root:  # the root's is the run's
            attrs += metadata_attributes(span.metadata)
        return attrs


_meta_cache: dict[bytes, Attrs] = {}


def metadata_attributes(metadata: bytes) -> Attrs:
    """``langsmith.metadata.<k>`` attributes of a metadata snapshot (small ones cached)."""
    found = _meta_cache.get(metadata)
    if found is not None:
        return found
    meta = json_value(metadata)
    if isinstance(meta, dict):
        attrs = [(f"{METADATA}.{k}", safe_value(v)) for k, v in meta.items() if v is not None]
    else:
        attrs = [(f"{METADATA}.metadata", safe_value(meta))]
    if len(metadata) <= 512:
        if len(_meta_cache) >= 2048:
            _meta_cache.clear()
        _meta_cache[metadata] = attrs
    return attrs


@dataclass(frozen=True, repr=False)
class LangSmith(RemoteDestination):
    """Send runs to LangSmith through its OTLP endpoint.

    ``api_key``: a LangSmith API key (``lsv2_...``). ``project``: the tracing project
    (a run's own ``project`` takes precedence). ``endpoint``: the API base URL (the EU
    region or a self-hosted instance). ``timeout``: seconds per request.
    """

    api_key: str = field(default="", repr=False)
    project: str = DEFAULT_PROJECT
    endpoint: str = DEFAULT_ENDPOINT
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "LangSmith"
        require_key("api_key", self.api_key, owner=owner)
        if not isinstance(self.project, str) or not self.project.strip():
            raise ConfigError("LangSmith: project must be a non-empty string")
        object.__setattr__(self, "endpoint", check_url("endpoint", self.endpoint, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))

    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    def request_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "Langsmith-Project": self.project}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def mapper(self) -> LangSmithMapper:
        return LangSmithMapper(self.project)

    def describe(self) -> str:
        key = f"{mask_secret(self.api_key)} {self.identity_tag()}"
        return f"langsmith:{safe_url(self.endpoint)} project={self.project} ({key})"
