"""OpenInference: the attribute mapping Phoenix, Arize and the generic OTLP destination send.

Attribute names come from the ``openinference-semantic-conventions`` package:

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
"""

from __future__ import annotations

from typing import Any

from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)

from tracemux.destinations.spanmap import STATUS_OK, Attrs, SpanMapper, dumps, json_value
from tracemux.model import RunInfo, SpanRecord

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
