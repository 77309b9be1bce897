"""Destinations: where spans are exported. The local SQLite store is the default."""

from tracemux.destinations.base import Destination, Exporter, ExportError
from tracemux.destinations.sqlite import SQLiteStore

__all__ = ["Destination", "ExportError", "Exporter", "SQLiteStore"]
