"""Discard: a destination that accepts every batch and keeps nothing (benchmarks, tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tracemux.destinations.base import Destination
from tracemux.model import Record


@dataclass(frozen=True)
class Discard(Destination):
    """Counts nothing, stores nothing: measures the pipeline itself. ``name`` tells two apart."""

    name: str = "discard"

    def describe(self) -> str:
        return f"discard:{self.name}"

    def open(self) -> _DiscardExporter:
        return _DiscardExporter()


class _DiscardExporter:
    def export(self, batch: Sequence[Record]) -> None:
        return None

    def close(self) -> None:
        return None
