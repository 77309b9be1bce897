"""Test support for the integration tests: an in-memory destination, tree helpers, and a
real Langflow server run in a side environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tracemux.destinations.base import Destination
from tracemux.destinations.sqlite import SQLiteStore, StoredSpan
from tracemux.model import Record, SpanRecord

# Batches recorded per destination name: the exporter lives on the export thread, the
# test reads from its own.
_RECORDED: dict[str, list[list[Record]]] = {}
_RECORDED_LOCK = threading.Lock()


@dataclass(frozen=True)
class MemoryDestination(Destination):
    """Test-only: records every batch in memory; ``delay`` seconds per export (async)."""

    name: str = field(default_factory=lambda: uuid.uuid4().hex)
    delay: float = 0.0

    max_batch: ClassVar[int] = 100_000

    def describe(self) -> str:
        return f"memory:{self.name}"

    def open(self) -> _MemoryExporter:
        with _RECORDED_LOCK:
            batches = _RECORDED.setdefault(self.name, [])
        return _MemoryExporter(batches, self.delay)

    @property
    def batches(self) -> list[list[Record]]:
        with _RECORDED_LOCK:
            return list(_RECORDED.get(self.name, []))

    @property
    def spans(self) -> list[SpanRecord]:
        return [r for batch in self.batches for r in batch if isinstance(r, SpanRecord)]


class _MemoryExporter:
    def __init__(self, batches: list[list[Record]], delay: float) -> None:
        self.batches = batches
        self.delay = delay

    async def export(self, batch: Sequence[Record]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow backend: one request takes this long
        with _RECORDED_LOCK:
            self.batches.append(list(batch))

    def close(self) -> None:
        return None


def tree(store: SQLiteStore, run_id: str) -> list[tuple[int, str, str]]:
    """The run's spans depth-first as (depth, kind, name), children in start order."""
    spans = store.spans(run_id)
    children: dict[str | None, list[StoredSpan]] = {}
    for s in spans:
        children.setdefault(s.parent_id, []).append(s)
    out: list[tuple[int, str, str]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: (s.start_ns, s.name)):
            out.append((depth, s.kind, s.name))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    assert len(out) == len(spans), "spans whose parent is not in the run"
    return out


# -- a real Langflow server in a side environment ---------------------------------------------

#: variables of the test machine that must not reach a Langflow process started by a test
BACKEND_PREFIXES = ("LANGFUSE_", "LANGSMITH_", "LANGCHAIN_", "PHOENIX_", "ARIZE_", "OTEL_")


def clean_environ() -> dict[str, str]:
    """``os.environ`` without the backends', tracemux's and Langflow's variables."""
    own = (*BACKEND_PREFIXES, "TRACEMUX_", "LANGFLOW_")
    return {k: v for k, v in os.environ.items() if not k.startswith(own)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid``, depth-first (from ``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in children.read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            continue
        for kid in kids:
            out += [kid, *descendants(kid)]
    return out


def thread_count(pid: int) -> int:
    """The threads of process ``pid`` now, as the kernel counts them."""
    return len(os.listdir(f"/proc/{pid}/task"))


class LangflowServer:
    """``langflow run --backend-only`` on 127.0.0.1, in its own process group.

    :meth:`start` launches it, :meth:`wait_healthy` waits for its ``/health_check``,
    :meth:`terminate` sends SIGTERM as a process manager would and waits for it to exit,
    :meth:`kill` (always safe to call) ends whatever is left of its process group.
    """

    def __init__(self, langflow: Path, workdir: Path, env: dict[str, str]) -> None:
        self.langflow = langflow
        self.workdir = workdir
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LangflowServer:
        cmd = [str(self.langflow), "run", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-only", "--workers", "1"]
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed whole at the end
            )
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_healthy(self, deadline_s: float) -> float:
        """Seconds until ``/health_check`` answered ok; fails if the server exits first or
        the deadline passes."""
        assert self.proc is not None
        started = time.monotonic()
        while time.monotonic() - started < deadline_s:
            if self.proc.poll() is not None:
                pytest.fail(f"langflow exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                reply = httpx.get(f"{self.url}/health_check", timeout=5)
                if reply.status_code == 200 and reply.json().get("status") == "ok":
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"langflow not healthy after {deadline_s:.0f} s:\n{self.log_tail()}")

    def worker_pid(self) -> int:
        """The process that runs the flows: the last of the server's descendants (gunicorn's
        worker), or the server itself when it has none."""
        assert self.proc is not None
        below = descendants(self.proc.pid)
        return below[-1] if below else self.proc.pid

    def terminate(self, deadline_s: float) -> int:
        """SIGTERM to the server, as a process manager stops it; its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(deadline_s)

    def group_members(self) -> list[int]:
        """The processes still in the server's process group (its children included)."""
        assert self.proc is not None
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":  # pgrp; not a zombie
                members.append(int(stat.parent.name))
        return members

    def kill(self) -> None:
        """End the server's whole process group, whatever state it is in, and reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone: every process of it has exited
        self.proc.wait(30)
