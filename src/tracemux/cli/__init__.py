"""The ``tracemux`` command line: one module per command."""
