"""The CLI as a user runs it: demo into a store, then list and show runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tracemux.destinations import SQLiteStore


def tracemux(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracemux", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_demo_runs_list_and_show(tmp_path: Path):
    db = tmp_path / "demo.db"
    demo = tracemux("demo", "--runs", "40", "--concurrency", "8", "--db", str(db))
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "spans recorded" in out and "240" in out
    assert "spans exported" in out
    assert "threads before / peak / after shutdown" in out
    line = next(li for li in out.splitlines() if "threads before" in li)
    before, peak, after = (int(x) for x in line.split("│")[-2].split("/"))
    assert peak == before + 1 and after == before
    assert str(db) in out

    store = SQLiteStore(db)
    runs = store.runs(limit=100)
    assert len(runs) == 40
    assert all(r.span_count == 6 for r in runs)
    failing = [r for r in runs if r.error_count]
    # a failed tool call does not fail the run: it goes on, and is marked partial
    assert all(r.status == ("partial" if r.error_count else "ok") for r in runs)
    assert failing, "the demo's tool should fail now and then"
    spans = store.spans(failing[0].run_id)
    assert {s.name for s in spans} == {
        "RAG flow",
        "Retriever",
        "Prompt",
        "WebSearch",
        "ChatModel",
        "OutputParser",
    }
    chat = next(s for s in spans if s.name == "ChatModel")
    assert chat.model == "gpt-4o-mini" and chat.usage["total_tokens"] > 0
    # the demo puts a fake key in the run's metadata: it is masked in the store
    assert store.run(failing[0].run_id).metadata["openai_api_key"] == "[masked]"

    listing = tracemux("runs", "--limit", "5", env={"TRACEMUX_DB": str(db)})
    assert listing.returncode == 0, listing.stderr
    assert "RAG flow" in listing.stdout and "40 runs" in listing.stdout

    shown = tracemux("show", failing[0].run_id[:8], "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "WebSearch" in shown.stdout and "ToolTimeout" in shown.stdout
    assert "gpt-4o-mini" in shown.stdout

    missing = tracemux("show", "does-not-exist", "--db", str(db))
    assert missing.returncode == 1 and "No run" in missing.stdout


def test_demo_rejects_bad_arguments(tmp_path: Path):
    bad = tracemux("demo", "--runs", "0", "--db", str(tmp_path / "x.db"))
    assert bad.returncode == 2
