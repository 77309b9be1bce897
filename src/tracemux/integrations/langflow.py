"""Langflow's tracing service, recording into tracemux.

:class:`TracingService` implements the tracing-service interface of Langflow 1.13 (lfx's
``BaseTracingService``; every method lfx and langflow-base call on it, see
``docs/langflow.md``). When lfx is installed it *is* an lfx service (a subclass of
``lfx.services.tracing.base.BaseTracingService``) and can be registered in place of
Langflow's own, as an opt-in, in an ``lfx.toml`` (in ``LANGFLOW_CONFIG_DIR`` or the
working directory)::

    [services]
    tracing_service = "tracemux.integrations.langflow:TracingService"

tracemux does not require lfx, and installing it registers nothing: Langflow keeps its own
tracing service unless that file says otherwise.

Langflow's graph drives it: ``start_tracers`` when a flow run begins, ``trace_component``
around every component's build, ``add_log`` / ``set_outputs`` from inside a component,
``get_langchain_callbacks`` for LangChain components, ``end_tracers`` when the run is
over. Instead of a tracer (and an SDK client, and its threads) per flow run and backend,
every run is recorded into one :class:`tracemux.TracingService`, whose single export
thread does all network I/O. Nothing here waits on the network or raises into the flow.

Per run, as Langflow's own tracers do, the backends' variables (``LANGFUSE_*``,
``LANGSMITH_*``, ``PHOENIX_*``, ``OTEL_EXPORTER_OTLP_*``, ...) are read from the
environment at ``start_tracers``: a key rotated in the environment takes effect on the
next run, and each run exports with the credentials it started with. The destinations are
cached on the variables' values, so an unchanged environment costs a few microseconds.
Langflow's ``deactivate_tracing`` setting (``LANGFLOW_DEACTIVATE_TRACING``) turns every
call into a no-op. With langflow-base installed, Langflow's native tracer (the data of its
own trace view) runs beside tracemux (:mod:`tracemux.integrations.langflow_native`).

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
- a run whose ``end_tracers`` never comes (lfx's ``Graph.async_start`` skips it when a
  component raises) is ended as incomplete later (:mod:`tracemux.reaper`);
- inputs are not scrubbed here: every value is masked by tracemux's redactor on the
  export thread (secret-named keys such as ``openai_api_key``, credential-shaped strings).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tracemux import config as _config
from tracemux.context import CURRENT_SPAN, detach, reset_quietly
from tracemux.destinations import env as _env
from tracemux.destinations.base import Destination
from tracemux.destinations.langfuse import Langfuse
from tracemux.integrations.langflow_native import NativeRun, NativeTracing, native_tracing
from tracemux.ratelimit import rate_limited
from tracemux.reaper import open_runs
from tracemux.service import LOG_LEVELS, Run, Span, get_service
from tracemux.service import TracingService as CoreService

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler


__all__ = ["TracingService"]

log = logging.getLogger(__name__)
_warn = rate_limited(log)


class _TraceContext:
    """One flow run: what ``start_tracers`` put in context."""

    __slots__ = (
        "components",
        "ended",
        "failure",
        "native",
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
        native: NativeRun | None = None,
    ) -> None:
        self.run = run
        self.project_name = project_name
        self.previous = previous
        self.previous_span = previous_span
        self.native = native
        self.components: dict[str, _ComponentContext] = {}
        self.ended = False
        #: the error of the first component directly under the run that raised: lfx stops a
        #: run there, so the run failed with it even when ``end_tracers`` gets no error
        self.failure: BaseException | None = None


class _ComponentContext:
    """One component being traced: what ``trace_component`` put in context."""

    __slots__ = ("metadata", "native_logs", "outputs", "span", "trace", "trace_name")

    def __init__(
        self, trace: _TraceContext, trace_name: str, span: Span, metadata: dict[str, Any]
    ) -> None:
        self.trace = trace
        self.trace_name = trace_name
        self.span = span
        self.metadata = metadata
        self.outputs: Any = {}
        #: the logs as Langflow's native tracer wants them (only when it runs beside)
        self.native_logs: list[Any] | None = None


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


def _lfx_base() -> type:
    """lfx's ``BaseTracingService`` when lfx is installed, else ``object``."""
    try:
        from lfx.services.tracing.base import BaseTracingService
    except ImportError:
        return object
    return BaseTracingService


_Base: Any = _lfx_base()

#: variables besides the backends' that decide a run's destinations (the local store)
_STORE_VARIABLES = ("TRACEMUX_DB", "TRACEMUX_STORE_MAX_RUNS", "TRACEMUX_STORE_MAX_AGE_DAYS")
_DEACTIVATE_VARIABLE = "LANGFLOW_DEACTIVATE_TRACING"


def _environ_lookup(names: tuple[str, ...], prefix: str) -> Callable[[], tuple[Any, ...]]:
    """A function returning the current values of ``names`` in ``os.environ`` (and, when
    the first of ``names`` is set, of every variable starting with ``prefix``), fast.

    ``os.environ.get`` of an unset variable raises and catches a KeyError inside (about
    1 µs each, more on a busy machine), so it reads CPython's own dictionary behind
    ``os.environ`` when there is one (it is what ``os.environ[...] = ...`` updates), and
    falls back to ``os.environ.get``. The values only serve to detect a change.
    """
    data = getattr(os.environ, "_data", None)
    encode = getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and callable(encode):
        try:
            keys = tuple(encode(name) for name in names)
            raw_prefix = encode(prefix)
        except Exception:  # an unexpected environ implementation
            keys = None
        if keys is not None:
            get = data.get

            def fast() -> tuple[Any, ...]:
                values = tuple(map(get, keys))
                if values[0] is None:
                    return values
                return (*values, *(kv for kv in data.items() if kv[0].startswith(raw_prefix)))

            return fast
    environ = os.environ

    def portable() -> tuple[Any, ...]:
        values = tuple(map(environ.get, names))
        if values[0] is None:
            return values
        return (*values, *(kv for kv in environ.items() if kv[0].startswith(prefix)))

    return portable


class _DestinationsFromEnv:
    """A run's destinations, read from the environment at each run as Langflow's tracers
    read it, built only when a relevant variable changed (the last result is cached on
    their values: an unchanged environment costs about a microsecond)."""

    __slots__ = ("_cached", "_lookup")

    def __init__(self) -> None:
        # Openlayer's per-flow pipelines are variables named OPENLAYER_PIPELINE_<FLOW>:
        # looked for only when OPENLAYER_API_KEY is set
        self._lookup = _environ_lookup(
            ("OPENLAYER_API_KEY", *_env.VARIABLES, *_STORE_VARIABLES),
            _env.OPENLAYER_FLOW_PREFIX,
        )
        # (values of the variables, destinations they gave): one tuple, replaced whole, so
        # that a run started on another thread never pairs new values with old destinations
        self._cached: tuple[tuple[Any, ...], tuple[Destination, ...] | None] | None = None

    def get(self) -> tuple[Destination, ...] | None:
        """The destinations the environment configures now; None if it is misconfigured
        (logged once per distinct configuration, secrets never shown)."""
        key = self._lookup()
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        value: tuple[Destination, ...] | None
        try:
            value = _config.destinations_from_env(os.environ)
        except _config.ConfigError as exc:
            log.error(
                "tracemux: the environment's tracing configuration is invalid (%s); "
                "runs go to the service's own destinations until it is fixed",
                exc,
            )
            value = None
        self._cached = (key, value)
        return value


def _settings_deactivate(settings_service: Any) -> bool | None:
    """Langflow's ``deactivate_tracing`` setting, if a settings service has one."""
    settings = getattr(settings_service, "settings", None)
    value = getattr(settings, "deactivate_tracing", None)
    return None if value is None else bool(value)


def _tracemux_disabled() -> bool:
    try:
        return _config.disabled_from_env()
    except _config.ConfigError as exc:
        log.error("tracemux: %s; tracing stays on", exc)
        return False


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return False
    try:
        return _config.parse_bool(name, raw)
    except _config.ConfigError as exc:
        log.error("tracemux: %s; tracing stays on", exc)
        return False


def _default_project(project_name: str | None) -> str:
    """Langflow's default: the caller's, else ``LANGCHAIN_PROJECT``, else ``Langflow``."""
    return project_name or os.environ.get("LANGCHAIN_PROJECT") or "Langflow"


class _LangfuseTraceRef:
    """What ``get_tracer("langfuse")`` returns: lfx reads ``langfuse_trace_id`` from it to
    link stored chat messages to the Langfuse trace of their run."""

    __slots__ = ("langfuse_trace_id",)

    def __init__(self, trace_id: str) -> None:
        self.langfuse_trace_id = trace_id


class TracingService(_Base):  # type: ignore[misc]
    """Langflow's tracing-service interface, recorded by one :class:`tracemux.TracingService`.

    ``service``: where runs are recorded. When not given (as when lfx's service manager
    builds this class), the process-wide :func:`tracemux.get_service` is used and each
    run's destinations are read from the environment at ``start_tracers``; a given
    ``service`` keeps its own destinations unless ``destinations_from_env``.
    ``deactivated``: turn every call into a no-op; when not given, it follows Langflow's
    ``deactivate_tracing`` setting (from ``settings_service``, else
    ``LANGFLOW_DEACTIVATE_TRACING``), ``TRACEMUX_DISABLED`` and a disabled ``service``.
    ``native``: run Langflow's native tracer beside tracemux (default: when langflow-base
    is installed and ``LANGFLOW_NATIVE_TRACING`` allows it).
    ``teardown_timeout``: how long :meth:`teardown` waits for the export.
    ``destinations_from_env``: read each run's destinations from the environment
    (default: when ``service`` is not given).

    Typical use, as Langflow's graph does it::

        await tracing.start_tracers(run_id, "my flow", user_id, session_id)
        async with tracing.trace_component(component, "ChatInput-abc", inputs):
            tracing.add_log("ChatInput-abc", {"name": "note", "message": "hi", "type": "text"})
            tracing.set_outputs("ChatInput-abc", {"message": "hi"})
        await tracing.end_tracers({"result": "..."})
    """

    name = "tracing_service"

    def __init__(
        self,
        service: CoreService | None = None,
        *,
        deactivated: bool | None = None,
        settings_service: Any = None,
        native: bool | None = None,
        teardown_timeout: float = 5.0,
        destinations_from_env: bool | None = None,
    ) -> None:
        if _Base is not object:
            super().__init__()
        if deactivated is None:
            from_settings = _settings_deactivate(settings_service)
            deactivated = (
                _env_flag(_DEACTIVATE_VARIABLE) if from_settings is None else from_settings
            ) or _tracemux_disabled()
        self._service = service
        if destinations_from_env is None:
            destinations_from_env = service is None
        self._env_destinations = _DestinationsFromEnv() if destinations_from_env else None
        self.deactivated: bool = bool(deactivated) or (service is not None and service.disabled)
        self.teardown_timeout = float(teardown_timeout)
        self._noop = _NoopComponentTrace(self)
        self._native: NativeTracing | None = None
        if not self.deactivated and native is not False:
            self._native = native_tracing(required=native is True)
        self._ready = True

    # -- the lfx service lifecycle ----------------------------------------------------------

    def set_ready(self) -> None:
        """Mark the service ready (lfx's ``Service`` interface; it is ready once built)."""
        self._ready = True

    @property
    def ready(self) -> bool:
        """Whether the service is ready (lfx's ``Service`` interface)."""
        return self._ready

    async def teardown(self) -> None:
        """At Langflow's shutdown: end runs still open (as incomplete) and wait, at most
        ``teardown_timeout`` seconds, for everything recorded to be exported. Never
        raises, never waits longer; the export thread itself stops at interpreter exit."""
        if self.deactivated:
            return
        try:
            open_runs.end_all()
            if not await self.service.aflush(self.teardown_timeout):
                log.warning(
                    "tracemux: teardown: export not finished after %.1f s (see stats())",
                    self.teardown_timeout,
                )
        except Exception as exc:
            log.warning("tracemux: teardown failed: %s: %s", type(exc).__name__, exc)

    @property
    def service(self) -> CoreService:
        """The tracemux service runs are recorded with."""
        svc = self._service
        if svc is None:
            svc = get_service()
            if svc.config_error is not None and self._env_destinations is not None:
                # The default service is off: the environment was invalid when it was made.
                # This service reads the environment again at every run, so a fixed
                # environment traces without a restart; until then runs go to the store.
                svc = CoreService()
            self._service = svc
        return svc

    @property
    def project_name(self) -> str | None:
        """The project of the flow run in this context, if any (when deactivated, Langflow's
        default: ``LANGCHAIN_PROJECT``, else ``Langflow``)."""
        if self.deactivated:
            return _default_project(None)
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
        tracing_user_id: str | None = None,
    ) -> None:
        """Begin a flow run in the current context: a tracemux run named ``run_name``.

        ``project_name`` defaults as Langflow's (``LANGCHAIN_PROJECT``, else
        ``Langflow``); ``tracing_user_id`` (a caller-supplied label) is recorded in the
        run's metadata, the run's user stays ``user_id``. The run becomes the current
        span, so components and any tracemux spans opened in this task (or tasks and
        threads started from it) belong to it.
        """
        if self.deactivated:
            return
        try:
            svc = self.service
            if svc.disabled:
                return
            project = _default_project(project_name)
            metadata: dict[str, str] = {}
            if flow_id is not None:
                metadata["flow_id"] = str(flow_id)
            if tracing_user_id is not None:
                metadata["tracing_user_id"] = str(tracing_user_id)
            cache = self._env_destinations
            run = svc.trace_run(
                run_name,
                run_id=None if run_id is None else str(run_id),
                user_id=user_id,
                session_id=session_id,
                project=project,
                metadata=metadata or None,
                destinations=None if cache is None else cache.get(),
            )
            if not isinstance(run, Run):
                return
            previous = _trace_var.get()
            if previous is not None and previous.ended:
                previous = None
            native = None
            if self._native is not None:
                native = self._native.start(run_id, run_name, user_id, session_id, project, flow_id)
            trace = _TraceContext(run, project, previous, CURRENT_SPAN.get(), native)
            _trace_var.set(trace)
            CURRENT_SPAN.set(run)
        except Exception as exc:
            _warn.warning(
                "start_tracers", "tracemux: start_tracers failed: %s: %s", type(exc).__name__, exc
            )

    async def end_tracers(self, outputs: Any, error: BaseException | str | None = None) -> None:
        """End the flow run of this context with ``outputs`` (and ``error`` if it failed).

        Only hands the run to the export thread: no network I/O on the event loop
        (Langflow's native tracer, when it runs beside, writes its rows in a task).
        Components still open are ended too, marked as cut short. With no ``error``, a run
        in which a component directly under it raised fails with that component's error
        (lfx stops a run there; langflow-base's build endpoint ends such a run without its
        error first). A second call for a run already ended is ignored.
        """
        if self.deactivated:
            return
        trace = _trace_var.get()
        if trace is None:
            _warn.warning("end_tracers", "tracemux: end_tracers called with no run in context")
            return
        if trace.ended:
            # langflow-base's build endpoint (the UI's) ends a run's traces twice: at the end
            # of the build and again from a background task (with the error, if a component
            # failed): the run was ended by the first call, with that error (``failure``)
            log.debug("tracemux: end_tracers: the run of this context has already ended")
            return
        trace.ended = True
        run = trace.run
        if error is None:
            error = trace.failure
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
            if CURRENT_SPAN.get() is run:
                CURRENT_SPAN.set(trace.previous_span)
            trace.previous = trace.previous_span = trace.failure = None
        if trace.native is not None:
            await trace.native.end(outputs, error)

    def get_tracer(self, tracer_name: str) -> Any:
        """The tracer named ``tracer_name`` of the run in context, or None (lfx calls it
        for ``"langfuse"`` whenever a message is stored). tracemux has no per-backend
        tracer objects: ``"langfuse"`` gives an object whose ``langfuse_trace_id`` is the
        run's trace id when the run goes to Langfuse, ``"native"`` Langflow's native
        tracer when it runs beside; anything else None."""
        if self.deactivated:
            return None
        trace = _trace_var.get()
        if trace is None or trace.ended:
            return None
        if tracer_name == "langfuse":
            if any(isinstance(d, Langfuse) for d in trace.run.run.destinations):
                return _LangfuseTraceRef(trace.run.trace_id_hex)
            return None
        if tracer_name == "native" and trace.native is not None:
            return trace.native.tracer
        return None

    def record_event_span(
        self,
        *,
        span_id: str,
        name: str,
        outputs: Mapping[str, Any] | None,
        span_type: str = "chain",
    ) -> None:
        """Record a finished span for an event of the run in context (langflow-base's
        build API records the resolved human-in-the-loop gate this way), under the
        component ``span_id`` names if it is open, else under the run."""
        if self.deactivated:
            return
        trace = _trace_var.get()
        if trace is None or trace.ended:
            _warn.warning(
                "record_event_span", "tracemux: record_event_span called with no run in context"
            )
            return
        try:
            comp = trace.components.get(span_id)
            token = CURRENT_SPAN.set(comp.span if comp is not None else trace.run)
            try:
                span = trace.run.span(name, str(span_type).lower(), metadata={"span_id": span_id})
            finally:
                detach(token)
            if outputs is not None:
                span.set_outputs(outputs)
            span.end()
            if trace.native is not None:
                trace.native.event_span(span_id, name, outputs, span_type)
        except Exception as exc:
            _warn.warning(
                "record_event_span",
                "tracemux: record_event_span failed: %s: %s",
                type(exc).__name__,
                exc,
            )

    def log(self, message: str, **kwargs: Any) -> None:
        """lfx's ``TracingServiceProtocol.log``: a log line on the current span."""
        if self.deactivated:
            return
        span = CURRENT_SPAN.get()
        if span is not None and not span.ended:
            span.add_log(message, "info", **kwargs)

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
        native = trace.native
        native_started = None
        if native is not None:
            comp.native_logs = []
            native_started = native.start_component(component, trace_name, inputs, metadata)
        comp_token = _component_var.set(comp)
        span_token = CURRENT_SPAN.set(span)
        error: BaseException | None = None
        try:
            yield self
        except BaseException as exc:
            error = exc
            span.set_error(exc)
            if trace.failure is None and span.parent_id == trace.run.span_id:
                trace.failure = exc
            raise
        finally:
            detach(span_token)
            reset_quietly(_component_var, comp_token)
            if trace.components.get(trace_name) is comp:
                del trace.components[trace_name]
            span.end()
            if native is not None and native_started is not None:
                native.end_component(native_started, trace_name, error, comp.native_logs or ())

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
        if comp.native_logs is not None:
            comp.native_logs.append(log)
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
        if comp.trace.native is not None:
            comp.trace.native.set_outputs(trace_name, outputs)
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
        try:  # lazily: it needs langchain-core, an optional dependency
            from tracemux.integrations.langchain import CallbackHandler
        except ImportError:
            _warn.warning(
                "langchain", "tracemux: langchain-core is not installed: no LangChain callbacks"
            )
            return []
        callbacks: list[BaseCallbackHandler] = [CallbackHandler(self.service, parent=parent)]
        if trace.native is not None:
            native = trace.native.get_langchain_callback()
            if native is not None:
                callbacks.append(native)
        return callbacks
