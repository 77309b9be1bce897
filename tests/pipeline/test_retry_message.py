"""The retry warning counts spans (issue 14, item 7: the demo said "retrying 21 spans" for
the 18 it had recorded: the batch also held the three runs' start records)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from tracemux import TracingService
from tracemux.destinations.base import Destination, ExportError
from tracemux.model import Record
from tracemux.pipeline.worker import PipelineSettings, shared_worker

FAILURES: dict[str, int] = {}


@pytest.fixture
def quick_flush() -> Iterator[None]:
    """Export every 50 ms, in one batch; the previous limits come back after the test."""
    worker = shared_worker()
    before = worker.settings
    worker.configure(PipelineSettings(flush_interval=0.05, batch_size=10_000))
    yield
    worker.configure(before)


@dataclass(frozen=True)
class FailsFirst(Destination):
    """Wants run-start records (as the SQLite store does) and fails its first export."""

    name: str
    wants_run_starts: ClassVar[bool] = True

    def describe(self) -> str:
        return f"fails-first:{self.name}"

    def open(self) -> Any:
        return _Exporter(self.name)


class _Exporter:
    def __init__(self, name: str) -> None:
        self.name = name

    def export(self, batch: Sequence[Record]) -> None:
        if FAILURES.get(self.name, 0) == 0:
            FAILURES[self.name] = 1
            raise ExportError("refused once")

    def close(self) -> None:
        pass


def test_the_retry_warning_counts_the_spans_not_the_run_starts(
    make_service: Callable[..., TracingService],
    quick_flush: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tracemux")
    dest = FailsFirst("demo-like")
    svc = make_service([dest])
    for r in range(3):
        with svc.trace_run(f"run {r}") as run:
            for i in range(5):
                run.span(f"s{i}").end()
    assert svc.flush(20)
    counts = [
        int(m.group(1))
        for rec in caplog.records
        if (m := re.search(r"retrying (\d+) spans", rec.getMessage()))
    ]
    assert counts == [18]
    assert svc.stats()["destinations"][dest.describe()]["exported"] == 18
