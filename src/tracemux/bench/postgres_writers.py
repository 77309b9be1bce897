"""Many processes writing one store at full speed: PostgreSQL beside SQLite, same run.

    .venv/bin/python -m tracemux.bench.postgres_writers [--processes 8] [--seconds 10] [--dsn DSN]
        [--stores sqlite,postgres]

Each process records runs of 10 spans as fast as it can for ``--seconds``, then flushes;
its export thread writes to the store (one transaction per batch). Then the script checks
that every span was stored or counted dropped (with its reason) and prints, per store,
the spans recorded, stored and dropped and the sustained rate: spans stored per second,
from the first span recorded to the last batch committed. Without ``--dsn`` a throwaway
PostgreSQL cluster is started on 127.0.0.1 (Debian's binaries, see tests/pgserver.py);
``--stores sqlite`` writes the SQLite store alone (as gunicorn workers sharing one file).
Figures, not assertions: the machine may be busy. ``--json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tracemux.bench.sidevenv import repo_root

SPANS_PER_RUN = 10


def child(target: str, tag: str, seconds: float) -> None:
    """One writer process: record for ``seconds``, flush, print its figures as JSON."""
    import tracemux
    from tracemux.destinations.stores import open_store

    store = open_store(target)
    svc = tracemux.TracingService([store])  # type: ignore[list-item]
    start = time.time()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        with svc.trace_run("bench-flow", run_id=f"{tag}-{i}", user_id=tag) as run:
            for j in range(SPANS_PER_RUN - 1):
                run.span(f"step-{j}", kind="tool", inputs={"j": j}).end()
        i += 1
    flushed = svc.flush(300)
    end = time.time()
    stats = svc.stats()
    dest = stats["destinations"].get(store.describe(), {})
    svc.shutdown(10)
    print(
        json.dumps(
            {
                "recorded": stats["recorded"],
                "exported": dest.get("exported", 0),
                "failures": dest.get("failures", 0),
                "dropped": stats["dropped"],
                "flushed": flushed,
                "start": start,
                "end": end,
            }
        )
    )


def run_store(target: str, processes: int, seconds: float) -> dict[str, Any]:
    """Start the writers on one store, wait for them; their figures summed."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", target, f"p{k}", str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(processes)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 600)
        assert proc.returncode == 0, f"writer exited {proc.returncode}"
        reports.append(json.loads(out.strip().splitlines()[-1]))
    dropped: dict[str, int] = {}
    for r in reports:
        for reason, n in r["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    recorded = sum(r["recorded"] for r in reports)
    exported = sum(r["exported"] for r in reports)
    failures = sum(r["failures"] for r in reports)
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return {
        "recorded": recorded,
        "exported": exported,
        "dropped": dropped,
        "failures": failures,  # failed writes (each retried: none is a loss by itself)
        "flushed": all(r["flushed"] for r in reports),
        "seconds": round(elapsed, 2),
        "spans_per_s": round(exported / elapsed) if elapsed > 0 else 0,
    }


def stored_spans(target: str) -> int:
    from tracemux.destinations.stores import open_store

    store = open_store(target)
    return sum(r.span_count for r in store.runs(10**9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dsn", help="a PostgreSQL database to write (default: a throwaway one)")
    parser.add_argument(
        "--stores",
        default="sqlite,postgres",
        help="the stores to write, in order: sqlite, postgres or both (default both)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]))
        return 0
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    if not stores or set(stores) - {"sqlite", "postgres"}:
        parser.error("--stores takes sqlite, postgres or both, separated by a comma")
    cluster = None
    with tempfile.TemporaryDirectory(prefix="tracemux-bench-") as tmp:
        dsn = args.dsn
        if dsn is None and "postgres" in stores:
            root = repo_root()  # tests/pgserver.py lives in the checkout
            if root is None:
                parser.error("no source checkout to start PostgreSQL from: pass --dsn")
            sys.path.insert(0, str(root))
            from tests.pgserver import PgCluster, bin_dir

            bindir = bin_dir()
            if bindir is None:
                parser.error("no PostgreSQL server installed: pass --dsn")
            cluster = PgCluster(bindir)
            cluster.start()
            dsn = cluster.new_database()
        try:
            results = {}
            targets = {"sqlite": str(Path(tmp) / "bench.db"), "postgres": dsn}
            for name in stores:
                target = str(targets[name])
                figures = run_store(target, args.processes, args.seconds)
                figures["stored"] = stored_spans(target)
                figures["accounted"] = (
                    figures["stored"] == figures["exported"]
                    and figures["exported"] + sum(figures["dropped"].values())
                    == figures["recorded"]
                )
                results[name] = figures
        finally:
            if cluster is not None:
                cluster.destroy()
    if args.json:
        print(json.dumps({"processes": args.processes, **results}))
    else:
        print(f"{args.processes} processes, {args.seconds:g} s of recording each")
        print(f"{'store':10} {'recorded':>10} {'stored':>10} {'dropped':>10} {'spans/s':>10}  ok")
        for name, f in results.items():
            dropped = sum(f["dropped"].values())
            print(
                f"{name:10} {f['recorded']:>10} {f['stored']:>10} {dropped:>10}"
                f" {f['spans_per_s']:>10}  {'yes' if f['accounted'] else 'NO'}"
                + (f"  dropped: {f['dropped']}" if dropped else "")
            )
    return 0 if all(f["accounted"] for f in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
