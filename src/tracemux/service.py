"""TracingService and its run and span handles: the hot path.

Nothing here does I/O, waits on the export thread, or raises into the caller. A span
handle is itself the record the pipeline exports: opening it fills in ids and a start
time, values are snapshotted as they are set (:mod:`tracemux.capture`), and ending it
hands it to the process-wide :class:`~tracemux.pipeline.worker.ExportWorker`.

Nesting follows :mod:`contextvars`: a span opened while another is current (same task,
child tasks, threads started with a copied context) becomes its child.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from tracemux import config as _config
from tracemux.capture import Capturer, clean_text, format_traceback
from tracemux.context import CURRENT_SPAN, current_span, install_default_service, reset_quietly
from tracemux.decorators import traced
from tracemux.destinations.base import Destination
from tracemux.model import (
    SPAN_KINDS,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    ErrorInfo,
    LogEntry,
    RunInfo,
    RunStart,
    SpanRecord,
    new_run_id,
    span_id_bits,
)
from tracemux.pipeline.settings import PipelineSettings
from tracemux.pipeline.worker import ExportWorker, shared_worker
from tracemux.ratelimit import internal_errors, rate_limited
from tracemux.reaper import open_runs as _open_runs
from tracemux.redact import Redactor, mask_for_log

log = logging.getLogger(__name__)
_warn = rate_limited(log)

_time_ns = time.time_ns

MAX_LOGS_PER_SPAN = 1000
LOG_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})
_RECORD_OVERHEAD = 200  # bytes a record costs beyond its captured values (estimate)
_sizeof = sys.getsizeof
_getrandbits = span_id_bits


class Span(SpanRecord):
    """An open span. Use it as a context manager (sync or async), or call :meth:`end`.

    Every method is safe: bad arguments are logged (rate-limited) and ignored, never
    raised. After :meth:`end`, further changes are ignored.
    """

    __slots__ = ("_capture", "_ended", "_logs_dropped", "_token", "_worker")

    def __init__(
        self,
        worker: ExportWorker,
        capture: Capturer,
        run: RunInfo,
        parent_id: int | None,
        name: str,
        kind: str,
        inputs: Any = None,
        metadata: Any = None,
    ) -> None:
        # (``_token`` is set by __enter__, ``_logs_dropped`` by add_log and ``end_ns`` by
        # end, only when needed: each slot written here is paid by every span)
        self._worker = worker
        self._capture = capture
        self._ended = False
        self.run = run
        self.span_id = _getrandbits(64) or 1  # new_span_id(), a call less
        self.parent_id = parent_id
        self.is_root = False
        self.name = (
            name
            if type(name) is str and len(name) <= 1024 and name.isascii()
            else capture.text(name, 1024)
        )
        self.kind = kind if type(kind) is str and kind in SPAN_KINDS else _odd_kind(kind)
        self.inputs = None if inputs is None else capture.value(inputs)
        self.outputs = None
        self.metadata = None if metadata is None else capture.value(metadata)
        self.logs = None
        self.usage = None
        self.model = None
        self.error = None
        self.status = STATUS_UNSET
        self.start_ns = _time_ns()

    # -- context management ---------------------------------------------------------------

    def __enter__(self) -> Span:
        self._token = CURRENT_SPAN.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            token = self._token
        except AttributeError:  # never entered
            token = None
        if token is not None:
            self._token = None
            reset_quietly(CURRENT_SPAN, token)
        if exc is not None:
            self.set_error(exc)
        self.end()
        return False

    async def __aenter__(self) -> Span:
        self._token = CURRENT_SPAN.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)

    # -- children -----------------------------------------------------------------------

    def span(
        self, name: str, kind: str = "chain", *, inputs: Any = None, metadata: Any = None
    ) -> Span:
        """Open a child span of this span."""
        return Span(
            self._worker, self._capture, self.run, self.span_id, name, kind, inputs, metadata
        )

    # -- values ---------------------------------------------------------------------------

    def set_inputs(self, inputs: Any) -> None:
        """Record the span's inputs (a snapshot is taken now)."""
        if not self._ended:
            self.inputs = self._capture.value(inputs)

    def set_outputs(self, outputs: Any, metadata: Any = None) -> None:
        """Record the span's outputs (a snapshot is taken now), and optionally metadata."""
        if not self._ended:
            self.outputs = self._capture.value(outputs)
            if metadata is not None:
                self.metadata = self._capture.value(metadata)

    def set_metadata(self, metadata: Any) -> None:
        """Replace the span's metadata (a snapshot is taken now)."""
        if not self._ended:
            self.metadata = self._capture.value(metadata)

    def set_usage(
        self,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        total_tokens: int | None = None,
        **other: int | float,
    ) -> None:
        """Record the model and token usage of an LLM or embedding call."""
        if self._ended:
            return
        if (  # the usual call: plain int counts, nothing recorded before
            type(input_tokens) is int
            and type(output_tokens) is int
            and total_tokens is None
            and not other
            and self.usage is None
            and -_MAX_USAGE <= input_tokens <= _MAX_USAGE
            and -_MAX_USAGE <= output_tokens <= _MAX_USAGE
        ):
            self.usage = {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            }
            if model is not None:
                self.model = (
                    model
                    if type(model) is str and len(model) <= 256 and model.isascii()
                    else self._capture.text(model, 256)
                )
            return
        self._set_usage(model, input_tokens, output_tokens, total_tokens, other)

    def _set_usage(
        self,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        total_tokens: int | None,
        other: dict[str, int | float],
    ) -> None:
        try:
            usage: dict[str, int | float] = dict(self.usage or {})
            for key, value in (
                ("input_tokens", input_tokens),
                ("output_tokens", output_tokens),
                ("total_tokens", total_tokens),
                *other.items(),
            ):
                if value is None:
                    continue
                if not _usage_number(value):
                    shown = mask_for_log(clean_text(key)[:50])
                    _warn.warning(
                        ("usage", shown),
                        "tracemux: usage %s=%r ignored (not a finite number below 2**53)",
                        shown,
                        type(value).__name__,
                    )
                    continue
                usage[key] = value
            if total_tokens is None and "input_tokens" in usage and "output_tokens" in usage:
                usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
            self.usage = usage or None
            if model is not None:
                self.model = (
                    model
                    if type(model) is str and len(model) <= 256 and model.isascii()
                    else self._capture.text(model, 256)
                )
        except Exception:
            _warn.internal_error("set_usage", "tracemux: set_usage failed", level=logging.WARNING)

    def add_log(self, message: Any, level: str = "info", **fields: Any) -> None:
        """Attach a log line (and optional structured fields) to the span."""
        if self._ended:
            return
        logs = self.logs
        if logs is None:
            logs = self.logs = []
        elif len(logs) >= MAX_LOGS_PER_SPAN:
            self._logs_dropped = self._dropped_logs() + 1
            return
        cap = self._capture
        logs.append(
            LogEntry(
                _time_ns(),
                level
                if type(level) is str and level in LOG_LEVELS
                else _member(level, LOG_LEVELS, "info"),
                message
                if type(message) is str and len(message) <= 8192 and message.isascii()
                else cap.text(message, 8192),
                cap.value(fields) if fields else None,
            )
        )

    def set_error(self, error: BaseException | str) -> None:
        """Mark the span failed, with the exception's type, message and traceback."""
        if self._ended:
            return
        cap = self._capture
        try:
            if isinstance(error, BaseException):
                message = cap.text(error, 8192)  # str(error) once: it may be slow
                self.error = ErrorInfo(
                    cap.text(type(error).__qualname__, 256),
                    message,
                    cap.text(format_traceback(error, message), 32768),
                )
            else:
                self.error = ErrorInfo("Error", cap.text(error, 8192), "")
        except Exception:
            self.error = ErrorInfo("Error", "<error not captured>", "")
        self.status = STATUS_ERROR

    def set_status(self, status: str) -> None:
        """Set the status explicitly: ``ok`` or ``error``."""
        if not self._ended:
            status = _member(status, _STATUSES)
            if status is not None:
                self.status = status

    # -- ending ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    def end(self) -> None:
        """End the span and hand it to the export pipeline. Idempotent."""
        if self.is_root:
            _open_runs.discard(self)  # (waits while the reaper is ending this run)
        if self._ended:
            return
        self._ended = True
        self.end_ns = _time_ns()
        try:
            if self.status == STATUS_UNSET:
                self.status = STATUS_OK
            n = _RECORD_OVERHEAD + _sizeof(self.name)
            value = self.inputs
            if value is not None:
                n += len(value)
            value = self.outputs
            if value is not None:
                n += len(value)
            value = self.metadata
            if value is not None and (not self.is_root or value is not self.run.metadata):
                n += len(value)
            if (
                self.is_root
                or self.logs is not None
                or self.error is not None
                or self.usage is not None
                or self.model is not None
            ):
                n += self._rare_bytes()
            self.nbytes = n
            self.refs = 0
            self._worker.submit(self)
        except Exception:
            _warn.internal_error("end", "tracemux: could not queue a span")

    def _rare_bytes(self) -> int:
        """What the fields most spans leave empty add to the record's size (the run's
        shared fields for a root span; logs, error, usage, model); the dropped-logs line
        is added to the logs here."""
        n = self.run.nbytes if self.is_root else 0  # the run's shared fields live as long
        logs = self.logs
        if logs:
            dropped = self._dropped_logs()
            if dropped:
                logs.append(
                    LogEntry(
                        self.end_ns,
                        "warning",
                        f"tracemux: {dropped} more log lines dropped"
                        f" (limit {MAX_LOGS_PER_SPAN} per span)",
                        None,
                    )
                )
            for entry in logs:
                n += 64 + _sizeof(entry.message) + (len(entry.fields) if entry.fields else 0)
        error = self.error
        if error is not None:
            n += _sizeof(error.type) + _sizeof(error.message) + _sizeof(error.traceback)
        usage = self.usage
        if usage is not None:
            n += _sizeof(usage) + sum([_sizeof(k) + 32 for k in usage])
        if self.model is not None:
            n += _sizeof(self.model)
        return n

    def _dropped_logs(self) -> int:
        """Log lines refused past :data:`MAX_LOGS_PER_SPAN` (the slot is set only then)."""
        try:
            return self._logs_dropped
        except AttributeError:
            return 0

    # -- identity -------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def trace_id_hex(self) -> str:
        """The run's 16-byte trace id as 32 hex digits."""
        return self.run.trace_id.hex()

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind} run={self.run.run_id}>"


class Run(Span):
    """The root span of a run; ``run.span(...)`` opens spans in this run."""

    __slots__ = ()

    def span(
        self, name: str, kind: str = "chain", *, inputs: Any = None, metadata: Any = None
    ) -> Span:
        """Open a span in this run, under the span current in this context if it belongs
        to this run, else directly under the run."""
        cur = CURRENT_SPAN.get()
        parent = cur if cur is not None and cur.run is self.run and not cur._ended else self
        return Span(
            self._worker, self._capture, self.run, parent.span_id, name, kind, inputs, metadata
        )

    @property
    def user_id(self) -> str | None:
        return self.run.user_id

    @property
    def session_id(self) -> str | None:
        return self.run.session_id


_STATUSES = frozenset({STATUS_OK, STATUS_ERROR})
_MAX_USAGE = 2**53  # exact in a double, and sums of a run's spans stay within 64 bits


def _member(value: object, allowed: frozenset[str], default: str | None = None) -> str | None:
    """``value`` as a plain str if it is one of ``allowed`` (a str subclass such as an enum
    member counts), else ``default``. Never raises, whatever ``value`` does."""
    try:
        if isinstance(value, str):
            plain = str.__str__(value)
            if plain in allowed:
                return plain
    except Exception:
        pass
    return default


def _usage_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_USAGE <= value <= _MAX_USAGE
    if isinstance(value, float):
        return math.isfinite(value) and -_MAX_USAGE <= value <= _MAX_USAGE
    return False


def _odd_kind(kind: object) -> str:
    known = _member(kind, SPAN_KINDS)
    if known is not None:
        return known
    try:
        label = mask_for_log(clean_text(kind if type(kind) is str else type(kind).__name__))[:50]
    except Exception:
        label = "?"
    _warn.warning(("kind", label), "tracemux: unknown span kind %r recorded as 'custom'", label)
    return "custom"


class _NoopSpan:
    """What a disabled service hands out: every method does nothing, at once."""

    __slots__ = ()

    name = ""
    kind = "custom"
    run_id = ""
    ended = True

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    async def __aenter__(self) -> _NoopSpan:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        return False

    def span(self, *args: Any, **kwargs: Any) -> _NoopSpan:
        return self

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    set_inputs = set_outputs = set_metadata = set_usage = add_log = _noop
    set_error = set_status = end = _noop


NOOP_SPAN = _NoopSpan()


class TracingService:
    """Records runs and spans and hands them to the process-wide export thread.

    ``destinations``: where runs go by default (if None, the local store: ``TRACEMUX_DB``,
    else the user data directory, as :func:`tracemux.config.store_from_env` says);
    a run can name its own with ``trace_run(..., destinations=[...])``.
    ``max_value_bytes``: captured values are truncated past this size, with a marker.
    ``mask_secrets``: mask secret keys and credential-shaped strings (on by default);
    ``extra_secret_keys`` / ``extra_secret_values``: regular expressions to mask as well.
    ``pipeline``: limits of the process-wide pipeline, shared by every service: applied
    when given, a :class:`ConfigError` if another live service set different ones.
    ``disabled``: every call becomes a no-op and no thread is ever started.

    All services in a process share one export thread.
    """

    def __init__(
        self,
        destinations: Sequence[Destination] | None = None,
        *,
        disabled: bool = False,
        max_value_bytes: int = 64 * 1024,
        mask_secrets: bool = True,
        extra_secret_keys: Sequence[str] = (),
        extra_secret_values: Sequence[str] = (),
        pipeline: PipelineSettings | None = None,
    ) -> None:
        self.disabled = bool(disabled)
        #: why tracing is off, when the default service found the configuration invalid
        self.config_error: _config.ConfigError | None = None
        self.destinations = self._check_destinations(destinations, "destinations")
        # without destinations, runs go to the local store where TRACEMUX_DB says (as with
        # from_env); chosen now, so a bad TRACEMUX_STORE_* value is a ConfigError here
        self._default_store: Destination | None = (
            None if self.destinations or self.disabled else _config.store_from_env()
        )
        self._capture = Capturer(max_value_bytes)
        self._redactor = Redactor(
            enabled=mask_secrets,
            extra_keys=tuple(extra_secret_keys),
            extra_values=tuple(extra_secret_values),
        )
        self._worker = shared_worker()
        if pipeline is not None:  # process-wide: refused if another live service set others
            self._worker.configure(pipeline, owner=self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TracingService:
        """A service configured from environment variables (see :mod:`tracemux.config`).

        Raises :class:`~tracemux.config.ConfigError` naming the variable at fault.
        """
        cfg = _config.from_env(env)
        return cls(
            destinations=cfg.destinations or None,
            disabled=cfg.disabled,
            max_value_bytes=cfg.max_value_bytes,
            mask_secrets=cfg.mask_secrets,
            # the defaults claim nothing: a service given explicit limits keeps them
            pipeline=None if cfg.pipeline == PipelineSettings() else cfg.pipeline,
        )

    @staticmethod
    def _check_destinations(
        destinations: Sequence[Destination] | None, what: str
    ) -> tuple[Destination, ...]:
        if destinations is None:
            return ()
        if isinstance(destinations, Destination):
            destinations = [destinations]
        out = tuple(destinations)
        for d in out:
            if not isinstance(d, Destination):
                raise TypeError(f"{what}: expected tracemux destinations, got {type(d).__name__}")
        return out

    def _default_destinations(self) -> tuple[Destination, ...]:
        if not self.destinations and self._default_store is not None:
            self.destinations = (self._default_store,)
        return self.destinations

    # -- recording ------------------------------------------------------------------------

    def trace_run(
        self,
        name: str,
        run_id: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
        inputs: Any = None,
        metadata: Any = None,
        tags: Sequence[str] | None = None,
        destinations: Sequence[Destination] | None = None,
        kind: str = "chain",
    ) -> Run:
        """Start a run: a trace whose root span is the returned handle.

        ``destinations`` overrides the service's for this run only (a tenant's own keys).
        Use it as a context manager, sync or async; the run ends when the block ends.
        """
        if self.disabled:
            return NOOP_SPAN  # type: ignore[return-value]
        # bad destinations are a programming error in the call itself: say so (TypeError)
        checked = (
            None
            if destinations is None
            else self._check_destinations(destinations, "trace_run(destinations=...)")
        )
        try:
            dests = (
                checked
                if checked is not None
                else (self.destinations or self._default_destinations())
            )
            cap = self._capture
            text = cap.text
            info = RunInfo(
                run_id=new_run_id() if run_id is None else clean_text(str(run_id)),
                name=name
                if type(name) is str and len(name) <= 1024 and name.isascii()
                else text(name, 1024),
                destinations=dests,
                user_id=None if user_id is None else text(user_id, 1024),
                session_id=None if session_id is None else text(session_id, 1024),
                project=None if project is None else text(project, 1024),
                tags=tuple(text(t, 1024) for t in tags) if tags else (),
                metadata=None if metadata is None else cap.value(metadata),
                redactor=self._redactor,
            )
            run = Run(self._worker, cap, info, None, info.name, kind, inputs, None)
            run.is_root = True
            run.metadata = info.metadata
            info.root_span_id = run.span_id
            info.start_ns = run.start_ns
            if any(d.wants_run_starts for d in dests):
                self._worker.submit(RunStart(info))
            _open_runs.add(run)
            return run
        except Exception:
            _warn.internal_error("trace_run", "tracemux: could not start a run")
            return NOOP_SPAN  # type: ignore[return-value]

    def span(
        self, name: str, kind: str = "chain", *, inputs: Any = None, metadata: Any = None
    ) -> Span:
        """Open a span under the current span, or start a run if there is none."""
        if self.disabled:
            return NOOP_SPAN  # type: ignore[return-value]
        cur = CURRENT_SPAN.get()
        if cur is None or cur._ended:
            return self.trace_run(name, inputs=inputs, metadata=metadata, kind=kind)
        return Span(self._worker, self._capture, cur.run, cur.span_id, name, kind, inputs, metadata)

    current_span = staticmethod(current_span)

    def traced(self, func: Any = None, /, **options: Any) -> Any:
        """:func:`tracemux.traced` bound to this service: ``@svc.traced``,
        ``@svc.traced(kind="tool")``. A call outside any run starts a run of this service."""
        return traced(func, service=self, **options)

    # -- pipeline -------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything recorded before the call is exported or counted as
        dropped; False if ``timeout`` ran out first. Do not call it on an event loop:
        use :meth:`aflush`."""
        return self._worker.flush(timeout)

    async def aflush(self, timeout: float = 5.0) -> bool:
        """:meth:`flush` for async code: waits without blocking the event loop."""
        return await self._worker.aflush(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush, stop the export thread and close the exporters, within ``timeout``.

        True when everything was delivered. Whatever was not is counted in
        ``stats()["dropped"]["shutdown"]``. Recording afterwards starts a new thread.
        Runs still open are ended first, as incomplete (:mod:`tracemux.reaper`).
        """
        _open_runs.end_all()
        return self._worker.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: recorded, exported, dropped by reason, per-destination failures and
        retries, queue size and bytes, and the number of threads tracemux owns; runs
        still open, and runs ended as incomplete (never ended by their caller); errors
        of tracemux's own that it swallowed (``internal_errors``, each logged)."""
        _open_runs.sweep()
        out = self._worker.stats()
        out["open_runs"] = len(_open_runs)
        out["incomplete_runs"] = _open_runs.incomplete
        out["internal_errors"] = internal_errors()
        return out


_default_service: TracingService | None = None
_default_lock = threading.Lock()


def get_service() -> TracingService:
    """The process-wide default service, created once from the environment."""
    global _default_service
    svc = _default_service
    if svc is None:
        with _default_lock:
            if _default_service is None:
                _default_service = _service_from_env_or_off()
            svc = _default_service
    return svc


def _service_from_env_or_off() -> TracingService:
    """``TracingService.from_env()``; with an invalid configuration, a disabled service
    (tracing off for the process) and one ERROR naming every problem: the default service
    is created inside a flow (by ``@traced``, an integration), where raising would fail it.
    """
    try:
        return TracingService.from_env()
    except _config.ConfigError as exc:
        log.error(
            "tracemux: tracing is OFF for this process: the configuration is invalid: %s. "
            "Fix it (run `tracemux doctor` to see every problem) and restart.",
            exc,
        )
        svc = TracingService(disabled=True)
        svc.config_error = exc
        return svc


install_default_service(get_service)
