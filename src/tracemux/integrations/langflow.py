"""A tracing service with the shape of Langflow's, recording into tracemux.

Langflow's ``TracingService`` is driven by its graph: ``start_tracers`` when a flow run
begins, ``trace_component`` around every component's build, ``add_log`` /
``set_outputs`` from inside a component, ``get_langchain_callbacks`` for LangChain
components, ``end_tracers`` when the run is over. This class keeps those names and that
lifecycle, but instead of creating a tracer (and an SDK client, and its threads) per
flow run it records into one :class:`tracemux.TracingService`, whose single export
thread does all network I/O. Nothing here waits on the network or raises into the flow.

As in Langflow, the run and the component being traced live in context variables, so
concurrent flow runs on one event loop (each in its own task) stay separate, and work
started from a component (child tasks, ``asyncio.to_thread``) inherits its span.

Differences from Langflow, on purpose:

- a call made with no run or component in context (``set_outputs`` outside
  ``trace_component``, ``end_tracers`` without ``start_tracers``) is logged and ignored
  rather than raising ``RuntimeError``: tracing must not break a flow;
- a component traced while another component of the same run is current nests under it
  (a flow run as a tool of an agent component, for instance); otherwise components are
  children of the run;
- inputs are not scrubbed here: every value is masked by tracemux's redactor on the
  export thread (secret-named keys such as ``openai_api_key``, credential-shaped strings).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tracemux import config as _config
from tracemux.ratelimit import RateLimitedLog
from tracemux.service import LOG_LEVELS, Run, Span, get_service
from tracemux.service import TracingService as CoreService
from tracemux.service import _current as _current_span_var

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler

__all__ = ["TracingService"]

log = logging.getLogger("tracemux.integrations.langflow")
_warn = RateLimitedLog(log, interval=60.0)


class _TraceContext:
    """One flow run: what ``start_tracers`` put in context."""

    __slots__ = (
        "components",
        "ended",
        "previous",
        "previous_span",
        "project_name",
        "run",
    )

    def __init__(
        self,
        run: Run,
        project_name: str | None,
        previous: _TraceContext | None,
        previous_span: Span | None,
    ) -> None:
        self.run = run
        self.project_name = project_name
        self.previous = previous
        self.previous_span = previous_span
        self.components: dict[str, _ComponentContext] = {}
        self.ended = False


class _ComponentContext:
    """One component being traced: what ``trace_component`` put in context."""

    __slots__ = ("metadata", "outputs", "span", "trace", "trace_name")

    def __init__(
        self, trace: _TraceContext, trace_name: str, span: Span, metadata: dict[str, Any]
    ) -> None:
        self.trace = trace
        self.trace_name = trace_name
        self.span = span
        self.metadata = metadata
        self.outputs: Any = {}


_trace_var: ContextVar[_TraceContext | None] = ContextVar("tracemux_langflow_trace", default=None)
_component_var: ContextVar[_ComponentContext | None] = ContextVar(
    "tracemux_langflow_component", default=None
)


class _NoopComponentTrace:
    """What ``trace_component`` returns when tracing is off: enters and exits at once."""

    __slots__ = ("_service",)

    def __init__(self, service: TracingService) -> None:
        self._service = service

    async def __aenter__(self) -> TracingService:
        return self._service

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return False


class TracingService:
    """Langflow's tracing-service interface, recorded by one :class:`tracemux.TracingService`.

    ``service``: where runs are recorded (default: :func:`tracemux.get_service`, looked
    up on first use). ``deactivated``: turn every call into a no-op; when not given, it
    follows ``TRACEMUX_DISABLED`` (and a disabled ``service``).

    Typical use, as Langflow's graph does it::

        await tracing.start_tracers(run_id, "my flow", user_id, session_id)
        async with tracing.trace_component(component, "ChatInput-abc", inputs):
            tracing.add_log("ChatInput-abc", {"name": "note", "message": "hi", "type": "text"})
            tracing.set_outputs("ChatInput-abc", {"message": "hi"})
        await tracing.end_tracers({"result": "..."})
    """

    name = "tracing_service"

    def __init__(self, service: CoreService | None = None, *, deactivated: bool | None = None):
        if deactivated is None:
            raw = os.environ.get("TRACEMUX_DISABLED", "")
            deactivated = _config.parse_bool("TRACEMUX_DISABLED", raw) if raw.strip() else False
        self._service = service
        self.deactivated: bool = bool(deactivated) or (service is not None and service.disabled)
        self._noop = _NoopComponentTrace(self)

    @property
    def service(self) -> CoreService:
        """The tracemux service runs are recorded with."""
        svc = self._service
        if svc is None:
            svc = self._service = get_service()
        return svc

    @property
    def project_name(self) -> str | None:
        """The project of the flow run in this context, if any."""
        trace = _trace_var.get()
        return None if trace is None else trace.project_name

    # -- the run ----------------------------------------------------------------------------

    async def start_tracers(
        self,
        run_id: UUID | str | None,
        run_name: str,
        user_id: str | None,
        session_id: str | None,
        project_name: str | None = None,
        flow_id: UUID | str | None = None,
    ) -> None:
        """Begin a flow run in the current context: a tracemux run named ``run_name``.

        The run becomes the current span, so components and any tracemux spans opened
        in this task (or tasks and threads started from it) belong to it.
        """
        if self.deactivated:
            return
        try:
            svc = self.service
            if svc.disabled:
                return
            run = svc.trace_run(
                run_name,
                run_id=None if run_id is None else str(run_id),
                user_id=user_id,
                session_id=session_id,
                project=project_name,
                metadata=None if flow_id is None else {"flow_id": str(flow_id)},
            )
            if not isinstance(run, Run):
                return
            previous = _trace_var.get()
            if previous is not None and previous.ended:
                previous = None
            trace = _TraceContext(run, project_name, previous, _current_span_var.get())
            _trace_var.set(trace)
            _current_span_var.set(run)
        except Exception as exc:
            _warn.warning(
                "start_tracers", "tracemux: start_tracers failed: %s: %s", type(exc).__name__, exc
            )

    async def end_tracers(self, outputs: Any, error: BaseException | str | None = None) -> None:
        """End the flow run of this context with ``outputs`` (and ``error`` if it failed).

        Only hands the run to the export thread: no network I/O on the event loop.
        Components still open are ended too, marked as cut short.
        """
        if self.deactivated:
            return
        trace = _trace_var.get()
        if trace is None or trace.ended:
            _warn.warning("end_tracers", "tracemux: end_tracers called with no run in context")
            return
        trace.ended = True
        run = trace.run
        try:
            for comp in list(trace.components.values()):
                if not comp.span.ended:
                    comp.span.set_error("the flow run ended while this component was running")
                    comp.span.end()
            trace.components.clear()
            if outputs is not None:
                run.set_outputs(outputs)
            if error is not None:
                run.set_error(error)
            run.end()
        finally:
            if _trace_var.get() is trace:
                _trace_var.set(trace.previous)
            if _current_span_var.get() is run:
                _current_span_var.set(trace.previous_span)
            trace.previous = trace.previous_span = None

    # -- components -------------------------------------------------------------------------

    def trace_component(
        self,
        component: Any,
        trace_name: str,
        inputs: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """An async context manager tracing one component's build as a span.

        ``component`` is duck-typed: its ``trace_type`` (default ``chain``) is the span
        kind, and its ``_vertex.id``, if it has one, is recorded as ``component_id``.
        Inside the block, the span is current; an exception is recorded and re-raised.
        Yields this service, as Langflow's does.
        """
        if self.deactivated:
            return self._noop
        return self._trace_component(component, trace_name, inputs, metadata)

    @asynccontextmanager
    async def _trace_component(
        self,
        component: Any,
        trace_name: str,
        inputs: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> AsyncIterator[TracingService]:
        trace = _trace_var.get()
        if trace is None or trace.ended:
            _warn.warning(
                "trace_component", "tracemux: trace_component called with no run in context"
            )
            yield self
            return
        meta: dict[str, Any] = dict(metadata) if metadata else {}
        vertex_id = getattr(getattr(component, "_vertex", None), "id", None)
        if vertex_id is not None:
            meta["component_id"] = str(vertex_id)
        kind = getattr(component, "trace_type", None) or "chain"
        span = trace.run.span(trace_name, str(kind).lower(), inputs=inputs, metadata=meta or None)
        comp = _ComponentContext(trace, trace_name, span, meta)
        trace.components[trace_name] = comp
        comp_token = _component_var.set(comp)
        span_token = _current_span_var.set(span)
        try:
            yield self
        except BaseException as exc:
            span.set_error(exc)
            raise
        finally:
            _reset(_current_span_var, span_token)
            _reset(_component_var, comp_token)
            if trace.components.get(trace_name) is comp:
                del trace.components[trace_name]
            span.end()

    def _component(self, trace_name: str, what: str) -> _ComponentContext | None:
        comp = _component_var.get()
        if comp is not None and comp.trace_name == trace_name and not comp.span.ended:
            return comp
        trace = _trace_var.get()
        if trace is not None:
            comp = trace.components.get(trace_name)
            if comp is not None:
                return comp
        _warn.warning(
            (what, "no component"),
            "tracemux: %s(%r) called outside trace_component; ignored",
            what,
            trace_name,
        )
        return None

    def add_log(self, trace_name: str, log: Any) -> None:
        """Attach a Langflow log (a mapping or object with ``name``, ``message``, ``type``)
        to the component span ``trace_name``."""
        if self.deactivated:
            return
        comp = self._component(trace_name, "add_log")
        if comp is None:
            return
        if isinstance(log, Mapping):
            message, name, type_ = log.get("message"), log.get("name"), log.get("type")
        elif isinstance(log, str):
            message, name, type_ = log, None, None
        else:
            message = getattr(log, "message", log)
            name, type_ = getattr(log, "name", None), getattr(log, "type", None)
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if type_ is not None:
            fields["type"] = type_
        level = type_ if isinstance(type_, str) and type_ in LOG_LEVELS else "info"
        if isinstance(message, str):
            comp.span.add_log(message, level, **fields)
        else:
            comp.span.add_log(str(name or "log"), level, value=message, **fields)

    def set_outputs(
        self,
        trace_name: str,
        outputs: Mapping[str, Any] | Any,
        output_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Record outputs of the component span ``trace_name`` (merged into what was set
        before, as Langflow does), and optional output metadata."""
        if self.deactivated:
            return
        comp = self._component(trace_name, "set_outputs")
        if comp is None:
            return
        if isinstance(outputs, Mapping) and isinstance(comp.outputs, dict):
            comp.outputs.update(outputs)
        elif outputs is not None:
            comp.outputs = outputs
        if output_metadata:
            comp.metadata.update(output_metadata)
            comp.span.set_outputs(comp.outputs, metadata=comp.metadata)
        else:
            comp.span.set_outputs(comp.outputs)

    # -- LangChain ----------------------------------------------------------------------------

    def get_langchain_callbacks(self) -> list[BaseCallbackHandler]:
        """Callback handlers nesting LangChain runs under the current component's span
        (or the run, outside components). Empty when tracing is off, when no run is in
        context, or when ``langchain-core`` is not installed."""
        if self.deactivated:
            return []
        trace = _trace_var.get()
        if trace is None or trace.ended:
            return []
        comp = _component_var.get()
        parent: Span = trace.run
        if comp is not None and comp.trace is trace and not comp.span.ended:
            parent = comp.span
        try:
            from tracemux.integrations.langchain import CallbackHandler
        except ImportError:
            _warn.warning(
                "langchain", "tracemux: langchain-core is not installed: no LangChain callbacks"
            )
            return []
        return [CallbackHandler(self.service, parent=parent)]


def _reset(var: ContextVar[Any], token: Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:  # exited in another context than it was entered in
        pass
