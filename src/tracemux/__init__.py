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

from tracemux.config import ConfigError
from tracemux.decorators import traced
from tracemux.service import Run, Span, TracingService, current_span, get_service

__all__ = ["ConfigError", "Run", "Span", "TracingService", "current_span", "get_service", "traced"]
__version__ = "0.1.0"
