"""``@traced``: a span around every call of a function, coroutine or generator.

>>> import tracemux
>>> @tracemux.traced(kind="tool")
... def lookup(city: str) -> str:
...     return "sunny"

Each call opens a span under the span current in the caller's context, or starts a run
when there is none. Inputs are the bound arguments (without ``self`` / ``cls``), outputs
the return value; an exception is recorded on the span and re-raised unchanged.

A generator's span stays open while it is consumed: it ends when the generator is
exhausted, closed or fails, with what it yielded (the first :data:`MAX_YIELDED` items)
as outputs. While the generator's body runs (and only then), its span is the current
span, so work it does nests under it; the consumer's context is left untouched.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, overload

from tracemux.context import CURRENT_SPAN, default_service, detach

if TYPE_CHECKING:
    from tracemux.service import TracingService

__all__ = ["MAX_YIELDED", "traced"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: how many yielded items a generator's span records as its outputs
MAX_YIELDED = 100

_SKIP_FIRST = ("self", "cls")


@overload
def traced(func: F, /) -> F: ...


@overload
def traced(
    name: str | None = None,
    /,
    *,
    kind: str = "chain",
    capture_inputs: bool = True,
    capture_outputs: bool = True,
    service: TracingService | None = None,
) -> Callable[[F], F]: ...


@overload
def traced(
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_inputs: bool = True,
    capture_outputs: bool = True,
    service: TracingService | None = None,
) -> Callable[[F], F]: ...


def traced(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    kind: str = "chain",
    capture_inputs: bool = True,
    capture_outputs: bool = True,
    service: TracingService | None = None,
) -> Any:
    """Trace every call of the decorated function in a span.

    Works on plain functions, ``async def`` functions, generators and async generators.
    Use it bare (``@traced``) or with options (``@traced(kind="tool")``,
    ``@traced("span name")``).

    ``name``: the span's name (default: the function's qualified name).
    ``kind``: the span kind (``chain``, ``llm``, ``tool``, ...).
    ``capture_inputs`` / ``capture_outputs``: record the bound arguments / the result.
    ``service``: the :class:`~tracemux.TracingService` that starts a run when the call
    happens outside any run (default: the process-wide :func:`tracemux.get_service`,
    looked up at call time). Inside a run, the call is a span of that run, whichever
    service started it. ``svc.traced`` is the same as ``traced(service=svc)``.

    Never raises into the decorated function because of tracing: an invalid
    configuration turns the default service off (logged once as an ERROR).
    """
    if isinstance(func, str):  # @traced("name")
        if name is not None:
            raise TypeError("traced(): name given twice")
        name, func = func, None

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"traced(): expected a function, got {type(fn).__name__}")
        return _wrap(fn, name, kind, capture_inputs, capture_outputs, service)

    if func is None:
        return decorate
    return decorate(func)


def _wrap(
    fn: Callable[..., Any],
    name: str | None,
    kind: str,
    capture_inputs: bool,
    capture_outputs: bool,
    service: TracingService | None,
) -> Any:
    open_span = _span_opener(fn, name, kind, capture_inputs, service)
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, open_span, capture_outputs)
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, open_span, capture_outputs)
    if inspect.iscoroutinefunction(fn):
        return _wrap_coroutine(fn, open_span, capture_outputs)
    return _wrap_function(fn, open_span, capture_outputs)


#: opens the span of one call from its arguments (None: tracing is off)
SpanOpener = Callable[[tuple[Any, ...], dict[str, Any]], Any]


def _span_opener(
    fn: Callable[..., Any],
    name: str | None,
    kind: str,
    capture_inputs: bool,
    service: TracingService | None,
) -> SpanOpener:
    span_name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "call")
    inputs_of = _input_binder(fn) if capture_inputs else None

    def open_span(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # inside a run (of any service) the call is a child span of that run; outside,
        # it starts a run of ``service``, else of the process-wide default service
        parent = CURRENT_SPAN.get()
        if parent is not None and parent.ended:
            parent = None
        svc = None
        if parent is None:
            svc = service if service is not None else default_service()
            if svc.disabled:
                return None
        inputs = None
        if inputs_of is not None:
            try:
                inputs = inputs_of(args, kwargs)
            except Exception:
                log.debug("tracemux: could not bind the arguments of %s", span_name)
        if parent is not None:
            return parent.span(span_name, kind, inputs=inputs)
        return svc.span(span_name, kind, inputs=inputs)  # type: ignore[union-attr]

    return open_span


def _wrap_async_generator(
    fn: Callable[..., Any], open_span: SpanOpener, capture_outputs: bool
) -> Any:
    """The span stays open while the generator is consumed; current only while it runs."""

    @functools.wraps(fn)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        span = open_span(args, kwargs)
        agen = fn(*args, **kwargs)
        collected = _Collected(capture_outputs and span is not None)
        send: Any = None
        throw: BaseException | None = None
        while True:
            token = None if span is None else CURRENT_SPAN.set(span)
            try:
                if throw is not None:
                    exc, throw = throw, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(send)
            except StopAsyncIteration:
                collected.finish(span, None)
                return
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                detach(token)
            collected.add(item)
            try:
                send = yield item
            except GeneratorExit:
                token = None if span is None else CURRENT_SPAN.set(span)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    detach(token)
                collected.finish(span, None)
                raise
            except BaseException as exc:
                throw = exc

    return agen_wrapper


def _wrap_generator(fn: Callable[..., Any], open_span: SpanOpener, capture_outputs: bool) -> Any:
    """As :func:`_wrap_async_generator`, for a plain generator."""

    @functools.wraps(fn)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        span = open_span(args, kwargs)
        gen = fn(*args, **kwargs)
        if span is None:
            return (yield from gen)
        collected = _Collected(capture_outputs)
        send: Any = None
        throw: BaseException | None = None
        while True:
            token = CURRENT_SPAN.set(span)
            try:
                if throw is not None:
                    exc, throw = throw, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(send)
            except StopIteration as stop:
                collected.finish(span, stop.value)
                return stop.value
            except BaseException as exc:
                _fail(span, exc)
                raise
            finally:
                detach(token)
            collected.add(item)
            try:
                send = yield item
            except GeneratorExit:
                token = CURRENT_SPAN.set(span)
                try:
                    gen.close()
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    detach(token)
                collected.finish(span, None)
                raise
            except BaseException as exc:
                throw = exc

    return gen_wrapper


def _wrap_coroutine(fn: Callable[..., Any], open_span: SpanOpener, capture_outputs: bool) -> Any:
    @functools.wraps(fn)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        span = open_span(args, kwargs)
        if span is None:
            return await fn(*args, **kwargs)
        async with span:
            result = await fn(*args, **kwargs)
            if capture_outputs:
                span.set_outputs(result)
            return result

    return async_wrapper


def _wrap_function(fn: Callable[..., Any], open_span: SpanOpener, capture_outputs: bool) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = open_span(args, kwargs)
        if span is None:
            return fn(*args, **kwargs)
        with span:
            result = fn(*args, **kwargs)
            if capture_outputs:
                span.set_outputs(result)
            return result

    return wrapper


def _input_binder(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
    """A function turning call arguments into the dict recorded as the span's inputs."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    skip_first = False
    if sig is not None:
        params = list(sig.parameters.values())
        skip_first = bool(params) and params[0].name in _SKIP_FIRST

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if sig is None:
            return {"args": list(args), "kwargs": kwargs} if kwargs else {"args": list(args)}
        try:
            arguments = dict(sig.bind(*args, **kwargs).arguments)
        except TypeError:  # the call itself is wrong: the function will say so
            return {"args": list(args), "kwargs": kwargs}
        if skip_first and arguments:
            del arguments[next(iter(arguments))]
        return arguments

    return bind


class _Collected:
    """The first MAX_YIELDED items a generator yielded, and how many there were."""

    __slots__ = ("count", "enabled", "items")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.items: list[Any] = []
        self.count = 0

    def add(self, item: Any) -> None:
        self.count += 1
        if self.enabled and len(self.items) < MAX_YIELDED:
            self.items.append(item)

    def finish(self, span: Any, returned: Any) -> None:
        if span is None:
            return
        if self.enabled:
            if returned is None:
                span.set_outputs(self.items)
            else:
                span.set_outputs({"yielded": self.items, "returned": returned})
            if self.count > MAX_YIELDED:
                span.add_log(
                    f"yielded {self.count} items; the first {MAX_YIELDED} are recorded",
                    yielded=self.count,
                )
        span.end()


def _fail(span: Any, exc: BaseException) -> None:
    if span is None:
        return
    span.set_error(exc)
    span.end()
