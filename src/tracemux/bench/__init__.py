"""The benchmark suite: tracemux against the SDKs it replaces, with a report a reader can trust.

``tracemux bench [--quick] [--out DIR] [--profile]`` (or ``python -m tracemux.bench``) runs
every scenario and writes ``report.md``, PNG charts and the raw ``results.json`` to a folder.

One module per scenario; each runs in a fresh child process (so one SDK's threads, global
state or memory never weigh on the next scenario), and inside it tracemux and the anchors
it is compared with are measured side by side, interleaved, so that a noisy machine slows
both alike and the ratios stay meaningful:

=============  ==========================================================================
module         scenario
=============  ==========================================================================
hotpath        µs per span and per LLM span: tracemux, OpenTelemetry SDK (batch, simple),
               langfuse 5, langfuse 2 (side venv), LangSmith, and the bare floor
threads        live threads against runs: tracemux, langfuse 2 client per run, langfuse 2
               behind :class:`~tracemux.clients.SharedClients`, langfuse 5 key per tenant
throughput     sustained spans/s to Discard, SQLite and OTLP (loopback), 1 and 4 producers,
               beside the OpenTelemetry batch processor; drops
memory         RSS over many spans with the destination down: levels off at the byte bound
looplag        event-loop lag, 1,000 concurrent async runs, a destination that takes 2 s
newdest        first span to a new Langfuse destination against creating a langfuse client
langflow       real Langflow flows (langflow-base side venv), stock vs tracemux: threads,
               ms per run, loop lag with a slow backend
=============  ==========================================================================

The SDKs come from the ``bench`` extra; a scenario whose SDK is missing reports it as "not
installed". langfuse 2 cannot share an environment with langfuse 5: it runs in the
``langfuse2`` side venv (``tracemux.bench.sidevenv``), as a subprocess that prints JSON.

Benchmarks outside the suite, each ``python -m tracemux.bench.<name>``:
``otlp_throughput`` (OTLP export and the whole pipeline against the loopback receiver),
``viewer_latency`` (the viewer on a million spans), ``threadleak_overhead`` and
``threadleak_compare`` (the thread-leak detector's cost, and beside other detectors).
Their results go to ``bench/results/`` of the source checkout. :mod:`tracemux.bench.receiver`
is the one loopback receiver; :mod:`tracemux.bench.sidevenv` builds the side venvs tests
and benchmarks share.
"""

from __future__ import annotations

#: scenario modules, in the order they appear in the report
SCENARIOS: tuple[str, ...] = (
    *("hotpath", "threads", "throughput", "memory", "looplag", "newdest"),
    "langflow",
)
#: the order they run in: ``threads`` last, since its 1,000 langfuse 2 clients (3,000
#: polling threads) load the machine for a while and would weigh on what follows
RUN_ORDER: tuple[str, ...] = (
    *("hotpath", "throughput", "memory", "looplag", "newdest", "threads"),
    "langflow",
)

__all__ = ["RUN_ORDER", "SCENARIOS"]
