"""The pytest plugin, run on small inner test suites through ``pytester``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# Inner tests "leak" threads that sleep LEAK_SECONDS: long enough to outlive the inner
# grace period, short enough to be gone before this (outer) test's own check ends.
INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
threadleak_grace = 0.2
"""

SUITE = """
import threading, time
import pytest

LEAK_SECONDS = 0.8

def start_worker(name):
    threading.Thread(target=time.sleep, args=(LEAK_SECONDS,), name=name).start()  # SITE

def test_leaks():
    start_worker("leaky-worker")

def test_clean():
    t = threading.Thread(target=time.sleep, args=(0.01,))
    t.start()
    t.join()

@pytest.mark.threadleak(allow=["leaky-*"])
def test_allowed_by_name():
    start_worker("leaky-allowed")

@pytest.mark.threadleak(allow=["site:*test_suite.py:*in start_worker"])
def test_allowed_by_site():
    start_worker("other")

@pytest.mark.threadleak(enabled=False)
def test_disabled():
    start_worker("ignored")

def test_fails_and_leaks():
    start_worker("leaky-failing")
    assert False, "own failure"
"""


def _site_line(path: Path) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "# SITE" in line)


def test_leaking_test_fails_with_site(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    path = pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--threadleak")
    result.assert_outcomes(passed=4, failed=2)
    site = f"test_suite.py:{_site_line(path)} in start_worker"
    result.stdout.fnmatch_lines(
        [
            "*test_leaks*",
            f"Thread leak: 1 thread leaked, started at {site} (alive after 0.2s grace):",
            "*1 thread (leaky-worker) started at*; target time.sleep",
            "*File*test_suite.py*in start_worker",
        ]
    )
    result.stdout.fnmatch_lines(["*own failure*", "*threadleak*", "*leaky-failing*"])
    result.stdout.no_fnmatch_line("*leaky-allowed*")
    result.stdout.no_fnmatch_line("*ignored*")


def test_off_by_default_and_marker_enables(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_off="""
        import threading, time
        import pytest

        def test_not_checked():
            threading.Thread(target=time.sleep, args=(0.8,)).start()

        @pytest.mark.threadleak
        def test_checked():
            threading.Thread(target=time.sleep, args=(0.8,), name="marked").start()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*marked*"])
    result.stdout.fnmatch_lines(["*test_checked*"])


def test_ini_enables_and_no_threadleak_disables(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "threadleak = true\n")
    pytester.makepyfile(
        test_ini="""
        import threading, time

        def test_leaks():
            threading.Thread(target=time.sleep, args=(0.8,)).start()
        """
    )
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--no-threadleak").assert_outcomes(passed=1)


def test_grace_period_option(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    path = pytester.makepyfile(
        test_grace="""
        import threading, time

        def test_late_thread():
            threading.Thread(target=time.sleep, args=(0.3,), name="late").start()  # SITE
        """
    )
    pytester.runpytest("--threadleak", "--threadleak-grace", "1.0").assert_outcomes(passed=1)
    result = pytester.runpytest("--threadleak", "--threadleak-grace", "0")
    result.assert_outcomes(failed=1)
    site = f"test_grace.py:{_site_line(path)} in test_late_thread"
    result.stdout.fnmatch_lines([f"*1 thread (late) started at {site}*"])


def test_teardown_and_fixture_scopes(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_fixtures="""
        import threading, time
        import pytest

        stop = threading.Event()

        @pytest.fixture(scope="module")
        def service():
            t = threading.Thread(target=stop.wait, name="module-service")
            t.start()
            yield t
            stop.set()
            t.join()

        @pytest.fixture
        def leaky_teardown():
            yield
            threading.Thread(target=time.sleep, args=(0.8,), name="from-teardown").start()

        @pytest.fixture
        def clean_fixture():
            ev = threading.Event()
            t = threading.Thread(target=ev.wait)
            t.start()
            yield
            ev.set()
            t.join()

        def test_uses_service(service):
            assert service.is_alive()

        def test_again(service):
            assert service.is_alive()

        def test_teardown_leak(leaky_teardown):
            pass

        def test_fixture_cleans_up(clean_fixture):
            pass
        """
    )
    result = pytester.runpytest("--threadleak", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_teardown_leak FAILED*", "*from-teardown*"])
    result.stdout.no_fnmatch_line("*module-service*")


def test_pytest_asyncio_inner_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_async="""
        import asyncio, threading, time
        import pytest

        @pytest.mark.asyncio
        async def test_default_executor_function_loop():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, time.sleep, 0.01)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_default_executor_module_loop():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, time.sleep, 0.01)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_loop_again():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, time.sleep, 0.01)

        @pytest.mark.asyncio
        async def test_async_leak():
            threading.Thread(target=time.sleep, args=(0.8,), name="async-leak").start()
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest("--threadleak", "-p", "asyncio", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_async_leak FAILED*", "*async-leak*"])
    result.stdout.no_fnmatch_line("*asyncio_0*")


def test_xdist_inner_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    path = pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--threadleak", "-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=4, failed=2)
    site = f"test_suite.py:{_site_line(path)} in start_worker"
    result.stdout.fnmatch_lines([f"*Thread leak: 1 thread leaked, started at {site}*"])
    result.stdout.no_fnmatch_line("*execnet*")
