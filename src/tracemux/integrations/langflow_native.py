"""Langflow's native tracer, run beside tracemux so that Langflow's own trace view keeps working.

langflow-base's ``NativeTracer`` (``langflow/services/tracing/native.py``) writes each flow
run into Langflow's database (tables ``trace`` and ``span``), which the UI reads through
``GET /api/v1/monitor/traces``. When tracemux replaces Langflow's tracing service, this
module drives a ``NativeTracer`` per run exactly as Langflow's own service does
(``add_trace`` / ``end_trace`` per component, ``end`` then ``wait_for_flush`` per run), so
those rows are written as before. The remote backends' tracers of Langflow (LangSmith,
Langfuse, Phoenix, ...) are *not* run: tracemux exports to those itself.

Everything here is optional: without langflow-base (lfx alone), or with
``LANGFLOW_NATIVE_TRACING=false`` (Langflow's own switch), :func:`native_tracing` returns
None and nothing is done. A failure of the native tracer is logged (rate-limited) and
never reaches the flow or tracemux's own recording.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextvars import Token
from typing import Any
from uuid import UUID

from tracemux.context import reset_quietly
from tracemux.ratelimit import rate_limited

log = logging.getLogger(__name__)
_warn = rate_limited(log)

_SENSITIVE = ("api_key", "password", "server_url")


def _masked(value: Any) -> Any:
    """Inputs as Langflow's service hands them to its tracers (secret-named keys masked)."""
    if isinstance(value, Mapping):
        return {
            k: "*****" if any(word in str(k).lower() for word in _SENSITIVE) else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


class _ComponentRef:
    """What Langflow's ``component_context_var`` holds, as far as the native tracer reads
    it (``trace_id``: the component's vertex id; its LangChain runs nest under it)."""

    __slots__ = ("trace_id", "trace_name")

    def __init__(self, trace_id: str, trace_name: str) -> None:
        self.trace_id = trace_id
        self.trace_name = trace_name


class NativeRun:
    """One flow run's ``NativeTracer`` and what Langflow's service keeps for it."""

    __slots__ = ("_context_var", "all_inputs", "all_outputs", "tracer")

    def __init__(self, tracer: Any, context_var: Any) -> None:
        self.tracer = tracer
        self._context_var = context_var
        self.all_inputs: dict[str, dict[str, Any]] = {}
        self.all_outputs: dict[str, dict[str, Any]] = {}

    def start_component(
        self,
        component: Any,
        trace_name: str,
        inputs: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[str, Token[Any] | None]:
        """``add_trace`` for a component starting; returns what :meth:`end_component` needs."""
        vertex = getattr(component, "_vertex", None)
        trace_id = str(getattr(vertex, "id", None) or trace_name)
        token = None
        try:
            clean = _masked(dict(inputs or {}))
            self.all_inputs.setdefault(trace_name, {}).update(clean)
            if self._context_var is not None:
                token = self._context_var.set(_ComponentRef(trace_id, trace_name))
            if self.tracer.ready:
                trace_type = getattr(component, "trace_type", None) or "chain"
                self.tracer.add_trace(
                    trace_id, trace_name, trace_type, clean, dict(metadata or {}), vertex
                )
        except Exception as exc:
            _warn.warning("add_trace", "tracemux: native add_trace failed: %s", exc)
        return trace_id, token

    def set_outputs(self, trace_name: str, outputs: Any) -> None:
        if isinstance(outputs, Mapping):
            self.all_outputs.setdefault(trace_name, {}).update(outputs)

    def end_component(
        self,
        started: tuple[str, Token[Any] | None],
        trace_name: str,
        error: BaseException | None,
        logs: Sequence[Any],
    ) -> None:
        """``end_trace`` for a component that ended (``error`` if it raised)."""
        trace_id, token = started
        try:
            if self.tracer.ready:
                self.tracer.end_trace(
                    trace_id=trace_id,
                    trace_name=trace_name,
                    outputs=self.all_outputs.get(trace_name, {}),
                    error=error,
                    logs=list(logs),
                )
        except Exception as exc:
            _warn.warning("end_trace", "tracemux: native end_trace failed: %s", exc)
        finally:
            if token is not None:
                reset_quietly(self._context_var, token)

    def event_span(self, span_id: str, name: str, outputs: Any, span_type: str) -> None:
        """A standalone instantaneous span, as Langflow's ``record_event_span`` writes it."""
        try:
            if self.tracer.ready:
                self.tracer.add_trace(span_id, name, span_type, {}, {}, None)
                self.tracer.end_trace(trace_id=span_id, trace_name=name, outputs=outputs)
        except Exception as exc:
            _warn.warning("event_span", "tracemux: native event span failed: %s", exc)

    def get_langchain_callback(self) -> Any:
        try:
            return self.tracer.get_langchain_callback() if self.tracer.ready else None
        except Exception as exc:
            _warn.warning("callback", "tracemux: native LangChain callback failed: %s", exc)
            return None

    async def end(self, outputs: Any, error: BaseException | str | None) -> None:
        """End the run and wait for the native tracer's database write, as Langflow does."""
        try:
            if not self.tracer.ready:
                return
            err = error if isinstance(error, BaseException) or error is None else Exception(error)
            self.tracer.end(
                self.all_inputs,
                outputs=self.all_outputs,
                error=err,
                metadata=outputs if isinstance(outputs, Mapping) else None,
            )
            await self.tracer.wait_for_flush()
        except Exception as exc:
            _warn.warning("end", "tracemux: native tracer end failed: %s", exc)


class NativeTracing:
    """Makes a :class:`NativeRun` per flow run (when the native tracer is enabled)."""

    def __init__(self, tracer_class: type, context_var: Any) -> None:
        self._tracer_class = tracer_class
        self._context_var = context_var

    def start(
        self,
        run_id: UUID | str | None,
        run_name: str,
        user_id: str | None,
        session_id: str | None,
        project_name: str,
        flow_id: UUID | str | None,
    ) -> NativeRun | None:
        """A native tracer for this run, as Langflow's ``_initialize_native_tracer`` makes it;
        None if it is disabled (``LANGFLOW_NATIVE_TRACING=false``) or cannot be made."""
        if run_id is None:
            return None
        try:
            tracer = self._tracer_class(
                trace_name=run_name,
                trace_type="chain",
                project_name=project_name,
                trace_id=run_id if isinstance(run_id, UUID) else UUID(str(run_id)),
                flow_id=None if flow_id is None else str(flow_id),
                user_id=user_id,
                session_id=session_id,
            )
        except Exception as exc:
            _warn.warning("start", "tracemux: native tracer not started: %s", exc)
            return None
        if not tracer.ready:
            return None
        return NativeRun(tracer, self._context_var)


def native_tracing(*, required: bool = False) -> NativeTracing | None:
    """Langflow's native tracer, if langflow-base is installed; else None (or ImportError
    when ``required``)."""
    try:
        from langflow.services.tracing.native import NativeTracer
    except ImportError:
        if required:
            raise
        return None
    try:
        from langflow.services.tracing.service import component_context_var
    except ImportError:  # the tracer falls back to the last component it saw
        component_context_var = None
    return NativeTracing(NativeTracer, component_context_var)
