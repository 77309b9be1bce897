"""``tracemux bench``: the benchmark suite against the real SDKs, written up as a report.

Usage::

    tracemux bench [--quick] [--out DIR] [--profile] [--only SCENARIO ...]

Runs every scenario of :mod:`tracemux.bench` (hot path, threads against runs, sustained
throughput, memory with the destination down, event-loop lag, cost of a new destination)
and writes ``report.md``, PNG charts and ``results.json`` to ``DIR`` (default
``bench/out/<timestamp>``). ``--quick`` shrinks every scenario (under two minutes);
``--profile`` adds a cProfile of the hot path (``hotpath.prof``, ``hotpath_profile.txt``).
The comparison SDKs come from the ``bench`` extra; missing ones are reported as such.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from tracemux.bench import SCENARIOS


def register(subparsers: Any) -> None:
    """Add the ``bench`` command to the ``tracemux`` parser."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark tracemux against the OpenTelemetry, langfuse and LangSmith SDKs",
        description=(
            "Run the benchmark suite (tracemux beside the SDKs it is compared with, in the "
            "same run) and write a Markdown report with charts."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats, spans and runs: the whole suite in under two minutes",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="folder for report.md, the charts and results.json (default bench/out/<timestamp>)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the hot path: hotpath.prof and a top-20 hotpath_profile.txt",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        metavar="SCENARIO",
        default=(),
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``tracemux bench`` with parsed arguments; returns the exit code."""
    # lazily: the benchmark modules pull in matplotlib and the SDKs compared (the bench
    # extra), which the other commands, and ``tracemux --help``, must not pay for
    from rich.console import Console

    from tracemux.bench.common import Options
    from tracemux.bench.runner import default_out_dir, run_all

    console = Console(highlight=False, soft_wrap=True)
    out = args.out or default_out_dir()
    opts = Options(
        quick=args.quick,
        out_dir=str(out),
        profile=args.profile,
        build_side_venv=not args.quick,
    )
    command = "tracemux bench " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "bench")
    console.print(f"tracemux bench: {'quick' if args.quick else 'full'} run, writing to {out}")
    code = run_all(opts, only=args.only, command=command.strip(), echo=console.print)
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m tracemux.bench``: the same as ``tracemux bench``."""
    parser = argparse.ArgumentParser(prog="python -m tracemux.bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
