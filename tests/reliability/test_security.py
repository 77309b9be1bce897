"""Secrets never leave the process unmasked, and credentials are never logged.

A secret is placed everywhere a flow can put one: inputs, outputs, metadata (span and run),
log lines and their fields, span and run names, exception messages, chained exceptions and
tracebacks, and a value big enough to be truncated. It must appear in none of: the store's
files (database and WAL, read as bytes), any request body (raw and gunzipped) the loopback
server received, or the log output at DEBUG (caplog, and a child process logging to stderr).

The destinations' own keys (Langfuse public and secret key and their Basic token, LangSmith
and Phoenix API keys, OTLP header values) must never be logged either, even at DEBUG, even
when the server answers 401 or 500 with a body that echoes them back.
"""

from __future__ import annotations

import base64
import logging
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import child_env, write_script
from tests.reliability.faultserver import OK, Action, FaultServer, Reply, Request
from tracemux import TracingService
from tracemux.destinations import OTLP, LangSmith, Phoenix, SQLiteStore
from tracemux.destinations.langfuse import Langfuse

pytestmark = pytest.mark.reliability

# user secrets: credential-shaped ones are masked wherever they appear; a plain one is masked
# under a secret key name (api_key, password, token, authorization...)
SK = "sk-proj-" + secrets.token_hex(12)
BEARER_TOKEN = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
BEARER = "Bearer " + BEARER_TOKEN
GH = "ghp_" + secrets.token_hex(12)
KEYED = "plain-hunter2-" + secrets.token_hex(8)
USER_SECRETS = (SK, BEARER_TOKEN, GH, KEYED)

# the destinations' own credentials
LF_PK = "pk-lf-" + secrets.token_hex(10)
LF_SK = "sk-lf-" + secrets.token_hex(10)
LF_BASIC = base64.b64encode(f"{LF_PK}:{LF_SK}".encode()).decode()
LS_KEY = "lsv2_pt_" + secrets.token_hex(12)
PHX_KEY = "phx" + secrets.token_hex(12)
OTLP_HEADER = "otlphdr" + secrets.token_hex(12)
CREDENTIALS = (LF_PK, LF_SK, LF_BASIC, LS_KEY, PHX_KEY, OTLP_HEADER)


def destinations(url: str, store: SQLiteStore) -> list[Any]:
    return [
        store,
        OTLP(endpoint=url, headers={"x-collector-key": OTLP_HEADER}, timeout=2),
        Langfuse(public_key=LF_PK, secret_key=LF_SK, host=url, timeout=2),
        LangSmith(api_key=LS_KEY, endpoint=url, timeout=2),
        Phoenix(endpoint=url, api_key=PHX_KEY, timeout=2),
    ]


def record_everywhere(svc: TracingService) -> None:
    """One run with a secret in every field a flow can fill."""
    run = svc.trace_run(
        f"flow for {SK}",
        inputs={"question": f"use {SK} please", "api_key": KEYED, "list": [{"password": KEYED}]},
        metadata={"token": KEYED, "note": f"github {GH}", "Authorization": BEARER},
    )
    with run:
        with run.span(f"tool {GH}", kind="tool", inputs={"cmd": f"curl -H '{BEARER}'"}) as s:
            s.set_outputs({"answer": f"the key is {SK}", "secret": KEYED}, metadata={"pwd": KEYED})
            s.add_log(f"calling with {SK} and {BEARER}", level="debug", api_key=KEYED, raw=SK)
            s.add_log(f"token {GH}")
        try:
            with run.span(f"failing {SK}"):
                try:
                    raise KeyError(f"missing {BEARER}")
                except KeyError as inner:
                    err = ValueError(f"auth failed for {SK} / {GH}")
                    if hasattr(err, "add_note"):
                        err.add_note(f"note: {SK}")
                    raise err from inner
        except ValueError:
            pass
        big = {f"field{i}": "x" * 5000 for i in range(40)}
        big.update({"password": KEYED, "api_key": SK, "auth": BEARER})
        run.span("big", inputs=big, metadata={"password": KEYED, "filler": ["y" * 900] * 40}).end()
        with run.span("llm", kind="llm") as llm:
            llm.set_usage(model="gpt-4o", input_tokens=3, output_tokens=4)
            llm.set_outputs([{"role": "assistant", "content": f"here: {SK}"}])


def leaks(haystack: bytes | str, needles: Iterable[str]) -> list[str]:
    data = haystack.encode("utf-8", "replace") if isinstance(haystack, str) else haystack
    return [n for n in needles if n.encode() in data]


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def echo(status: int) -> Callable[[Request], Action]:
    """Answer ``status`` with a body that echoes the credentials the request carried: its
    auth headers, and the key pair inside a Basic token ("public key pk-lf-... not found")."""

    def respond(req: Request) -> Action:
        h = req.headers
        auth = h.get("authorization", "")
        pair = ""
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
        body = (
            f"denied: authorization={auth} x-api-key={h.get('x-api-key')} "
            f"public={h.get('x-langfuse-public-key')} collector={h.get('x-collector-key')} "
            f"pair={pair}"
        ).encode()
        return Reply(status, body, (("Content-Type", "text/plain"),))

    return respond


def test_secrets_reach_no_store_no_request_no_log(
    tmp_path: Path,
    fault_server: FaultServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    pipeline_settings(flush_interval=0.05)
    store = SQLiteStore(tmp_path / "secrets.db")
    svc = make_service(destinations(fault_server.url, store), max_value_bytes=16 * 1024)

    # 1. everything accepted: check what was stored and sent
    record_everywhere(svc)
    assert svc.flush(20)
    stats = svc.stats()["destinations"]
    assert all(stats[d.describe()]["exported"] == 5 for d in svc.destinations)
    requests = fault_server.snapshot()
    assert len({tuple(sorted(r.headers)) for r in requests}) == 4  # four remote kinds
    for req in requests:
        assert leaks(req.raw, USER_SECRETS) == []
        assert leaks(req.body, USER_SECRETS) == [], req.path
    assert leaks(store_bytes(Path(store.path)), USER_SECRETS) == []
    spans = store.spans(store.runs()[0].run_id)
    assert len(spans) == 5 and any("[masked]" in str(s.inputs) for s in spans)

    # 2. the server refuses the credentials (401), then fails (500), echoing them back
    for status in (401, 500):
        fault_server.respond = echo(status)
        record_everywhere(svc)
        svc.flush(3)
    fault_server.respond = lambda req: OK
    assert svc.flush(60)
    svc.shutdown(10)
    assert leaks(store_bytes(Path(store.path)), USER_SECRETS) == []
    for req in fault_server.snapshot():
        assert leaks(req.body, USER_SECRETS) == []

    text = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    assert "401" in text and "500" in text  # the failures were logged...
    assert leaks(text, USER_SECRETS + CREDENTIALS) == []  # ...without a secret in them


SUBPROCESS = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
sys.path.insert(0, {root!r})
from tests.reliability import test_security as t
from tests.reliability.faultserver import FaultServer, OK
import tracemux
from tracemux.destinations import SQLiteStore
from tracemux.pipeline.worker import PipelineSettings

server = FaultServer().start()
store = SQLiteStore({db!r})
svc = tracemux.TracingService(
    t.destinations(server.url, store), max_value_bytes=16 * 1024,
    pipeline=PipelineSettings(flush_interval=0.05),
)
t.record_everywhere(svc)
svc.flush(20)
for status in (401, 500):
    server.respond = t.echo(status)
    t.record_everywhere(svc)
    svc.flush(3)
server.respond = lambda req: OK
svc.flush(60)
print(repr(svc.destinations), svc.stats())
svc.shutdown(10)
server.stop()
print("SECRETS", "|".join(t.USER_SECRETS + t.CREDENTIALS))
"""


def test_debug_logging_to_stderr_shows_no_secret(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    script = write_script(
        tmp_path, "debug.py", SUBPROCESS.format(root=root, db=str(tmp_path / "debug.db"))
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    # the child made its own secrets (the module is imported anew): read them back
    needles = proc.stdout.rsplit("SECRETS ", 1)[1].strip().split("|")
    assert len(needles) == len(USER_SECRETS + CREDENTIALS)
    assert "DEBUG" in proc.stderr and "401" in proc.stderr and "500" in proc.stderr
    assert leaks(proc.stderr, needles) == []
    assert leaks(proc.stdout.rsplit("SECRETS ", 1)[0], needles) == []
    assert leaks(store_bytes(tmp_path / "debug.db"), needles[: len(USER_SECRETS)]) == []
