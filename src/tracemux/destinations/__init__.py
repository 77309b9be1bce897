"""Destinations: where spans are exported. The local SQLite store is the default."""

from tracemux.destinations.arize import Arize
from tracemux.destinations.base import Destination, Exporter, ExportError
from tracemux.destinations.discard import Discard
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.langwatch import LangWatch
from tracemux.destinations.openlayer import Openlayer
from tracemux.destinations.opik import Opik
from tracemux.destinations.otlp import OTLP
from tracemux.destinations.phoenix import Phoenix
from tracemux.destinations.postgres import PostgresStore  # needs the postgres extra to use
from tracemux.destinations.sqlite import SQLiteStore
from tracemux.destinations.traceloop import Traceloop

__all__ = [
    "OTLP",
    "Arize",
    "Destination",
    "Discard",
    "ExportError",
    "Exporter",
    "LangSmith",
    "LangWatch",
    "Langfuse",
    "Openlayer",
    "Opik",
    "Phoenix",
    "PostgresStore",
    "SQLiteStore",
    "Traceloop",
]
