"""Entry point of the ``tracemux`` command: builds the parser from the command modules.

Each command lives in its own module under ``tracemux.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tracemux.version import __version__

#: each command and the module of ``tracemux.cli`` that registers it
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "runs": "runs",
    "show": "show",
    "export": "export",
    "import": "import_runs",  # `import` is a keyword: no module can have that name
    "delete": "delete",
    "ui": "ui",
    "doctor": "doctor",
    "leakcheck": "leakcheck",
    "bench": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracemux",
        description="Leak-free tracing for LLM flow engines: demo, inspect runs, check for leaks.",
    )
    parser.add_argument("--version", action="version", version=f"tracemux {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(f"tracemux.cli.{module}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConnectionError as exc:  # a store that cannot be reached (password masked)
        print(f"tracemux: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
