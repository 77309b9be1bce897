"""Phoenix (Arize): OTLP with OpenInference semantic conventions.

The same mapping serves the generic :class:`~tracemux.destinations.otlp.OTLP`
destination. Attribute names come from the ``openinference-semantic-conventions`` package:

==================================  =========================================================
tracemux                            OpenInference attribute
==================================  =========================================================
span kind                           ``openinference.span.kind`` (CHAIN, LLM, TOOL, RETRIEVER,
                                    EMBEDDING, AGENT, PROMPT, GUARDRAIL, EVALUATOR; parser ->
                                    CHAIN, custom -> UNKNOWN)
inputs / outputs                    ``input.value`` / ``output.value`` with
                                    ``input.mime_type`` / ``output.mime_type``
                                    (``application/json``; a string as ``text/plain``)
model                               ``llm.model_name`` (``embedding.model_name`` for
                                    embeddings)
usage                               ``llm.token_count.prompt`` / ``completion`` / ``total``
user id, session id, tags           ``user.id``, ``session.id``, ``tag.tags``
run + span metadata                 ``metadata`` (one JSON object, the span's keys win)
tool span                           ``tool.name``
project (run's, else destination)   resource ``openinference.project.name``
error                               status ERROR and an ``exception`` event; success is OK
==================================  =========================================================

Phoenix's collector takes OTLP/HTTP at ``{endpoint}/v1/traces``; an API key is sent as
``Authorization: Bearer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)

from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    require_key,
    safe_url,
)
from tracemux.destinations.otlp import (
    STATUS_OK,
    Attrs,
    RemoteDestination,
    SpanMapper,
    dumps,
    json_value,
    traces_url,
)
from tracemux.model import RunInfo, SpanRecord

DEFAULT_ENDPOINT = "http://127.0.0.1:6006"
DEFAULT_PROJECT = "default"

_K = OpenInferenceSpanKindValues
#: tracemux span kind -> openinference.span.kind
SPAN_KINDS: dict[str, str] = {
    "chain": _K.CHAIN.value,
    "llm": _K.LLM.value,
    "tool": _K.TOOL.value,
    "retriever": _K.RETRIEVER.value,
    "embedding": _K.EMBEDDING.value,
    "agent": _K.AGENT.value,
    "prompt": _K.PROMPT.value,
    "parser": _K.CHAIN.value,
    "guardrail": _K.GUARDRAIL.value,
    "evaluator": _K.EVALUATOR.value,
    "custom": _K.UNKNOWN.value,
}

JSON = OpenInferenceMimeTypeValues.JSON.value
TEXT = OpenInferenceMimeTypeValues.TEXT.value

_A = SpanAttributes


def io_attributes(value: bytes | None, value_key: str, mime_key: str) -> Attrs:
    """``input.value``/``output.value`` and their mime type."""
    if value is None:
        return []
    if value[:1] == b'"':
        parsed = json_value(value)
        if isinstance(parsed, str):
            return [(value_key, parsed), (mime_key, TEXT)]
    return [(value_key, value.decode("utf-8", "replace")), (mime_key, JSON)]


class OpenInferenceMapper(SpanMapper):
    """Span -> OpenInference attributes (see the module docstring)."""

    ok_status = STATUS_OK

    def __init__(self, project: str | None, service_name: str = "tracemux") -> None:
        self.default_project = project
        self.service_name = service_name
        self._last_run: RunInfo | None = None
        self._last_meta: Any = None

    def project(self, run: RunInfo) -> str | None:
        return run.project or self.default_project

    def resource_attributes(self, project: str | None) -> Attrs:
        attrs: Attrs = [("service.name", self.service_name)]
        if project:
            attrs.append((ResourceAttributes.PROJECT_NAME, project))
        return attrs

    def run_attributes(self, run: RunInfo) -> Attrs:
        attrs: Attrs = [(_A.USER_ID, run.user_id), (_A.SESSION_ID, run.session_id)]
        if run.tags:
            attrs.append((_A.TAG_TAGS, list(run.tags)))
        return attrs

    def _run_metadata(self, run: RunInfo) -> Any:
        if run is not self._last_run:
            self._last_run = run
            self._last_meta = json_value(run.metadata)
        return self._last_meta

    def span_attributes(self, span: SpanRecord) -> Attrs:
        kind = SPAN_KINDS.get(span.kind, _K.UNKNOWN.value)
        attrs: Attrs = [(_A.OPENINFERENCE_SPAN_KIND, kind)]
        attrs.extend(io_attributes(span.inputs, _A.INPUT_VALUE, _A.INPUT_MIME_TYPE))
        attrs.extend(io_attributes(span.outputs, _A.OUTPUT_VALUE, _A.OUTPUT_MIME_TYPE))
        if span.model:
            key = _A.EMBEDDING_MODEL_NAME if span.kind == "embedding" else _A.LLM_MODEL_NAME
            attrs.append((key, span.model))
        usage = span.usage
        if usage:
            for key, attr in (
                ("input_tokens", _A.LLM_TOKEN_COUNT_PROMPT),
                ("output_tokens", _A.LLM_TOKEN_COUNT_COMPLETION),
                ("total_tokens", _A.LLM_TOKEN_COUNT_TOTAL),
            ):
                if key in usage:
                    attrs.append((attr, int(usage[key])))
        if span.kind == "tool":
            attrs.append((_A.TOOL_NAME, span.name))
        span_meta = None if span.is_root else span.metadata
        if span.run.metadata is not None or span_meta is not None:
            attrs.append((_A.METADATA, self._metadata(span.run, span_meta)))
        return attrs

    def _metadata(self, run: RunInfo, span_meta: bytes | None) -> str:
        """The ``metadata`` JSON: the run's, updated with the span's (small ones cached)."""
        key = (run.metadata, span_meta)
        text = _meta_cache.get(key)
        if text is not None:
            return text
        run_meta = self._run_metadata(run)
        meta = json_value(span_meta)
        if isinstance(run_meta, dict) and isinstance(meta, dict):
            text = dumps({**run_meta, **meta})
        elif meta is not None:
            text = dumps(meta)
        else:
            text = dumps(run_meta)
        if len(run.metadata or b"") + len(span_meta or b"") <= 512:
            if len(_meta_cache) >= 2048:
                _meta_cache.clear()
            _meta_cache[key] = text
        return text


_meta_cache: dict[tuple[bytes | None, bytes | None], str] = {}


@dataclass(frozen=True, repr=False)
class Phoenix(RemoteDestination):
    """Send runs to Arize Phoenix (self-hosted or Phoenix Cloud).

    ``endpoint``: Phoenix's base URL (its collector, ``/v1/traces``, is appended unless
    given). ``project``: the Phoenix project (a run's own ``project`` takes precedence).
    ``api_key``: sent as a bearer token when set. ``timeout``: seconds per request.
    """

    endpoint: str = DEFAULT_ENDPOINT
    project: str = DEFAULT_PROJECT
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Phoenix"
        object.__setattr__(self, "endpoint", check_url("endpoint", self.endpoint, owner=owner))
        if self.api_key is not None:
            require_key("api_key", self.api_key, owner=owner)
        if not isinstance(self.project, str) or not self.project.strip():
            from tracemux.config import ConfigError

            raise ConfigError("Phoenix: project must be a non-empty string")
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))

    @property
    def base_url(self) -> str:
        """Phoenix's base URL (the endpoint without ``/v1/traces``)."""
        return self.endpoint.removesuffix("/v1/traces")

    def traces_url(self) -> str:
        return traces_url(self.endpoint)

    def request_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def mapper(self) -> OpenInferenceMapper:
        return OpenInferenceMapper(self.project)

    def describe(self) -> str:
        key = f"{mask_secret(self.api_key)} " if self.api_key else ""
        tag = f"({key}{self.identity_tag()})"
        return f"phoenix:{safe_url(self.base_url)} project={self.project} {tag}"
