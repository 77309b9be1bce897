"""Test support for the integration tests: an in-memory destination and tree helpers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tracemux.destinations.base import Destination
from tracemux.destinations.sqlite import SQLiteStore, StoredSpan
from tracemux.model import Record, SpanRecord

# Batches recorded per destination name: the exporter lives on the export thread, the
# test reads from its own.
_RECORDED: dict[str, list[list[Record]]] = {}
_RECORDED_LOCK = threading.Lock()


@dataclass(frozen=True)
class MemoryDestination(Destination):
    """Test-only: records every batch in memory; ``delay`` seconds per export (async)."""

    name: str = field(default_factory=lambda: uuid.uuid4().hex)
    delay: float = 0.0

    max_batch: ClassVar[int] = 100_000

    def describe(self) -> str:
        return f"memory:{self.name}"

    def open(self) -> _MemoryExporter:
        with _RECORDED_LOCK:
            batches = _RECORDED.setdefault(self.name, [])
        return _MemoryExporter(batches, self.delay)

    @property
    def batches(self) -> list[list[Record]]:
        with _RECORDED_LOCK:
            return list(_RECORDED.get(self.name, []))

    @property
    def spans(self) -> list[SpanRecord]:
        return [r for batch in self.batches for r in batch if isinstance(r, SpanRecord)]


class _MemoryExporter:
    def __init__(self, batches: list[list[Record]], delay: float) -> None:
        self.batches = batches
        self.delay = delay

    async def export(self, batch: Sequence[Record]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow backend: one request takes this long
        with _RECORDED_LOCK:
            self.batches.append(list(batch))

    def close(self) -> None:
        return None


def tree(store: SQLiteStore, run_id: str) -> list[tuple[int, str, str]]:
    """The run's spans depth-first as (depth, kind, name), children in start order."""
    spans = store.spans(run_id)
    children: dict[str | None, list[StoredSpan]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    out: list[tuple[int, str, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: (s.start_ns, s.name)):
            out.append((depth, s.kind, s.name))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    assert len(out) == len(spans), "spans whose parent is not in the run"
    return out
