"""The current span: which span new work nests under, per thread and per asyncio task.

The public context API, shaped like OpenTelemetry's ``context.attach``/``detach`` and
``trace.use_span``:

>>> import tracemux
>>> span = tracemux.current_span()            # None outside any span
>>> with tracemux.use_span(span):              # make a span current for a block
...     pass
>>> token = tracemux.attach(span)             # ... or across callbacks
>>> tracemux.detach(token)

Spans used as context managers (``with run.span(...)``), ``@traced`` and the integrations
all go through these functions. :func:`detach` never raises: a token detached in another
context than it was attached in (a generator resumed elsewhere, a callback on another
task) is ignored, as the span it restores belongs to that other context.

This module also holds the process's *default-service getter*: how ``@traced`` finds the
service that starts a run outside any span. :mod:`tracemux.service` installs it, so the
decorators need not import the service (which imports them for ``svc.traced``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "CURRENT_SPAN",
    "attach",
    "current_span",
    "default_service",
    "detach",
    "reset_quietly",
    "use_span",
]

#: The variable behind this API. The span code's hot path calls its ``get``/``set``
#: directly (a function call less); everything else uses the functions below.
CURRENT_SPAN: ContextVar[Any] = ContextVar("tracemux_current_span", default=None)
_current = CURRENT_SPAN


def current_span() -> Any:
    """The span current in this context (a :class:`~tracemux.Span`), or None."""
    return _current.get()


def attach(span: Any) -> Token[Any]:
    """Make ``span`` (or None: no span) the current span; returns the token that
    :func:`detach` takes to restore the previous one."""
    return _current.set(span)


def detach(token: Token[Any] | None) -> None:
    """Restore the span current before :func:`attach` returned ``token``. Never raises:
    None, or a token from another context (exited elsewhere than entered), is ignored."""
    if token is not None:
        reset_quietly(_current, token)


def reset_quietly(var: ContextVar[Any], token: Token[Any]) -> None:
    """``var.reset(token)``, ignoring a token made in another context (a span exited in
    another context than it was entered in: that context's value is not ours to restore).
    The one place tracemux resets a context variable."""
    try:
        var.reset(token)
    except ValueError:
        pass


@contextmanager
def use_span(span: Any) -> Iterator[Any]:
    """Make ``span`` current for the ``with`` block (it is not ended on exit)."""
    token = _current.set(span)
    try:
        yield span
    finally:
        detach(token)


_default_service: Callable[[], Any] | None = None


def install_default_service(getter: Callable[[], Any]) -> None:
    """Set the function :func:`default_service` calls (done once by :mod:`tracemux.service`)."""
    global _default_service
    _default_service = getter


def default_service() -> Any:
    """The process-wide default :class:`~tracemux.TracingService`
    (:func:`tracemux.get_service`)."""
    getter = _default_service
    if getter is None:
        raise RuntimeError("tracemux.service is not imported: no default service")
    return getter()
