"""Routing a drain pass: each record to its own run's destinations, in order, masked."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from tests.conftest import RECEIVED, Recorder
from tracemux.model import RunStart

SECRET = "sk-lf-0123456789abcdefSECRET"


@dataclass(frozen=True)
class StartRecorder(Recorder):
    """A Recorder that also wants run-start records (as the SQLite store does)."""

    wants_run_starts: ClassVar[bool] = True

    def open(self) -> Any:
        exporter = super().open()

        def export(batch: Any) -> None:
            RECEIVED[self.name].extend(batch)  # spans and run starts

        exporter.export = export
        return exporter


def _hold_export_thread(make_service: Any) -> threading.Event:
    """Keep the export thread inside a synchronous export until the event is set, so that
    what is recorded meanwhile is drained in one pass."""
    gate = threading.Event()
    entered = threading.Event()

    @dataclass(frozen=True)
    class Gate(Recorder):
        def open(self) -> Any:
            exporter = super().open()

            def export(batch: Any) -> None:
                entered.set()
                gate.wait(20)

            exporter.export = export
            return exporter

    holder = make_service([Gate("gate", use_async=False)])
    with holder.trace_run("hold"):
        pass
    holder.flush(0)  # the flush marker makes the lane export at once
    assert entered.wait(10)
    return gate


def test_one_pass_of_interleaved_tenants_goes_each_to_its_own_destinations(make_service, received):
    gate = _hold_export_thread(make_service)
    a = make_service([Recorder("tenant-a"), StartRecorder("both")])
    b = make_service([Recorder("tenant-b"), StartRecorder("both")])
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(a.flush(20)))
    for i in range(60):
        svc = a if i % 2 else b
        with svc.trace_run(f"{'a' if i % 2 else 'b'}{i}", inputs={"key": SECRET}) as run:
            run.span("child", inputs={"i": i}).end()
        if i == 30:  # a flush marker in the middle of the pass
            flusher.start()
    gate.set()
    assert a.flush(20) and b.flush(20)
    spans_a = received["tenant-a"]
    spans_b = received["tenant-b"]
    assert len(spans_a) == len(spans_b) == 60
    assert {s.run.name[0] for s in spans_a} == {"a"} and {s.run.name[0] for s in spans_b} == {"b"}
    names = [s.run.name for s in spans_a if s.is_root]
    assert names == [f"a{i}" for i in range(1, 60, 2)]  # in the order they were recorded
    both = received["both"]
    starts = [r for r in both if type(r) is RunStart]
    assert len(starts) == 60 and len(both) == 180  # every run start and every span, once
    for record in [*spans_a, *spans_b, *both]:
        if record.is_span and record.inputs is not None:
            assert SECRET.encode() not in record.inputs
    flusher.join(20)
    assert flushed == [True]


def test_records_of_one_run_shared_by_destinations_reach_each_once(make_service, received):
    svc = make_service([Recorder("one"), Recorder("two", use_async=False)])
    for i in range(50):
        with svc.trace_run(f"r{i}") as run:
            for _ in range(9):
                run.span("s").end()
    assert svc.flush(20)
    for name in ("one", "two"):
        ids = [s.span_id for s in received[name]]
        assert len(ids) == 500 and len(set(ids)) == 500
    stats = svc.stats()
    assert stats["queue_size"] == 0 and stats["queue_bytes"] == 0
