"""Destinations: where spans are exported. The local SQLite store is the default."""

from tracemux.destinations.base import Destination, Exporter, ExportError
from tracemux.destinations.discard import Discard
from tracemux.destinations.sqlite import SQLiteStore

__all__ = ["Destination", "Discard", "ExportError", "Exporter", "SQLiteStore"]
