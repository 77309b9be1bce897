"""``tracemux runs`` and ``tracemux show`` as a user runs them: the installed command in a
subprocess, output piped, at 80 columns."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui.conftest import TOOL_ONLY_WORD, Recorded, fill_store, record_chat_session
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

HEADERS = ("run id", "name", "status", "started", "duration", "spans", "tokens", "cost")


def tracemux(
    *args: str, columns: int = 80, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("tracemux")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "tracemux"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,  # piped, as in `tracemux runs | less`
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": str(columns), **(env or {})},
    )


@pytest.fixture
def filled(make_service, store: SQLiteStore) -> tuple[SQLiteStore, Recorded]:
    svc: TracingService = make_service([store])
    rec = fill_store(svc, agent_runs=3)
    svc.shutdown(10)
    return store, rec


def _header_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("run id"))


def test_runs_at_80_columns_shows_every_header_in_full(filled) -> None:
    store, rec = filled
    done = tracemux("runs", "--db", store.path)
    assert done.returncode == 0, done.stderr
    assert "…" not in _header_line(done.stdout)
    assert _header_line(done.stdout).split() == [w for h in HEADERS for w in h.split()]
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    assert "5 runs in" in done.stdout
    assert "(users and sessions show at 100 columns or more)" in done.stdout
    for run_id in rec.newest_first:
        assert run_id[:8] in done.stdout
    wide = tracemux("runs", "--db", store.path, columns=140)
    assert _header_line(wide.stdout).split()[-1] == "user/session"
    assert "alice / s-0" in wide.stdout


def test_status_error_lists_every_run_with_a_failed_span(filled) -> None:
    store, rec = filled
    with sqlite3.connect(store.path) as conn:
        failed_span_runs = {
            row[0]
            for row in conn.execute("SELECT DISTINCT run_id FROM spans WHERE status = 'error'")
        }
    assert failed_span_runs == {*rec.agent_runs, rec.failed_run}
    done = tracemux("runs", "--db", store.path, "--status", "error")
    assert done.returncode == 0, done.stderr
    assert f"{len(failed_span_runs)} runs match" in done.stdout
    rows = [
        line for line in done.stdout.splitlines() if line[:8] in {r[:8] for r in failed_span_runs}
    ]
    assert len(rows) == len(failed_span_runs)
    agent_row = next(line for line in rows if line.startswith(rec.agent_runs[0][:8]))
    assert "partial ✕1" in agent_row
    failed_row = next(line for line in rows if line.startswith(rec.failed_run[:8]))
    assert "error ✕2" in failed_row  # the Splitter span and the run itself


def test_no_match_is_not_no_runs(filled, tmp_path: Path) -> None:
    store, _ = filled
    done = tracemux("runs", "--db", store.path, "--search", "zzz")
    assert done.returncode == 0
    assert done.stdout.strip() == f"No runs match these filters (5 runs in {store.path})."
    empty = tracemux("runs", "--db", str(tmp_path / "none.db"))
    assert empty.stdout.startswith("No runs in ")
    assert "tracemux demo" in empty.stdout


def test_show_lists_the_runs_an_ambiguous_prefix_matches(make_service, store) -> None:
    svc = make_service([store])
    for run_id, name in (("e1a-one", "first"), ("e1b-two", "second"), ("f00-three", "third")):
        with svc.trace_run(name, run_id=run_id):
            pass
    svc.shutdown(10)
    done = tracemux("show", "--db", store.path, "e1")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "'e1' is the start of 2 run ids; give more of the id:"
    assert sorted(line.split()[0] for line in lines[1:]) == ["e1a-one", "e1b-two"]
    one = tracemux("show", "--db", store.path, "e1b")
    assert one.returncode == 0 and "run e1b-two" in one.stdout
    none = tracemux("show", "--db", store.path, "zz")
    assert none.returncode == 1
    assert none.stdout.strip() == f"No run 'zz' in {store.path}."


def test_runs_search_is_full_text(make_service, store: SQLiteStore) -> None:
    svc = make_service([store])
    chat = record_chat_session(svc)
    svc.shutdown(10)
    done = tracemux("runs", "--db", store.path, "--search", TOOL_ONLY_WORD)
    assert done.returncode == 0, done.stderr
    assert "1 runs match" in done.stdout
    assert chat[0][:8] in done.stdout and chat[1][:8] not in done.stdout
    too_long = tracemux("runs", "--db", store.path, "--search", "x" * 5000)
    assert too_long.returncode == 2
    assert "search is longer than 1000 characters" in too_long.stderr
