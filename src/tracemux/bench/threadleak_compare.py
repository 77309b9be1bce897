"""Compare thread-leak detectors on the same leaking cases; write a Markdown table.

Run: ``python -m tracemux.bench.threadleak_compare`` (first run builds the side venv
``.venvs/threadleak-compare`` with langfuse 2, pytest-threadleak 0.5.0, pyleak 0.2.0,
the OpenTelemetry SDK and tracemux; later runs reuse it).

Cases (each in a fresh process per detector):

* ``langfuse2``: a langfuse 2.x client per "run", 5 runs, host a closed 127.0.0.1 port,
  never shut down (3 daemon threads per client: 15 leaked);
* ``otel``: an OpenTelemetry ``BatchSpanProcessor`` created without ``shutdown()``
  (1 daemon thread);
* ``late``: a thread that ends 0.3 s after the block: *not* a leak;
* ``daemon``: a daemon thread that never ends (1 leaked).

Detectors: pytest-threadleak (``pytest --threadleak``), pyleak (``no_thread_leaks``
with its defaults), ``tracemux.threadleak.ThreadLedger`` (grace 1.0 s) and the tracemux
pytest plugin (``pytest --threadleak``, grace 1.0 s). A cell says what was reported and
whether the report names the creation site (the ``Thread.start()`` call).

Output: ``bench/results/threadleak_compare.md`` (and stdout).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tracemux.bench.sidevenv import REPO_ROOT as ROOT
from tracemux.bench.sidevenv import side_venv

REQUIREMENTS = [
    "langfuse>=2.60,<3",
    "pytest>=8",
    "pytest-threadleak==0.5.0",
    "pyleak==0.2.0",
    "opentelemetry-sdk>=1.30",
]
OUT = ROOT / "bench" / "results" / "threadleak_compare.md"

CASES_PY = textwrap.dedent(
    """
    import socket
    import threading
    import time


    def _closed_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


    def langfuse2():
        from langfuse import Langfuse

        host = f"http://127.0.0.1:{_closed_port()}"
        for run in range(5):
            Langfuse(public_key="pk-lf-x", secret_key="sk-lf-x", host=host)


    def otel():
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        BatchSpanProcessor(InMemorySpanExporter())


    def late():
        threading.Thread(target=time.sleep, args=(0.3,), name="late-thread").start()


    def daemon():
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="daemon-leak", daemon=True).start()  # SITE
    """
)

# (case, expected leaked threads, substring that identifies the creation site)
CASES: list[tuple[str, int, str, str]] = [
    ("langfuse2", 15, "task_manager.py:", "langfuse 2.60 client per run x5, never shut down"),
    ("otel", 1, "opentelemetry/sdk/", "OTel BatchSpanProcessor without shutdown()"),
    ("late", 0, "cases.py:", "thread ending 0.3 s after the block"),
    ("daemon", 1, "cases.py:", "daemon thread that never ends"),
]

PYTEST_TEST = textwrap.dedent(
    """
    import cases

    def test_case():
        cases.{case}()
    """
)

# Leaked langfuse clients flush at exit; end the process right after pytest reports.
CONFTEST = textwrap.dedent(
    """
    import os, sys

    def pytest_unconfigure(config):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    """
)

PYLEAK_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    import cases
    from pyleak import no_thread_leaks

    message = ""
    try:
        with no_thread_leaks(action="raise"):
            getattr(cases, sys.argv[1])()
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"message": message}), flush=True)
    os._exit(0)
    """
)

TRACEMUX_RUNNER = textwrap.dedent(
    """
    import json, os, sys
    import cases
    from tracemux.threadleak import ThreadLedger

    with ThreadLedger() as ledger:
        getattr(cases, sys.argv[1])()
    report = ledger.leaks(grace=1.0)
    print(json.dumps({"message": str(report) if report else "", "count": report.count}),
          flush=True)
    os._exit(0)
    """
)


def _run(cmd: list[str], cwd: Path) -> tuple[str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    return proc.stdout + proc.stderr, time.monotonic() - t0


def _pytest(python: Path, work: Path, case: str, plugin: str) -> str:
    (work / "test_case.py").write_text(PYTEST_TEST.format(case=case))
    if plugin == "pytest-threadleak":
        args = ["-p", "no:tracemux_threadleak", "-p", "threadleak", "--threadleak"]
    else:
        args = ["-p", "no:threadleak", "--threadleak", "--threadleak-grace", "1.0"]
    out, _ = _run(
        [
            str(python),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:pyleak",
            "-q",
            "-rf",
            *args,
            "test_case.py",
        ],
        work,
    )
    if re.search(r"\b1 failed\b", out):
        return out
    if re.search(r"\b1 passed\b", out):
        return ""
    raise RuntimeError(f"unexpected pytest output for {plugin}/{case}:\n{out}")


def _script(python: Path, work: Path, case: str, runner: str) -> str:
    (work / "runner.py").write_text(runner)
    out, _ = _run([str(python), "runner.py", case], work)
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"runner failed for {case}:\n{out}")
    return str(json.loads(line)["message"])


def _count_reported(tool: str, message: str) -> int:
    if not message:
        return 0
    if tool == "pyleak":
        m = re.search(r"Detected (\d+) leaked", message)
        return int(m.group(1)) if m else 1
    if tool == "pytest-threadleak":
        m = re.search(r"Test leaked [\[{](.*?)[\]}]", message, re.S)
        return m.group(1).count("<") if m else 1
    m = re.search(r"(\d+) threads? leaked", message)
    return int(m.group(1)) if m else 1


def _cell(tool: str, message: str, expected: int, site_marker: str) -> str:
    n = _count_reported(tool, message)
    if expected == 0:
        return "not reported (correct)" if n == 0 else f"**false positive**: {n} reported"
    if n == 0:
        return "**missed**"
    site = "names creation site" if site_marker in message else "no creation site"
    count = f"{n} of {expected}" if n != expected else f"all {n}"
    return f"caught ({count}); {site}"


def main() -> None:
    python = side_venv("threadleak-compare", REQUIREMENTS)
    tools = [
        "pytest-threadleak 0.5.0",
        "pyleak 0.2.0",
        "tracemux ThreadLedger",
        "tracemux pytest plugin",
    ]
    rows: list[list[str]] = []
    examples: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="threadleak-compare-") as tmp:
        work = Path(tmp)
        (work / "cases.py").write_text(CASES_PY)
        (work / "conftest.py").write_text(CONFTEST)
        for case, expected, marker, title in CASES:
            messages = {
                tools[0]: _pytest(python, work, case, "pytest-threadleak"),
                tools[1]: _script(python, work, case, PYLEAK_RUNNER),
                tools[2]: _script(python, work, case, TRACEMUX_RUNNER),
                tools[3]: _pytest(python, work, case, "tracemux"),
            }
            row = [f"{title} (expected: {expected or 'no'} leak{'s' if expected > 1 else ''})"]
            for tool in tools:
                key = tool.split()[0] if tool.startswith(("pyleak", "pytest-")) else "tracemux"
                row.append(_cell(key, messages[tool], expected, marker))
            rows.append(row)
            if case == "langfuse2":
                for tool in tools[:3]:
                    examples[tool] = messages[tool]
            print(case, "done", file=sys.stderr)

    lines = [
        "# Thread-leak detectors compared",
        "",
        "Generated by `python -m tracemux.bench.threadleak_compare` "
        f"({time.strftime('%Y-%m-%d')}, Python "
        f"{sys.version.split()[0]}); each case runs in a fresh process per detector, in the "
        "side venv `.venvs/threadleak-compare`. pyleak and pytest-threadleak with their "
        "defaults; tracemux with grace 1.0 s.",
        "",
        "| case | " + " | ".join(tools) + " |",
        "|---|" + "---|" * len(tools),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## What each reports for the langfuse 2 case", ""]
    for tool, message in examples.items():
        snippet = _excerpt(message)
        lines += [f"**{tool}**", "", "```", snippet, "```", ""]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


def _excerpt(message: str, limit: int = 900) -> str:
    text = message.strip()
    if not text:
        return "(nothing reported)"
    m = re.search(r"^(E\s+Failed: .*)$", text, re.M)
    if m:
        text = m.group(1)
    if len(text) > limit:
        text = text[:limit] + " ..."
    return text


if __name__ == "__main__":
    main()
