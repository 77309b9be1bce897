"""Two destinations down at once must not cost the healthy ones a span.

Each destination may hold 3/4 of the pipeline's bound while it is down. Two down at once,
holding different records, could fill the bound together: new spans were then dropped as
``queue_full`` for every destination, the healthy local store included (it happened in the
soak test). The ones far behind now give up their oldest records instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.conftest import Recorder
from tracemux.destinations.base import Destination, ExportError
from tracemux.model import Record

DOWN: dict[str, bool] = {}


@dataclass(frozen=True)
class Switchable(Destination):
    """Refuses every batch (a retryable error) while ``DOWN[name]``; accepts otherwise."""

    name: str

    def describe(self) -> str:
        return f"switchable:{self.name}"

    def open(self) -> Any:
        return self

    def export(self, batch: Sequence[Record]) -> None:
        if DOWN[self.name]:
            raise ExportError(f"{self.name} is down", retryable=True)

    def close(self) -> None:
        pass


def record(svc: Any, runs: int) -> None:
    for i in range(runs):
        with svc.trace_run(f"run-{i}") as run:
            for _ in range(9):
                run.span("step").end()
        time.sleep(0.005)  # ~2,000 spans/s: the export thread keeps up with it


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_two_destinations_down_at_once_cost_the_healthy_one_nothing(
    make_service, received, pipeline_settings
):
    DOWN.update(a=True, b=False)
    dests = [Switchable("a"), Switchable("b"), Recorder("healthy")]
    pipeline_settings(max_queue_spans=1000, flush_interval=0.05)
    svc = make_service(dests)
    labels = [d.describe() for d in dests]
    before = svc.stats()["dropped"]  # the pipeline's counters are the process's

    def exported(label: str) -> int:
        return svc.stats()["destinations"][label]["exported"]

    record(svc, 70)  # a holds these 700 (down); b and the store get them
    wait_for(lambda: exported(labels[1]) == 700 and len(received["healthy"]) == 700)
    DOWN["b"] = True
    record(svc, 70)  # a is at its share of the bound: b holds the next 700
    wait_for(lambda: len(received["healthy"]) == 1400)

    stats = svc.stats()
    assert len(received["healthy"]) == 1400  # the healthy destination got every span
    dropped = {k: n - before.get(k, 0) for k, n in stats["dropped"].items()}
    assert {k for k, n in dropped.items() if n} == {"destination_buffer_full"}, dropped
    per_dest = stats["destinations"]
    assert per_dest[labels[0]]["dropped"]["destination_buffer_full"] > 0
    svc.shutdown(1)
    per_dest = svc.stats()["destinations"]
    for label in labels:  # every span accounted for, per destination
        d = per_dest[label]
        assert d["exported"] + sum(d["dropped"].values()) == 1400, (label, d)
