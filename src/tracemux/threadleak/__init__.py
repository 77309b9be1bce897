"""Thread-leak detection: creation sites, a pytest plugin and a CLI."""
