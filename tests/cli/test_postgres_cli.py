"""The CLI against a PostgreSQL store, ``--db postgresql://...`` or ``TRACEMUX_DB``: demo,
runs, show, export, import into another database and delete, the password never printed."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.test_runs import tracemux
from tests.pgserver import PASSWORD
from tracemux.destinations.postgres import PostgresStore


def _snapshot(store: PostgresStore) -> dict[str, tuple[dict, list[dict]]]:
    return {
        r.run_id: (r.to_dict(), [s.to_dict() for s in store.spans(r.run_id)])
        for r in store.runs(1000)
    }


def test_cli_reads_and_writes_a_postgres_store(pg_cluster, pg_dsn: str, tmp_path: Path) -> None:
    done = tracemux("demo", "--runs", "6", "--db", pg_dsn)
    assert done.returncode == 0, done.stderr
    store = PostgresStore(pg_dsn)
    runs = store.runs(100)
    assert len(runs) == 6
    listed = tracemux("runs", "--db", pg_dsn)
    assert listed.returncode == 0, listed.stderr
    assert all(r.run_id[:8] in listed.stdout for r in runs)
    env = {**os.environ, "TRACEMUX_DB": pg_dsn}
    shown = tracemux("show", runs[0].run_id[:10], env=env)
    assert shown.returncode == 0, shown.stderr
    assert all(s.name in shown.stdout for s in store.spans(runs[0].run_id))
    out = tmp_path / "runs.jsonl"
    assert tracemux("export", "--db", pg_dsn, "-o", str(out)).returncode == 0
    other = pg_cluster.new_database()
    back = tracemux("import", "--db", other, str(out))
    assert back.returncode == 0, back.stderr
    assert _snapshot(PostgresStore(other)) == _snapshot(store)
    gone = tracemux("delete", "--db", pg_dsn, "--yes", runs[0].run_id)
    assert gone.returncode == 0, gone.stderr
    assert store.count_runs() == 5 and store.run(runs[0].run_id) is None
    for proc in (done, listed, shown, back, gone):
        assert PASSWORD not in proc.stdout + proc.stderr
    wrong = tracemux("runs", "--db", pg_dsn.replace(PASSWORD, "nope-Secret9"))
    assert wrong.returncode != 0
    assert "nope-Secret9" not in wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stderr
