"""The CLI agrees with the README (issue 14, items 5 and 7), through the real entry point,
at 80 columns and piped: ``--version``, ``--db`` on every command that uses the store (and
``leakcheck``), help for every option, and a demo whose every line is true and unbroken.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tracemux
from tracemux.cli.main import COMMANDS, build_parser
from tracemux.destinations import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
STORE_COMMANDS = ("demo", "runs", "show", "export", "import", "delete", "ui", "doctor", "leakcheck")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
    return subprocess.run(
        [sys.executable, "-m", "tracemux", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80", **env},
    )


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"tracemux {tracemux.__version__}"


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_every_command_that_uses_the_store_takes_db(command: str) -> None:
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--db PATH" in proc.stdout


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []
    assert "seed of the random choices" in cli("demo", "--help").stdout


def test_leakcheck_db_sets_the_programs_store(tmp_path: Path) -> None:
    program = tmp_path / "app.py"
    program.write_text("import os\nprint('DB=' + os.environ.get('TRACEMUX_DB', ''))\n")
    db = tmp_path / "lc.db"
    proc = cli("leakcheck", "--db", str(db), "--", "python", str(program))
    assert proc.returncode == 0, proc.stderr
    assert f"DB={db}" in proc.stdout


def test_demo_lines_are_true_and_unbroken_at_80_columns(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    proc = cli("demo", "--runs", "3", "--concurrency", "50", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"Recording 3 runs (3 at a time) into {db}"  # not "(50 at a time)"
    for command in ("runs", "show RUN_ID", "ui"):
        assert f"  tracemux {command} --db {db}" in lines  # whole, on one line
    table = [line for line in lines if line.startswith(("│", "┌", "└", "tracemux demo"))]
    assert table and max(len(line) for line in table) <= 80
    row = {m[1].strip(): m[2].strip() for m in (re.match(r"│(.*)│(.*)│", li) for li in table) if m}
    assert row["spans recorded"] == "18" and row["spans exported"] == "18"
    assert len(SQLiteStore(db).runs()) == 3
