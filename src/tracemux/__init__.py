"""tracemux: leak-free tracing for LLM flow engines.

One background export thread per process, whatever the number of runs, destinations or
tenants; recording a span costs microseconds and never blocks or raises; every span is
delivered or counted as dropped with a reason.

>>> import tracemux
>>> svc = tracemux.TracingService()          # local SQLite store by default
>>> with svc.trace_run("my flow") as run:
...     with run.span("step", kind="tool", inputs={"x": 1}) as span:
...         span.set_outputs({"y": 2})
"""

from tracemux.context import attach, current_span, detach, use_span
from tracemux.decorators import traced
from tracemux.errors import ConfigError
from tracemux.service import Run, Span, TracingService, get_service
from tracemux.version import __version__ as __version__

__all__ = [
    "ConfigError",
    "Run",
    "Span",
    "TracingService",
    "attach",
    "current_span",
    "detach",
    "get_service",
    "traced",
    "use_span",
]
