"""Secrets in odd places (issue 13, item 7): never stored, never logged, never echoed.

Masked: values under compound and camelCase key names (``userPassword``, ``openaiApiKey``,
``githubToken``, ``dbPassword``, ``api_key_1``, ``api-keys``); a URL's password and its
``?api_key=`` / ``?token=`` values anywhere in text; a dict's repr inside an exception
message; a credential-shaped usage key. Never echoed: a destination URL's password (in
``describe()``, ``stats()`` keys and WARNING logs), header values (in ``ConfigError`` text
and ``tracemux doctor``), a credential-shaped span kind or usage key (in warnings).
"""

from __future__ import annotations

import base64
import logging
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import child_env, wait_until
from tests.reliability.faultserver import FaultServer, Reply
from tracemux import ConfigError, TracingService
from tracemux.config import from_env
from tracemux.destinations import OTLP, Langfuse, LangSmith, Phoenix, SQLiteStore

pytestmark = pytest.mark.reliability


def plain(tag: str) -> str:
    """A secret with no credential shape: only its key name or its place gives it away."""
    return f"{tag}{secrets.token_hex(8)}"


def store_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def found(haystack: str | bytes, needles: dict[str, str]) -> list[str]:
    data = haystack.encode("utf-8", "replace") if isinstance(haystack, str) else haystack
    return [name for name, value in needles.items() if value.encode() in data]


def test_secrets_under_compound_keys_in_urls_and_in_exception_reprs_are_not_stored(
    tmp_path: Path, make_service: Callable[..., TracingService]
) -> None:
    s = {
        name: plain(name[:3])
        for name in (
            "userPassword",
            "openaiApiKey",
            "githubToken",
            "dbPassword",
            "api_key_1",
            "api-keys",
            "url_password",
            "query_api_key",
            "query_token",
            "repr_password",
            "repr_api_key",
            "log_url",
            "name_url",
        )
    }
    usage_key = "sk-proj-" + secrets.token_hex(12)
    store = SQLiteStore(tmp_path / "odd.db")
    svc = make_service([store])
    with svc.trace_run(f"run via https://deploy:{s['name_url']}@git.example.com/r.git") as run:
        with run.span(
            "keys",
            inputs={
                "userPassword": s["userPassword"],
                "config": {"openaiApiKey": s["openaiApiKey"], "dbPassword": s["dbPassword"]},
                "githubToken": s["githubToken"],
                "api_key_1": s["api_key_1"],
                "api-keys": [s["api-keys"], "second"],
                "max_tokens": 4321,  # a count, not a secret: kept
                "monkey": "banana-kept",
            },
        ) as span:
            span.set_outputs(
                {
                    "text": f"cloned https://bob:{s['url_password']}@db.example.com:5432/app and "
                    f"called https://api.example.com/v1/x?page=2&api_key={s['query_api_key']}"
                    f"&token={s['query_token']}#frag"
                }
            )
            span.add_log(f"GET http://svc/items?token={s['log_url']}&n=1")
            span.set_usage(input_tokens=3, **{usage_key: 7})
        try:
            with run.span("failing"):
                payload = {"user": "bob", "password": s["repr_password"]}
                raise ValueError(f"bad request {payload} api={ {'api_key': s['repr_api_key']} }")
        except ValueError:
            pass
    assert svc.flush(20)
    data = store_bytes(Path(store.path))
    assert found(data, s) == []
    assert usage_key.encode() not in data
    assert b"4321" in data and b"banana-kept" in data  # what is not a secret stays
    spans = {sp.name: sp for sp in store.spans(store.runs(limit=1)[0].run_id)}
    assert spans["keys"].inputs["max_tokens"] == 4321
    assert spans["keys"].inputs["userPassword"] == "[masked]"
    assert "db.example.com:5432/app" in str(spans["keys"].outputs)  # only the password went
    assert "page=2" in str(spans["keys"].outputs)


def test_a_destination_url_password_is_not_in_describe_stats_or_warnings(
    fault_server: FaultServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pipeline_settings(flush_interval=0.05)
    password = plain("urlpw")
    fault_server.respond = lambda req: Reply(503, b"busy")
    host = fault_server.url.replace("http://", f"http://collector:{password}@")
    dests = [
        OTLP(endpoint=host, timeout=2),
        Langfuse(public_key="pk-lf-1234567890", secret_key="sk-lf-0987654321", host=host),
        LangSmith(api_key="lsv2_pt_0123456789abcdef", endpoint=host),
        Phoenix(endpoint=host),
    ]
    svc = make_service(dests)
    svc.trace_run("r").end()
    assert wait_until(lambda: "503" in caplog.text and "WARNING" in caplog.text, 20)
    labels = [d.describe() for d in dests] + [str(d) for d in dests] + [repr(dests)]
    assert [x for x in labels if password in x] == []
    assert all("collector:***@" in d.describe() for d in dests)
    assert [k for k in svc.stats()["destinations"] if password in k] == []
    text = caplog.text + " ".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert password not in text
    # the URL's credentials still authenticate: as a Basic header, not in the logged URL
    basic = "Basic " + base64.b64encode(f"collector:{password}".encode()).decode()
    otlp_requests = [r for r in fault_server.snapshot() if r.path == "/v1/traces"]
    assert otlp_requests and otlp_requests[0].headers.get("authorization") == basic


@pytest.mark.parametrize(
    "build",
    [
        lambda v: from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                            "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key: {v}"}),
        lambda v: from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                            "OTEL_EXPORTER_OTLP_HEADERS": f"a=1,authorization {v}"}),
        lambda v: OTLP(endpoint="http://c:4318", headers={f"x-api-key: {v}": "x"}),
        lambda v: OTLP(endpoint=f"http://u:{v}@c:4318?x=1"),
        lambda v: Langfuse(public_key="pk-lf-1", secret_key="sk-lf-1", host=f"ftp://u:{v}@h"),
        lambda v: from_env({"LANGFUSE_PUBLIC_KEY": "pk-lf-1", "LANGFUSE_SECRET_KEY": "sk-1",
                            "LANGFUSE_HOST": f"https://u:{v}@h/?x"}),
        lambda v: from_env({"PHOENIX_COLLECTOR_ENDPOINT": f"u:{v}@host:6006"}),
    ],
    ids=["headers-colon", "headers-no-separator", "header-name", "otlp-url-query",
         "langfuse-url-scheme", "langfuse-env-url", "phoenix-no-scheme"],
)  # fmt: skip
def test_config_errors_do_not_echo_header_values_or_url_passwords(
    build: Callable[[str], Any],
) -> None:
    value = plain("hdr")
    with pytest.raises(ConfigError) as err:
        build(value)
    assert value not in str(err.value)
    assert all(value not in p for p in err.value.problems)


def test_doctor_shows_no_header_value_and_no_url_password(tmp_path: Path) -> None:
    header, password = plain("hdr"), plain("urlpw")
    for headers in (f"x-api-key={header}", f"x-api-key: {header}"):
        env = child_env(
            COLUMNS="80",
            TRACEMUX_DB=str(tmp_path / "t.db"),
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://ops:{password}@127.0.0.1:9",
            OTEL_EXPORTER_OTLP_HEADERS=headers,
        )
        proc = subprocess.run(
            [sys.executable, "-m", "tracemux", "doctor", "--timeout", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0, proc.stdout  # port 9 refuses, or the headers are bad
        assert "x-api-key" in proc.stdout or "OTEL_EXPORTER_OTLP_HEADERS" in proc.stdout
        assert header not in proc.stdout + proc.stderr
        assert password not in proc.stdout + proc.stderr


def test_credential_shaped_span_kinds_and_usage_keys_are_not_logged(
    make_service: Callable[..., TracingService],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kind = "sk-proj-" + secrets.token_hex(12)
    usage_key = "ghp_" + secrets.token_hex(12)
    svc = make_service([SQLiteStore(tmp_path / "k.db")])
    with svc.trace_run("r") as run:
        with run.span("odd", kind=kind) as span:
            span.set_usage(**{usage_key: "not a number"})
    assert svc.flush(20)
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown span kind" in m for m in messages)
    assert any("ignored" in m for m in messages)
    assert kind not in caplog.text and usage_key not in caplog.text
