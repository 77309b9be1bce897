"""What the scenarios share: options, statistics, interleaved timing, child processes, the
loopback receiver, the langfuse 2 side venv, RSS sampling.

This module is imported in the side venv too (langfuse 2 runs there with tracemux installed
editable), so it imports nothing beyond the standard library and tracemux's own
dependencies at module level.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tracemux.bench.sidevenv import repo_root, side_venv

#: what a child reports about itself when it could not run
NOT_INSTALLED = "not installed"

#: the langfuse 2 side venv: the same name and spec as the tests use
LANGFUSE2_VENV = "langfuse2"
LANGFUSE2_SPEC = ("langfuse>=2.60,<3",)

#: small inputs and outputs, as a flow engine records them for one step
INPUTS: dict[str, Any] = {"question": "What is retrieval augmented generation?", "k": 3}
OUTPUTS: dict[str, Any] = {"answer": "Retrieval augmented generation.", "docs": 3}
MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You answer questions about the docs."},
    {"role": "user", "content": "What is retrieval augmented generation?"},
]
REPLY: dict[str, str] = {"role": "assistant", "content": "Retrieval augmented generation."}
MODEL = "gpt-4o-mini"
USAGE_IN, USAGE_OUT = 12, 30

# A throwaway self-signed CA (certificate only), as in tests/test_clients.py. httpx loads the
# bundle named by SSL_CERT_FILE for every client; a one-certificate bundle makes creating a
# langfuse client cost ~17 ms instead of ~100 ms. Used only where client creation is not
# what is measured (thread counts over 1,000 clients); every host is plain http anyway.
TINY_CA = """\
-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUED/fltgeVT5bDSJ17KaHG9U4//owCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQdHJhY2VtdXgtdGVzdC1jYTAgFw0yNjExMjgwMDI2NDFaGA8y
MTI2MTEwNDAwMjY0MVowGzEZMBcGA1UEAwwQdHJhY2VtdXgtdGVzdC1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABIZq5AfvEzUWti+KrwMuzDO14ZRcUbzRDOr3
KaLifrzjuLSVVXfoUJ4wUYzfK3jzt55Cg2EKhQI9faiwrWyeNS2jUzBRMB0GA1Ud
DgQWBBTrEQSmQ0KppF/6lsc7ei1dZuN7GjAfBgNVHSMEGDAWgBTrEQSmQ0KppF/6
lsc7ei1dZuN7GjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFet
1TnqP9MNocbGtiPpoFFEfKbLtofPiZtoSvO0Ql3UAiEAuadruvKIGkuY7zXctHt/
a1Pni4J6w0Mz8XC6OlPY+gU=
-----END CERTIFICATE-----
"""


# -- options ---------------------------------------------------------------------------------


@dataclass
class Options:
    """What the command line asked for, handed to every child as JSON."""

    quick: bool = False
    out_dir: str = "."
    profile: bool = False
    #: build the langfuse 2 side venv if it is missing (the full run does; quick does not)
    build_side_venv: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Options:
        return cls(**json.loads(text))


# -- statistics --------------------------------------------------------------------------------


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of ``values`` (and the values themselves)."""
    xs = [float(v) for v in values]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
        "values": xs,
    }


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Summary of ``a[i] / b[i]``: ratios of measurements taken in the same round."""
    return summarize([x / y for x, y in zip(a, b) if y])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(len(sorted_values) * q)))
    return float(sorted_values[i])


# -- interleaved timing ------------------------------------------------------------------------


def _noop() -> None:
    return None


@dataclass
class Case:
    """One thing timed: ``loop(n)`` records n spans; ``drain`` and ``close`` are not timed."""

    name: str
    loop: Callable[[int], None]
    drain: Callable[[], None] = _noop
    close: Callable[[], None] = _noop
    max_n: int = 100_000


def measure_round_robin(
    cases: Sequence[Case], repeats: int, target_s: float, min_n: int = 200
) -> dict[str, dict[str, Any]]:
    """Time every case ``repeats`` times, interleaved: round r runs each case once, in an
    order rotated by r, so drift on a shared machine weighs on every case alike.

    The span count per repeat is calibrated per case so that one repeat takes about
    ``target_s``. The export side is drained after each repeat, outside the timing.
    Returns ``{name: {"us": [wall µs per span, per round], "cpu_us": [the recording
    thread's CPU µs per span, per round], "n": spans per repeat}}``; the CPU time leaves
    out the time the thread was descheduled, which a shared machine adds to the wall time.
    """
    counts: dict[str, int] = {}
    for case in cases:  # warm up, then calibrate
        case.loop(min_n)
        case.drain()
        t0 = time.perf_counter()
        case.loop(min_n)
        per = max(1e-8, (time.perf_counter() - t0) / min_n)
        case.drain()
        counts[case.name] = int(max(min_n, min(case.max_n, target_s / per)))
    out: dict[str, dict[str, Any]] = {
        c.name: {"us": [], "cpu_us": [], "n": counts[c.name]} for c in cases
    }
    order = list(cases)
    for r in range(repeats):
        k = r % len(order)
        for case in order[k:] + order[:k]:
            n = counts[case.name]
            gc.collect()
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            case.loop(n)
            t1 = time.perf_counter_ns()
            c1 = time.thread_time_ns()
            out[case.name]["us"].append((t1 - t0) / n / 1000)
            out[case.name]["cpu_us"].append((c1 - c0) / n / 1000)
            case.drain()
    return out


# -- processes ---------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_url() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/statm``."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def quiet_loggers(*names: str) -> None:
    """Silence SDK loggers that would otherwise report every failed export to a closed port."""
    for name in names:
        lg = logging.getLogger(name)
        lg.setLevel(logging.CRITICAL + 1)
        lg.propagate = False


def dist_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: no SDK credentials or endpoints from the caller's shell
    (nothing may leave the machine), plus ``extra``."""
    drop = ("LANGFUSE_", "LANGSMITH_", "LANGCHAIN_", "OTEL_", "PHOENIX_", "TRACEMUX_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:] if len(text) > n else text


def run_python(
    python: str | Path,
    args: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m <args...> RESULT_PATH`` and return the JSON the child wrote there.

    The child writes its result to a file (SDKs print to stdout); on failure the result is
    ``{"error": ...}`` with the tail of its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="tracemux-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [str(python), "-X", "utf8", *args, str(result_path)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(env) if env is not None else bench_env(),
                cwd=tmp,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            return {"error": f"timed out after {timeout:.0f} s", "stderr": _tail(err or "")}
        wall = time.perf_counter() - t0
        if result_path.exists():
            try:
                out = json.loads(result_path.read_text())
            except ValueError as exc:
                return {"error": f"unreadable result: {exc}", "stderr": _tail(proc.stderr)}
            if isinstance(out, dict):
                out.setdefault("wall_s", wall)
            return out
        return {
            "error": f"child exited {proc.returncode} without a result",
            "stderr": _tail(proc.stderr),
        }


def run_child(
    scenario: str,
    part: str,
    opts: Options,
    *,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one part of a scenario in a fresh interpreter (this one's)."""
    return run_python(
        sys.executable,
        ["-m", "tracemux.bench.runner", scenario, part, opts.to_json()],
        timeout=timeout,
        env=env,
    )


def write_result(path: str, result: Mapping[str, Any]) -> None:
    """Write a child's result and leave at once.

    ``os._exit`` skips the SDKs' exit hooks: several of them flush to the closed or slow
    port they were pointed at, which would only add minutes of retries to the run.
    """
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# -- the loopback receiver ---------------------------------------------------------------------


class Receiver:
    """A minimal HTTP receiver in a subprocess (``tracemux.bench.receiver``) on 127.0.0.1:
    reads and discards each body and answers 200, after ``delay`` seconds if asked.

    It exits when its stdin closes, so it cannot outlive the process that started it.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.counts: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracemux.bench.receiver", "--delay", str(self.delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the receiver; returns what it counted (requests, body bytes)."""
        proc = self.proc
        if proc is None:
            return self.counts
        self.proc = None
        try:
            out, _ = proc.communicate(timeout=10)  # closes its stdin: the receiver exits
            for line in out.splitlines():
                if line.startswith("{"):
                    self.counts = json.loads(line)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        return self.counts

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def tiny_ca() -> Iterator[str]:
    """A file holding :data:`TINY_CA`, for ``SSL_CERT_FILE``."""
    with tempfile.TemporaryDirectory(prefix="tracemux-bench-ca-") as tmp:
        path = Path(tmp) / "tiny-ca.pem"
        path.write_text(TINY_CA)
        yield str(path)


# -- the langfuse 2 side venv ------------------------------------------------------------------


def langfuse2_python(build: bool) -> tuple[Path | None, str]:
    """The interpreter of the langfuse 2 side venv, and a note when there is none.

    With ``build`` the venv is created or updated by :mod:`tracemux.bench.sidevenv` (the
    same name and spec the tests use); without it an existing venv is used as it is.
    """
    root = repo_root()
    if root is None:
        return None, "needs a source checkout (side venvs install tracemux from it)"
    python = root / ".venvs" / LANGFUSE2_VENV / "bin" / "python"
    if not build:
        if python.exists():
            return python, ""
        return None, (
            "side venv .venvs/langfuse2 not built yet; quick mode does not build it "
            "(the full run or the test suite does)"
        )
    try:
        return Path(side_venv(LANGFUSE2_VENV, list(LANGFUSE2_SPEC))), ""
    except Exception as exc:  # pip failed: report it, do not fail the bench
        return None, f"could not build the langfuse 2 side venv: {str(exc)[:300]}"


def run_langfuse2(
    task: str,
    params: Mapping[str, Any],
    opts: Options,
    *,
    timeout: float = 600.0,
    env_extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``task`` of :mod:`tracemux.bench.langfuse2_side` in the langfuse 2 side venv."""
    python, note = langfuse2_python(opts.build_side_venv)
    if python is None:
        return {"status": "unavailable", "note": note}
    return run_python(
        python,
        ["-m", "tracemux.bench.langfuse2_side", task, json.dumps(dict(params))],
        timeout=timeout,
        env=bench_env(env_extra),
    )


def span_loops(run: Any) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """The hot path's two cases on ``run``: n plain spans, n LLM spans with usage."""

    def span_loop(n: int) -> None:
        span = run.span
        for _ in range(n):
            with span("step", kind="tool", inputs=INPUTS) as s:
                s.set_outputs(OUTPUTS)

    def llm_loop(n: int) -> None:
        span = run.span
        for _ in range(n):
            with span("chat", kind="llm", inputs=MESSAGES) as s:
                s.set_outputs(REPLY)
                s.set_usage(model=MODEL, input_tokens=USAGE_IN, output_tokens=USAGE_OUT)

    return span_loop, llm_loop
