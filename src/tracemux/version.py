"""The package version, in a module of its own so any module can read it without importing
the whole package (``tracemux/__init__`` pulls in the service)."""

__version__ = "0.1.0"
