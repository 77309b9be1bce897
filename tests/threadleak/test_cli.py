"""``tracemux leakcheck``: leaking, clean and interrupted programs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tracemux.cli.leakcheck import parse_command


def _leakcheck_cmd() -> list[str]:
    """``python -m tracemux leakcheck`` through the real dispatcher when it loads; while
    other commands of the dispatcher are still missing, the module's own entry point."""
    probe = subprocess.run(
        [sys.executable, "-c", "import tracemux.cli.main as m; m.build_parser()"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "tracemux", "leakcheck"]
    return [sys.executable, "-m", "tracemux.cli.leakcheck"]


LEAKY = textwrap.dedent(
    """
    import sys, threading, time
    print("argv=" + repr(sys.argv), flush=True)
    stop = threading.Event()

    def make_client():
        for i in range(2):
            threading.Thread(target=stop.wait, name=f"client-{i}", daemon=True).start()  # SITE

    for run in range(3):
        make_client()  # CALLER
        time.sleep(0.15)
    """
)

CLEAN = textwrap.dedent(
    """
    import threading, time
    t = threading.Thread(target=time.sleep, args=(0.2,))
    t.start()
    t.join()
    threading.Thread(target=time.sleep, args=(0.3,)).start()  # ends within the grace period
    """
)

SERVER = textwrap.dedent(
    """
    import threading, time
    stop = threading.Event()
    for i in range(3):
        threading.Thread(target=stop.wait, name=f"handler-{i}", daemon=True).start()  # SITE
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def _line(source: str, marker: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if marker in line)


def _run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_leakcheck_cmd(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_parse_command_forms() -> None:
    t = parse_command(["--", "python", "app.py", "--port", "1"])
    assert (t.kind, t.value, t.argv) == ("path", "app.py", ["app.py", "--port", "1"])
    t = parse_command(["python3", "-m", "pkg.mod", "x"])
    assert (t.kind, t.value, t.argv) == ("module", "pkg.mod", ["pkg.mod", "x"])
    t = parse_command(["app.py"])
    assert (t.kind, t.argv) == ("path", ["app.py"])
    t = parse_command([sys.executable, "-c", "pass", "a"])
    assert (t.kind, t.value, t.argv) == ("code", "pass", ["-c", "a"])
    with pytest.raises(ValueError):
        parse_command(["--"])


def test_leaking_script_exits_3_and_names_site(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY)
    proc = _run(
        ["--every", "0.1", "--grace", "0.2", "--", "python", "leaky.py", "a", "b"], tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert "argv=['leaky.py', 'a', 'b']" in proc.stdout
    site = f"leaky.py:{_line(LEAKY, '# SITE')} in make_client"
    assert site in proc.stderr
    assert "+2 (now" in proc.stderr  # growth printed while running
    assert "6 still alive" in proc.stderr
    assert "6 threads leaked, all started at " + site in proc.stderr


def test_max_growth_allows_some(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(LEAKY)
    proc = _run(["--max-growth", "6", "--grace", "0", "--", "leaky.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_module_mode(tmp_path: Path) -> None:
    pkg = tmp_path / "leakpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(LEAKY)
    proc = _run(["--grace", "0", "--", "python", "-m", "leakpkg", "z"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "argv=[" in proc.stdout and "'z']" in proc.stdout
    assert f"leakpkg/__main__.py:{_line(LEAKY, '# SITE')} in make_client" in proc.stderr


def test_clean_script_exits_0(tmp_path: Path) -> None:
    (tmp_path / "clean.py").write_text(CLEAN)
    proc = _run(["--every", "0.1", "--", "python", "clean.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "0 still alive" in proc.stderr


def test_program_exit_status_is_kept(tmp_path: Path) -> None:
    (tmp_path / "fails.py").write_text("import sys\nsys.exit(7)\n")
    assert _run(["--", "fails.py"], tmp_path).returncode == 7


def test_ctrl_c_prints_summary(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    proc = subprocess.Popen(
        [*_leakcheck_cmd(), "--every", "0.1", "--", "python", "server.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # let the sampler report growth
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    assert "interrupted (Ctrl+C)" in err
    assert f"server.py:{_line(SERVER, '# SITE')} in <module>" in err
    assert "3 still alive" in err
