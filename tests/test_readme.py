"""Every Python code block in README.md runs as written (issue 14, item 6).

Each block is pasted into a file and run in a fresh interpreter, in an empty directory,
with the remote backends' variables pointing at a loopback server (the Langfuse and
Phoenix example sends there instead of the cloud). A block that cannot run here (it needs
a package the test environment lacks) is preceded in the README by
``<!-- readme-test: skip REASON -->`` and listed as skipped with that reason.
The shell block is checked for the scripts it names.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.destinations.conftest import CaptureServer
from tracemux.destinations import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(
    r"(<!-- readme-test: skip (?P<skip>[^>]*)-->\s*)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)


def blocks(lang: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason) of every ``lang`` block."""
    return [
        (README.count("\n", 0, m.start("code")) + 1, m["code"], m["skip"])
        for m in BLOCK.finditer(README)
        if m["lang"] == lang
    ]


PYTHON = blocks("python")


@pytest.fixture
def backend() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    try:
        yield server
    finally:
        server.stop()


def run_block(code: str, cwd: Path, server: CaptureServer) -> subprocess.CompletedProcess[str]:
    (cwd / "app.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEMUX_", "LANGFUSE_",
           "LANGSMITH_", "LANGCHAIN_", "PHOENIX_", "OTEL_"))}  # fmt: skip
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        TRACEMUX_DB=str(cwd / "default.db"),
        LANGFUSE_PUBLIC_KEY="pk-lf-readme-0001",
        LANGFUSE_SECRET_KEY="sk-lf-readme-0001",
        LANGFUSE_HOST=server.url,
        PHOENIX_COLLECTOR_ENDPOINT=server.url,
    )
    return subprocess.run(
        [sys.executable, "app.py"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_readme_has_python_examples() -> None:
    assert len(PYTHON) >= 4


@pytest.mark.parametrize(("line", "code", "skip"), PYTHON, ids=[f"line{b[0]}" for b in PYTHON])
def test_python_block_runs_as_written(
    tmp_path: Path, backend: CaptureServer, line: int, code: str, skip: str | None
) -> None:
    if skip:
        pytest.skip(f"README.md:{line}: {skip.strip()}")
    proc = run_block(code, tmp_path, backend)
    assert proc.returncode == 0, f"README.md:{line}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "ERROR" not in proc.stderr, proc.stderr
    if "traces.db" in code:  # the examples that write the store wrote a run to it
        assert SQLiteStore(tmp_path / "traces.db").runs()
    if "Langfuse(" in code:  # and the one with remote destinations reached them
        requests = backend.snapshot()
        assert "/v1/traces" in {r.path for r in requests}  # Phoenix
        keys = {r.headers.get("authorization") for r in requests if "otel" in r.path}
        assert len(keys) == 2  # Langfuse: the service's keys, then the tenant's
    if "ThreadLedger" in code:
        assert "1 thread leaked" in proc.stdout


def test_the_async_example_records_the_whole_run(tmp_path: Path, backend: CaptureServer) -> None:
    code = next(c for _, c, _ in PYTHON if "async with svc.trace_run" in c)
    assert run_block(code, tmp_path, backend).returncode == 0
    store = SQLiteStore(tmp_path / "traces.db")
    (run,) = store.runs()
    assert run.name == "RAG flow"
    assert {s.name for s in store.spans(run.run_id)} == {"RAG flow", "Retriever", "ChatModel"}


def test_the_shell_block_names_scripts_that_exist() -> None:
    (_, code, _), *_ = blocks("bash")
    scripts = re.findall(r"bash (\S+)", code)
    assert scripts and all((ROOT / s).is_file() for s in scripts)
