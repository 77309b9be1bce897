"""LangChain callbacks recorded as tracemux spans.

>>> from tracemux.integrations.langchain import CallbackHandler
>>> chain.invoke({"topic": "owls"}, config={"callbacks": [CallbackHandler()]})

Every LangChain run (chain, prompt, chat model or LLM, output parser, tool, retriever)
becomes a span, nested by LangChain's ``run_id`` / ``parent_run_id``. A top-level
LangChain run nests under the handler's ``parent`` span if one was given, else under the
tracemux span current where the callback fires, else it starts a run of its own.

Chat models and LLMs record the model name, the messages or prompts, the invocation
parameters and the token usage (``usage_metadata`` on the returned message, or the
``token_usage`` LangChain providers put in ``llm_output``). Tools record their input and
output, retrievers the query and the documents.

One handler may serve many threads and tasks at once: open spans live in a map guarded
by a lock. A callback never raises into LangChain; a failure is logged (rate-limited).

Requires ``langchain-core`` (``pip install tracemux[langchain]``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

from tracemux.context import current_span
from tracemux.ratelimit import rate_limited
from tracemux.service import Span, TracingService, get_service

__all__ = ["MAX_OPEN_RUNS", "CallbackHandler"]

log = logging.getLogger(__name__)
_warn = rate_limited(log)

#: LangChain runs one handler keeps open at most; past it the oldest is ended as abandoned
MAX_OPEN_RUNS = 10_000

_KINDS = {
    "prompt": "prompt",
    "parser": "parser",
    "tool": "tool",
    "retriever": "retriever",
    "llm": "llm",
    "embedding": "embedding",
    "agent": "agent",
}
_ROLES = {"human": "user", "ai": "assistant", "AIMessageChunk": "assistant"}
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "azure_deployment")

C = TypeVar("C", bound=Callable[..., Any])


def _safe(method: C) -> C:
    """Run a callback; log instead of raising whatever goes wrong."""

    @functools.wraps(method)
    def wrapper(self: CallbackHandler, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            _warn.warning(
                ("callback", method.__name__),
                "tracemux: LangChain callback %s failed: %s: %s",
                method.__name__,
                type(exc).__name__,
                exc,
            )

    return wrapper  # type: ignore[return-value]


class CallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler recording runs as tracemux spans.

    ``service``: the :class:`~tracemux.TracingService` used when a top-level LangChain
    run starts a run of its own (default: :func:`tracemux.get_service`).
    ``parent``: a span to nest top-level LangChain runs under (for instance a flow
    component's span); ignored once it has ended.
    ``user_id``, ``session_id``, ``project``, ``tags``: recorded on runs the handler
    starts itself.
    """

    raise_error = False
    run_inline = True  # cheap, non-blocking callbacks: no thread hop on async runs

    def __init__(
        self,
        service: TracingService | None = None,
        *,
        parent: Span | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self._service = service
        self._parent = parent
        self._user_id = user_id
        self._session_id = session_id
        self._project = project
        self._tags = tuple(tags) if tags else None
        self._lock = threading.Lock()
        self._spans: dict[UUID, Span] = {}

    # -- bookkeeping ------------------------------------------------------------------

    @property
    def open_runs(self) -> int:
        """How many LangChain runs are started and not yet ended."""
        return len(self._spans)

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: str,
        inputs: Any,
        metadata: Any,
    ) -> Span | None:
        parent: Span | None = None
        if parent_run_id is not None:
            with self._lock:
                parent = self._spans.get(parent_run_id)
        if parent is None:
            fixed = self._parent
            if fixed is not None and not fixed.ended:
                parent = fixed
            else:
                cur = current_span()
                if cur is not None and not cur.ended:
                    parent = cur
        if parent is not None:
            span = parent.span(name, kind, inputs=inputs, metadata=metadata)
        else:
            svc = self._service if self._service is not None else get_service()
            span = svc.trace_run(
                name,
                run_id=str(run_id),
                user_id=self._user_id,
                session_id=self._session_id,
                project=self._project,
                inputs=inputs,
                metadata=metadata,
                tags=self._tags,
                kind=kind,
            )
        if not isinstance(span, Span):  # a disabled service: nothing to keep
            return None
        evicted: Span | None = None
        with self._lock:
            if len(self._spans) >= MAX_OPEN_RUNS:
                evicted = self._spans.pop(next(iter(self._spans)))
            self._spans[run_id] = span
        if evicted is not None:
            evicted.set_error("abandoned: the LangChain run never ended")
            evicted.end()
        return span

    def _get(self, run_id: UUID) -> Span | None:
        with self._lock:
            return self._spans.get(run_id)

    def _pop(self, run_id: UUID) -> Span | None:
        with self._lock:
            return self._spans.pop(run_id, None)

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        span = self._pop(run_id)
        if span is not None:
            span.set_error(error)
            span.end()

    def _finish(self, run_id: UUID, outputs: Any) -> None:
        """End the span of LangChain run ``run_id`` with its outputs."""
        span = self._pop(run_id)
        if span is not None:
            span.set_outputs(outputs)
            span.end()

    # -- chains, prompts, parsers -------------------------------------------------------

    @_safe
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain, prompt template or output parser started."""
        kind = _KINDS.get(kwargs.get("run_type") or "", "chain")
        name = _name(serialized, kwargs, kind)
        self._start(run_id, parent_run_id, name, kind, _plain(inputs), _meta(tags, metadata))

    @_safe
    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain ended."""
        self._finish(run_id, _plain(outputs))

    @_safe
    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain failed."""
        self._fail(run_id, error)

    # -- chat models and LLMs -------------------------------------------------------------

    @_safe
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model was called with ``messages``."""
        batches = [[_message(m) for m in batch] for batch in messages]
        self._start_llm(
            serialized,
            batches[0] if len(batches) == 1 else batches,
            run_id,
            parent_run_id,
            tags,
            metadata,
            kwargs,
        )

    @_safe
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A (text) LLM was called with ``prompts``."""
        inputs = prompts[0] if len(prompts) == 1 else list(prompts)
        self._start_llm(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)

    def _start_llm(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        params = kwargs.get("invocation_params")
        params = dict(params) if isinstance(params, Mapping) else {}
        meta = _meta(tags, metadata) or {}
        if params:
            meta["invocation_params"] = params
        span = self._start(
            run_id, parent_run_id, _name(serialized, kwargs, "llm"), "llm", inputs, meta or None
        )
        if span is not None:
            model = _model_name(params, metadata, serialized)
            if model:
                span.set_usage(model=model)

    @_safe
    def on_llm_end(
        self,
        response: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model or LLM returned ``response`` (an ``LLMResult``)."""
        span = self._pop(run_id)
        if span is None:
            return
        try:
            generations = getattr(response, "generations", None) or []
            outputs: list[Any] = []
            usage: dict[str, int | float] = {}
            model: str | None = None
            for batch in generations:
                items = []
                for gen in batch:
                    message = getattr(gen, "message", None)
                    if isinstance(message, BaseMessage):
                        items.append(_message(message))
                        _add_usage(usage, getattr(message, "usage_metadata", None))
                        model = model or _model_from(getattr(message, "response_metadata", None))
                    else:
                        items.append(getattr(gen, "text", gen))
                outputs.append(items[0] if len(items) == 1 else items)
            llm_output = getattr(response, "llm_output", None)
            if isinstance(llm_output, Mapping):
                if not usage:
                    _add_llm_output_usage(usage, llm_output)
                model = _model_from(llm_output) or model
            span.set_outputs(outputs[0] if len(outputs) == 1 else outputs)
            if usage or model:
                span.set_usage(model=model, **usage)
        finally:
            span.end()

    @_safe
    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model or LLM call failed."""
        self._fail(run_id, error)

    # -- tools and retrievers -----------------------------------------------------------

    @_safe
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool was called (``inputs`` are its parsed arguments when LangChain has them)."""
        meta = _meta(tags, metadata) or {}
        if kwargs.get("tool_call_id"):
            meta["tool_call_id"] = kwargs["tool_call_id"]
        if serialized and serialized.get("description"):
            meta["description"] = serialized["description"]
        self._start(
            run_id,
            parent_run_id,
            _name(serialized, kwargs, "tool"),
            "tool",
            _plain(inputs) if inputs is not None else input_str,
            meta or None,
        )

    @_safe
    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool returned ``output``."""
        self._finish(run_id, _plain(output))

    @_safe
    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool failed."""
        self._fail(run_id, error)

    @_safe
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever was queried."""
        self._start(
            run_id,
            parent_run_id,
            _name(serialized, kwargs, "retriever"),
            "retriever",
            {"query": query},
            _meta(tags, metadata),
        )

    @_safe
    def on_retriever_end(
        self,
        documents: Sequence[Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever returned ``documents``."""
        self._finish(run_id, [_plain(d) for d in documents])

    @_safe
    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever failed."""
        self._fail(run_id, error)

    # -- events logged on the run's span ---------------------------------------------------

    @_safe
    def on_text(
        self, text: str, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Text a chain printed: a log line on its span."""
        span = self._get(run_id)
        if span is not None:
            span.add_log(text)

    @_safe
    def on_agent_action(
        self, action: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """An agent chose a tool: a log line on the agent's span."""
        span = self._get(run_id)
        if span is not None:
            span.add_log(
                f"agent action: {getattr(action, 'tool', '?')}",
                tool=getattr(action, "tool", None),
                tool_input=_plain(getattr(action, "tool_input", None)),
            )

    @_safe
    def on_agent_finish(
        self, finish: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """An agent finished: a log line on the agent's span."""
        span = self._get(run_id)
        if span is not None:
            span.add_log(
                "agent finish", return_values=_plain(getattr(finish, "return_values", None))
            )

    @_safe
    def on_retry(
        self, retry_state: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """A call is retried: a warning log line on its span."""
        span = self._get(run_id)
        if span is not None:
            span.add_log(
                "retry", level="warning", attempt=getattr(retry_state, "attempt_number", None)
            )

    @_safe
    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A custom event dispatched by a run: a log line on its span."""
        span = self._get(run_id)
        if span is not None:
            span.add_log(name, data=_plain(data))


# -- helpers --------------------------------------------------------------------------------


def _name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ident = serialized.get("id")
        if isinstance(ident, list) and ident:
            return str(ident[-1])
    return default


def _meta(tags: list[str] | None, metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not tags and not metadata:
        return None
    meta: dict[str, Any] = dict(metadata) if metadata else {}
    if tags:
        meta["tags"] = list(tags)
    return meta


def _model_name(
    params: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    serialized: Mapping[str, Any] | None,
) -> str | None:
    for key in _MODEL_KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    if metadata and isinstance(metadata.get("ls_model_name"), str):
        return str(metadata["ls_model_name"])
    if serialized and isinstance(serialized.get("kwargs"), Mapping):
        return _model_from(serialized["kwargs"])
    return None


def _model_from(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    for key in ("model_name", "model", "model_id"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _add_usage(usage: dict[str, int | float], meta: Any) -> None:
    """Add a message's ``usage_metadata`` (and its token details) to ``usage``."""
    if not isinstance(meta, Mapping):
        return
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        if _number(meta.get(key)):
            usage[key] = usage.get(key, 0) + meta[key]
    for side in ("input", "output"):
        details = meta.get(f"{side}_token_details")
        if isinstance(details, Mapping):
            for key, value in details.items():
                if _number(value):
                    name = f"{side}_{key}"
                    usage[name] = usage.get(name, 0) + value


def _add_llm_output_usage(usage: dict[str, int | float], llm_output: Mapping[str, Any]) -> None:
    """Token counts from ``llm_output["token_usage"]`` (or ``["usage"]``)."""
    raw = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(raw, Mapping):
        return
    for target, keys in (
        ("input_tokens", ("prompt_tokens", "input_tokens")),
        ("output_tokens", ("completion_tokens", "output_tokens")),
        ("total_tokens", ("total_tokens",)),
    ):
        for key in keys:
            if _number(raw.get(key)):
                usage[target] = raw[key]
                break


def _message(m: BaseMessage) -> dict[str, Any]:
    """A message as a small role/content dict (plus tool calls when there are any)."""
    out: dict[str, Any] = {"role": _ROLES.get(m.type, m.type), "content": m.content}
    if m.name:
        out["name"] = m.name
    tool_calls = getattr(m, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "name": c.get("name"), "args": c.get("args")} for c in tool_calls
        ]
    tool_call_id = getattr(m, "tool_call_id", None)
    if tool_call_id:
        out["tool_call_id"] = tool_call_id
    status = getattr(m, "status", None)
    if m.type == "tool" and status and status != "success":
        out["status"] = status
    finish = (m.response_metadata or {}).get("finish_reason")
    if finish:
        out["finish_reason"] = finish
    return out


def _plain(value: Any, depth: int = 0) -> Any:
    """LangChain objects (messages, prompt values, documents) as small plain values."""
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, ChatPromptValue):
        return [_message(m) for m in value.messages]
    if isinstance(value, StringPromptValue):
        return value.text
    if depth < 4:
        if isinstance(value, Mapping):
            return {k: _plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_plain(v, depth + 1) for v in value]
    page_content = getattr(value, "page_content", None)
    if isinstance(page_content, str):  # a Document
        doc: dict[str, Any] = {"page_content": page_content}
        if getattr(value, "metadata", None):
            doc["metadata"] = value.metadata
        if getattr(value, "id", None):
            doc["id"] = value.id
        return doc
    return value
