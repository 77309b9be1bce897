"""The viewer's HTTP server: JSON API, static page, security headers, threads, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.ui.conftest import (
    XSS_RUN,
    XSS_SPAN,
    fill_store,
    get,
    get_json,
    record_chat_session,
)
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.ui import UIServer
from tracemux.ui.server import SECURITY_HEADERS, THREAD_PREFIX


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLiteStore:
    """The viewer's tests run against both stores: a SQLite file, and a PostgreSQL
    database of a throwaway cluster (tests/pgserver.py)."""
    if request.param == "postgres":
        from tracemux.destinations.postgres import PostgresStore

        return PostgresStore(request.getfixturevalue("pg_dsn"))  # type: ignore[return-value]
    return SQLiteStore(tmp_path / "traces.db")


def _ui_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


# -- runs list --------------------------------------------------------------------------


def test_runs_newest_first_with_counts(service: TracingService, ui_server: UIServer) -> None:
    rec = fill_store(service, agent_runs=3)
    data = get_json(ui_server.url + "api/runs")
    assert data["total"] == 5
    assert data["limit"] == 50 and (data["sort"], data["order"]) == ("start", "desc")
    assert data["next"] is None and data["prev"] is None  # one page
    assert [r["run_id"] for r in data["runs"]] == rec.newest_first
    starts = [r["start_ns"] for r in data["runs"]]
    assert starts == sorted(starts, reverse=True)
    failed = data["runs"][1]
    assert failed["status"] == "error"
    assert failed["error"]["type"] == "ValueError"
    assert "traceback" not in failed["error"]
    agent = data["runs"][-1]
    assert agent["name"] == "support-agent"
    assert agent["status"] == "partial"  # its WebSearch tool failed, the run went on
    assert agent["span_count"] == 9
    assert agent["error_count"] == 1
    assert agent["input_tokens"] == 412 + 9 and agent["output_tokens"] == 188
    assert agent["user_id"] == "alice" and agent["session_id"] == "s-0"
    assert agent["duration_ms"] > 0
    # list items stay small: values are fetched per run
    for key in ("inputs", "outputs", "metadata"):
        assert key not in agent


def test_runs_pagination(service: TracingService, ui_server: UIServer) -> None:
    rec = fill_store(service, agent_runs=4)
    newest_first = rec.newest_first
    page1 = get_json(ui_server.url + "api/runs?limit=2&offset=0")
    page2 = get_json(ui_server.url + "api/runs?limit=2&offset=2")
    page3 = get_json(ui_server.url + "api/runs?limit=2&offset=4")
    assert [r["run_id"] for r in page1["runs"]] == newest_first[:2]
    assert [r["run_id"] for r in page2["runs"]] == newest_first[2:4]
    assert [r["run_id"] for r in page3["runs"]] == newest_first[4:6]
    assert page1["total"] == page2["total"] == page3["total"] == 6
    # limits past the maximum are clamped, not refused
    assert get_json(ui_server.url + "api/runs?limit=100000")["limit"] == 500


def test_keyset_pages_in_every_sort_order(service: TracingService, ui_server: UIServer) -> None:
    fill_store(service, agent_runs=6)  # 8 runs

    def walk(query: str, direction: str = "next") -> list[dict]:
        seen, url = [], f"{ui_server.url}api/runs?limit=3&{query}"
        data = get_json(url)
        while True:
            seen += data["runs"]
            cursor = data[direction]
            if cursor is None:
                return seen
            data = get_json(f"{url}&{'after' if direction == 'next' else 'before'}={cursor}")

    newest = [r["run_id"] for r in get_json(ui_server.url + "api/runs")["runs"]]
    assert [r["run_id"] for r in walk("")] == newest
    for sort, key in (
        ("duration", lambda r: r["duration_ms"]),
        ("tokens", lambda r: r["input_tokens"] + r["output_tokens"]),
        ("spans", lambda r: r["span_count"]),
    ):
        for order in ("asc", "desc"):
            runs = walk(f"sort={sort}&order={order}")
            assert sorted(r["run_id"] for r in runs) == sorted(newest), (sort, order)
            keys = [key(r) for r in runs]
            assert keys == sorted(keys, reverse=order == "desc"), (sort, order)
    # backwards from the last page gives the same runs, page by page
    last = get_json(ui_server.url + "api/runs?limit=3")
    while last["next"]:
        last = get_json(f"{ui_server.url}api/runs?limit=3&after={last['next']}")
    back, data = [], last
    while True:
        back = data["runs"] + back
        if data["prev"] is None:
            break
        data = get_json(f"{ui_server.url}api/runs?limit=3&before={data['prev']}")
    assert [r["run_id"] for r in back] == newest


def test_runs_filters(service: TracingService, ui_server: UIServer) -> None:
    rec = fill_store(service, agent_runs=4)
    base = ui_server.url + "api/runs"

    def ids(query: str) -> set[str]:
        data = get_json(f"{base}?{query}")
        assert data["total"] == len(data["runs"])
        return {r["run_id"] for r in data["runs"]}

    assert ids("search=support") == set(rec.agent_runs)
    assert ids("search=" + quote("<img")) == {rec.xss_run}
    assert ids("search=" + rec.xss_run[:8]) == {rec.xss_run}  # run id prefix
    assert ids("search=nothing-like-this") == set()
    assert ids("user=alice") == {rec.agent_runs[0], rec.agent_runs[2]}
    assert ids("user=bob&session=s-1") == {rec.agent_runs[1], rec.agent_runs[3]}
    assert ids("session=s-x") == {rec.xss_run}
    assert ids("status=ok") == {rec.xss_run}  # the agent runs have a failed tool call
    assert ids("status=error") == {*rec.agent_runs, rec.failed_run}
    assert ids("status=running") == set()
    assert ids("status=ok&user=mallory&search=probe") == {rec.xss_run}
    assert ids("user=&search=") == set(rec.newest_first)  # blank means no filter


def test_running_runs_show_and_finish(service: TracingService, ui_server: UIServer) -> None:
    with service.trace_run("long flow", user_id="u") as run:
        with run.span("step", kind="tool"):
            pass
        assert service.flush(10)
        data = get_json(ui_server.url + "api/runs?status=running")
        assert [r["run_id"] for r in data["runs"]] == [run.run_id]
        assert data["runs"][0]["duration_ms"] is None
        spans = get_json(ui_server.url + f"api/runs/{run.run_id}/spans")["spans"]
        assert [s["name"] for s in spans] == ["step"]  # the root span ends with the run
    assert service.flush(10)
    assert get_json(ui_server.url + "api/runs?status=running")["runs"] == []
    assert get_json(ui_server.url + f"api/runs/{run.run_id}")["status"] == "ok"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=abc", "limit must be an integer"),
        ("limit=0", "limit must be at least 1"),
        ("offset=-1", "offset must be at least 0"),
        ("status=bogus", "status must be one of"),
        ("search=" + "a" * 60_000, "search is longer than 1000 characters"),
        ("user=" + "u" * 2000, "user is longer than 1000 characters"),
        ("offset=" + str(10**30), "offset must be an integer between 0 and"),
        ("offset=1000000001", "offset must be at most 1000000000"),
        ("limit=" + "9" * 5000, "limit must be an integer between 1 and"),
        ("sort=name", "sort must be one of start, duration, tokens, spans"),
        ("order=sideways", "order must be asc or desc"),
        ("after=1.2.3", "cursor is malformed"),
        ("after=" + "9" * 25 + ".1", "cursor is malformed"),
        ("after=1.1&before=1.1", "give after or before, not both"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else v,
)
def test_bad_query_is_400(ui_server: UIServer, query: str, message: str) -> None:
    status, headers, body = get(ui_server.url + "api/runs?" + query)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert message in json.loads(body)["error"]


def test_offset_past_the_end_keeps_the_true_total(
    service: TracingService, ui_server: UIServer
) -> None:
    fill_store(service, agent_runs=1)
    data = get_json(ui_server.url + "api/runs?offset=1000000")
    assert data["runs"] == [] and data["total"] == 3


def test_status_filters_find_every_run_where_something_failed(
    service: TracingService, ui_server: UIServer
) -> None:
    rec = fill_store(service, agent_runs=2)  # agent runs: a tool fails, the run goes on

    def ids(status: str) -> set[str]:
        return {r["run_id"] for r in get_json(f"{ui_server.url}api/runs?status={status}")["runs"]}

    assert ids("error") == {*rec.agent_runs, rec.failed_run}
    assert ids("partial") == set(rec.agent_runs)
    assert ids("failed") == {rec.failed_run}
    assert ids("ok") == {rec.xss_run}
    statuses = {r["run_id"]: r["status"] for r in get_json(ui_server.url + "api/runs")["runs"]}
    assert statuses[rec.agent_runs[0]] == "partial"
    assert statuses[rec.failed_run] == "error"


def test_sessions_and_a_sessions_runs_in_order(
    service: TracingService, ui_server: UIServer
) -> None:
    rec = fill_store(service, agent_runs=4)  # alice s-0 (runs 0, 2), bob s-1 (runs 1, 3)
    chat = record_chat_session(service)
    assert service.flush(10)
    data = get_json(ui_server.url + "api/sessions")
    assert [s["session_id"] for s in data["sessions"]] == ["s-chat", "s-x", "s-9", "s-1", "s-0"]
    assert data["total"] == 5
    s0 = data["sessions"][-1]
    assert (s0["user_id"], s0["runs"], s0["runs_with_errors"]) == ("alice", 2, 2)
    assert s0["input_tokens"] == 2 * (412 + 9) and s0["output_tokens"] == 2 * 188
    assert s0["cost"]["usd"] > 0 and s0["cost"]["unpriced"] == 1  # the embedding model
    assert [
        s["session_id"] for s in get_json(ui_server.url + "api/sessions?user=bob")["sessions"]
    ] == ["s-1"]

    session = get_json(ui_server.url + "api/sessions/s-0")
    assert [r["run_id"] for r in session["runs"]] == [rec.agent_runs[0], rec.agent_runs[2]]
    assert session["runs"][0]["inputs"] == {"question": "How are API keys rotated?"}
    chat_session = get_json(ui_server.url + "api/sessions/s-chat")
    assert [r["run_id"] for r in chat_session["runs"]] == chat
    assert chat_session["user_id"] == "erin"
    status, _, _ = get(ui_server.url + "api/sessions/nope")
    assert status == 404
    status, _, _ = get(ui_server.url + "api/sessions/" + "x" * 2000)
    assert status == 400


# -- one run ----------------------------------------------------------------------------


def test_run_and_spans(service: TracingService, ui_server: UIServer, store: SQLiteStore) -> None:
    rec = fill_store(service, agent_runs=1)
    run_id = rec.agent_runs[0]
    run = get_json(ui_server.url + f"api/runs/{run_id}")
    assert run["run_id"] == run_id
    assert run["inputs"] == {"question": "How are API keys rotated?"}
    assert run["tags"] == ["rag", "prod"] and run["project"] == "helpdesk"
    # a unique prefix of the id is enough
    assert get_json(ui_server.url + f"api/runs/{run_id[:13]}")["run_id"] == run_id

    payload = get_json(ui_server.url + f"api/runs/{run_id}/spans")
    assert payload["run_id"] == run_id
    spans = payload["spans"]
    stored = store.spans(run_id)
    assert [s["span_id"] for s in spans] == [s.span_id for s in stored]
    by_name = {s["name"]: s for s in spans}
    root = by_name["support-agent"]
    assert root["parent_id"] is None and root["offset_ms"] == 0
    assert by_name["Planner"]["parent_id"] == root["span_id"]
    assert by_name["Retriever"]["parent_id"] == by_name["Planner"]["span_id"]
    assert by_name["Embed query"]["parent_id"] == by_name["Retriever"]["span_id"]
    assert all(s["offset_ms"] >= 0 for s in spans)
    failed = by_name["WebSearch"]
    assert failed["status"] == "error"
    assert failed["error"]["type"] == "SearchTimeout"
    assert "Traceback (most recent call last)" in failed["error"]["traceback"]
    llm = by_name["ChatModel"]
    assert llm["model"] == "gpt-4o-mini"
    assert llm["usage"] == {"input_tokens": 412, "output_tokens": 188, "total_tokens": 600}
    assert by_name["Retriever"]["logs"][0]["message"] == "found 3 documents"


def test_unknown_run_is_404(ui_server: UIServer, service: TracingService) -> None:
    fill_store(service, agent_runs=1)
    for path in ("api/runs/no-such-run", "api/runs/no-such-run/spans"):
        status, headers, body = get(ui_server.url + path)
        assert status == 404
        assert json.loads(body) == {"error": "run not found"}
        assert headers["Content-Type"] == "application/json"


def test_run_ids_with_odd_characters(service: TracingService, ui_server: UIServer) -> None:
    run_id = "tenant/a b?c#d%"
    with service.trace_run(XSS_RUN, run_id=run_id) as run, run.span(XSS_SPAN, kind="tool"):
        pass
    assert service.flush(10)
    quoted = quote(run_id, safe="")
    assert get_json(ui_server.url + f"api/runs/{quoted}")["name"] == XSS_RUN
    spans = get_json(ui_server.url + f"api/runs/{quoted}/spans")["spans"]
    assert {s["name"] for s in spans} == {XSS_RUN, XSS_SPAN}
    status, _, body = get(ui_server.url + f"runs/{quoted}")
    assert status == 200 and body.startswith(b"<!doctype html>")


def test_missing_store_is_empty_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "traces.db"
    with UIServer(SQLiteStore(path), port=0) as server:
        assert get_json(server.url + "api/runs") == {
            "runs": [],
            "total": 0,
            "limit": 50,
            "sort": "start",
            "order": "desc",
            "next": None,
            "prev": None,
        }
        assert get(server.url + "api/runs/abc")[0] == 404
        info = get_json(server.url + "api/info")
        assert info == {
            "db": str(path),
            "exists": False,
            "version": info["version"],
            "token": server.csrf_token,
            "can_delete": True,
        }
    assert not path.exists() and not path.parent.exists()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the file's bytes
def test_reads_never_write(service: TracingService, store: SQLiteStore, tmp_path: Path) -> None:
    rec = fill_store(service, agent_runs=2)
    service.shutdown(10)  # the exporter closes: nothing else writes the file now
    db = Path(store.path)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with UIServer(store, port=0) as server:
        get_json(server.url + "api/runs?search=support&status=ok")
        get_json(server.url + f"api/runs/{rec.agent_runs[0]}")
        get_json(server.url + f"api/runs/{rec.agent_runs[0]}/spans")
        get_json(server.url + "api/info")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


# -- page, static files, headers --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("", "text/html; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("runs/some-run-id", "text/html; charset=utf-8"),
        ("runs/some-run-id?span=00ff", "text/html; charset=utf-8"),
        ("static/app.js", "text/javascript; charset=utf-8"),
        ("static/app.css", "text/css; charset=utf-8"),
        ("api/runs", "application/json"),
        ("api/info", "application/json"),
    ],
)
def test_routes_and_security_headers(ui_server: UIServer, path: str, content_type: str) -> None:
    status, headers, body = get(ui_server.url + path)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert int(headers["Content-Length"]) == len(body) > 0
    for name, value in SECURITY_HEADERS:
        assert headers[name] == value
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "static/server.py",
        "static/../server.py",
        "static/%2e%2e/server.py",
        "static/index.html/x",
        "api/nope",
        "api/runs/a/b/c",
        "runs/a/b",
    ],
)
def test_unknown_paths_are_404(ui_server: UIServer, path: str) -> None:
    status, headers, body = get(ui_server.url + path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"tracemux" not in body  # no source, no paths


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
def test_only_get_is_allowed(ui_server: UIServer, method: str) -> None:
    # (and POST to /api/runs/delete: see the tests of deleting below)
    for path in ("", "api/runs", "static/app.js", "api/runs/x"):
        status, headers, body = get(ui_server.url + path, method=method)
        assert status == 405, (method, path)
        assert headers["Allow"] == "GET"
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        if method != "HEAD":
            assert "read-only" in json.loads(body)["error"]


def _post_delete(server: UIServer, run_ids: object, **overrides: str | None) -> tuple[int, dict]:
    origin = f"http://127.0.0.1:{server.port}"
    headers = {
        "Origin": origin,
        "X-Tracemux-Token": server.csrf_token,
        "Content-Type": "application/json",
        **overrides,
    }
    req = urllib.request.Request(
        server.url + "api/runs/delete",
        data=json.dumps({"run_ids": run_ids}).encode(),
        method="POST",
        headers={k: v for k, v in headers.items() if v is not None},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_delete_needs_the_pages_origin_token_and_json(
    service: TracingService, ui_server: UIServer, store: SQLiteStore
) -> None:
    rec = fill_store(service, agent_runs=2)
    target = [rec.failed_run]
    refused = [
        ({"Origin": None}, "cross-origin request refused"),
        ({"Origin": "http://evil.example"}, "cross-origin request refused"),
        ({"Origin": "http://127.0.0.1:1"}, "cross-origin request refused"),
        ({"Origin": "null"}, "cross-origin request refused"),
        ({"X-Tracemux-Token": None}, "missing or wrong X-Tracemux-Token"),
        ({"X-Tracemux-Token": "guess"}, "missing or wrong X-Tracemux-Token"),
        ({"Content-Type": "text/plain"}, "the body must be application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "must be application/json"),
        ({"Host": "evil.example"}, "host not allowed"),
    ]
    for overrides, message in refused:
        status, body = _post_delete(ui_server, target, **overrides)
        assert (status, message in body["error"]) == (403, True), overrides
    assert store.run(rec.failed_run) is not None
    for bad in (None, [], "x", [1], ["x" * 2000], ["a"] * 501):
        status, body = _post_delete(ui_server, bad)
        assert status == 400 and "run_ids must be a list" in body["error"], bad
    status, body = _post_delete(ui_server, [rec.failed_run, "no-such-run"])
    assert (status, body) == (200, {"deleted": 1})
    assert store.run(rec.failed_run) is None and store.spans(rec.failed_run) == []
    assert store.count_runs() == 3


def test_a_read_only_viewer_deletes_nothing(service: TracingService, store: SQLiteStore) -> None:
    rec = fill_store(service, agent_runs=1)
    with UIServer(store, port=0, read_only=True) as server:
        info = get_json(server.url + "api/info")
        assert info["token"] is None and info["can_delete"] is False
        status, body = _post_delete(server, [rec.failed_run])
        assert (status, body["error"]) == (403, "this viewer is read-only")
    assert store.run(rec.failed_run) is not None


def test_export_downloads_selected_or_filtered_runs(
    service: TracingService, ui_server: UIServer
) -> None:
    rec = fill_store(service, agent_runs=2)
    status, headers, body = get(
        ui_server.url + f"api/export?run={rec.xss_run}&run={rec.failed_run}"
    )
    assert status == 200
    assert headers["Content-Disposition"] == 'attachment; filename="tracemux-runs.jsonl"'
    lines = [json.loads(li) for li in body.splitlines()]
    assert [li["run_id"] for li in lines if li["type"] == "run"] == [rec.xss_run, rec.failed_run]
    status, headers, body = get(ui_server.url + "api/export?format=otlp&status=error")
    assert status == 200 and "otlp" in headers["Content-Disposition"]
    trace_ids = {
        s["traceId"]
        for li in body.splitlines()
        for rs in json.loads(li)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }
    assert len(trace_ids) == 3  # the two agent runs and the failed run
    assert get(ui_server.url + "api/export?format=xml")[0] == 400


def test_host_header_must_be_loopback(ui_server: UIServer) -> None:
    """A page on another site that rebinds its name to 127.0.0.1 cannot read traces."""
    port = ui_server.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        status, _, body = get(ui_server.url + "api/runs", headers={"Host": host})
        assert status == 403, host
        assert json.loads(body) == {"error": "host not allowed"}
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert get(ui_server.url + "api/runs", headers={"Host": host})[0] == 200, host


def test_page_is_self_contained_and_never_builds_html_from_strings() -> None:
    static = resources.files("tracemux.ui") / "static"
    names = {p.name for p in static.iterdir()}
    assert {"index.html", "app.js", "app.css"} <= names
    html = (static / "index.html").read_text()
    # no asset from elsewhere: every src/href is a local path
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs)
    assert "<script>" not in html and "style=" not in html  # the CSP forbids inline code
    js = (static / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    css = (static / "app.css").read_text()
    for text in (html, js, css):
        assert "@import" not in text and "url(" not in text
        assert not re.search(r"https?://", text)


# -- threads and lifecycle --------------------------------------------------------------


@pytest.mark.threadleak(grace=2.0)
def test_threads_are_named_and_stop(store: SQLiteStore) -> None:
    server = UIServer(store, port=0)
    assert _ui_threads() == []
    server.start()
    # a client that connects and never sends a request keeps a request thread busy
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        get_json(server.url + "api/runs")
        deadline = time.monotonic() + 5
        while len(_ui_threads()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        names = {t.name for t in _ui_threads()}
        assert f"{THREAD_PREFIX}-server" in names
        assert any(n.startswith(f"{THREAD_PREFIX}-request-") for n in names)
        t0 = time.monotonic()
        assert server.stop(timeout=5)
        assert time.monotonic() - t0 < 3
    finally:
        idle.close()
    assert _ui_threads() == []
    assert server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.start()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_concurrent_requests(service: TracingService, ui_server: UIServer) -> None:
    rec = fill_store(service, agent_runs=2)
    errors: list[BaseException] = []
    urls = [
        ui_server.url + "api/runs",
        ui_server.url + f"api/runs/{rec.agent_runs[0]}/spans",
        ui_server.url + "static/app.js",
    ]

    def worker(i: int) -> None:
        try:
            for _ in range(10):
                assert get(urls[i % len(urls)])[0] == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_port_in_use_raises(ui_server: UIServer, store: SQLiteStore) -> None:
    with pytest.raises(OSError):
        UIServer(store, port=ui_server.port)


# -- the command ------------------------------------------------------------------------


def _start_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracemux", "ui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl+C" in line:
            return proc, lines
    proc.kill()
    proc.wait()
    raise AssertionError("tracemux ui did not start:\n" + "".join(lines))


@pytest.fixture
def cli_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
        env.update(PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
        return env

    return make


@pytest.mark.slow
def test_cli_serves_and_stops_on_ctrl_c(
    service: TracingService, store: SQLiteStore, cli_env: Callable[..., dict[str, str]]
) -> None:
    rec = fill_store(service, agent_runs=1)
    db = getattr(store, "dsn", store.path)  # a PostgreSQL store: its DSN, password and all
    proc, lines = _start_cli(["--port", "0"], cli_env(TRACEMUX_DB=db))
    try:
        out = "".join(lines)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", out)
        assert m, out
        assert int(m.group(1)) != 0
        assert f"store: {store.path}" in out
        assert "pg-test-secret" not in out  # a PostgreSQL store's password never shows
        url = m.group(0)
        assert get_json(url + "api/info")["db"] == store.path
        assert get_json(url + "api/runs")["total"] == 3
        assert get_json(url + f"api/runs/{rec.xss_run}")["name"] == XSS_RUN
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_cli_db_flag_and_busy_port(
    tmp_path: Path, ui_server: UIServer, cli_env: Callable[..., dict[str, str]]
) -> None:
    db = tmp_path / "other.db"
    proc, lines = _start_cli(["--db", str(db), "--port", "0"], cli_env(TRACEMUX_DB="/nonexistent"))
    try:
        out = "".join(lines)
        assert f"store: {db}" in out
        assert "does not exist yet" in out
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    busy = subprocess.run(
        [sys.executable, "-m", "tracemux", "ui", "--db", str(db), "--port", str(ui_server.port)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert busy.returncode == 1
    assert "cannot listen" in busy.stderr
