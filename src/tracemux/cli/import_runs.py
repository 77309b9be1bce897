"""``tracemux import FILE``: runs from a ``tracemux export`` file (either format), or
OTLP JSON from elsewhere, into the store."""

from __future__ import annotations

import argparse
import sys

from tracemux.cli.common import add_db_argument, console, store_for
from tracemux.transfer import TransferError, import_file


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import", help="read runs from a tracemux export (jsonl or otlp) into the store"
    )
    add_db_argument(p)
    p.add_argument("file", help="the file (- for stdin)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out, err = console(), console(stderr=True)
    try:
        if args.file == "-":
            n = import_file(store, sys.stdin.buffer)
        else:
            with open(args.file, "rb") as f:
                n = import_file(store, f)
    except TransferError as exc:
        err.print(f"tracemux import: {args.file}: {exc}", markup=False, style="red", soft_wrap=True)
        return 2
    except OSError as exc:
        err.print(f"tracemux import: {exc}", markup=False, style="red", soft_wrap=True)
        return 1
    out.print(f"imported {n} runs into {store.path}", markup=False, soft_wrap=True)
    return 0
