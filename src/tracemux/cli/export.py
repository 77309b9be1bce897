"""``tracemux export``: runs out of the store as JSON Lines or OTLP JSON."""

from __future__ import annotations

import argparse
import sys

from tracemux.cli.common import add_db_argument, console, store_for
from tracemux.cli.selection import SelectionError, add_selection_arguments, selected_runs
from tracemux.transfer import FORMATS, export_runs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="write runs (all, by id, or filtered) as JSON Lines or OTLP JSON",
        description="Write runs with their spans. jsonl: tracemux's own lines, imported back "
        "exactly by tracemux import. otlp: one OTLP JSON request per line (OpenTelemetry "
        "Collector file format), for any OTLP collector.",
    )
    add_db_argument(p)
    add_selection_arguments(p)
    p.add_argument("--format", choices=FORMATS, default="jsonl", help="default jsonl")
    p.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="where to write (default stdout)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    err = console(stderr=True)
    try:
        if args.output == "-":
            n = export_runs(store, selected_runs(store, args), sys.stdout.buffer, args.format)
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as out:
                n = export_runs(store, selected_runs(store, args), out, args.format)
    except (SelectionError, ValueError) as exc:
        err.print(f"tracemux export: {exc}", markup=False, style="red", soft_wrap=True)
        return 2
    except OSError as exc:
        err.print(
            f"tracemux export: cannot write: {exc}", markup=False, style="red", soft_wrap=True
        )
        return 1
    where = "stdout" if args.output == "-" else args.output
    err.print(f"exported {n} runs ({args.format}) to {where}", markup=False, soft_wrap=True)
    return 0
