"""Destinations: where spans are exported. The local SQLite store is the default."""

from tracemux.destinations.base import Destination, Exporter, ExportError
from tracemux.destinations.discard import Discard
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.otlp import OTLP
from tracemux.destinations.phoenix import Phoenix
from tracemux.destinations.sqlite import SQLiteStore

__all__ = [
    "OTLP",
    "Destination",
    "Discard",
    "ExportError",
    "Exporter",
    "LangSmith",
    "Langfuse",
    "Phoenix",
    "SQLiteStore",
]
