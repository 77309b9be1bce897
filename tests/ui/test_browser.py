"""End to end: the viewer in headless Chromium (Debian's ``chromium``), driven by Playwright.

The store is filled by ``tracemux demo --runs 30`` (flat RAG flows) plus a few recorded
here: nested agent flows with a failing tool, a failed run, and a run whose names and
values are markup. ``scripts/test.sh`` installs Chromium; Playwright's own browser
download is never used.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ui.conftest import (
    CHAT_QUESTIONS,
    CHAT_SESSION,
    CHROMIUM,
    CHROMIUM_ARGS,
    TOOL_ONLY_WORD,
    XSS_OUTPUT,
    XSS_RUN,
    XSS_SPAN,
    Recorded,
    fill_store,
    record_chat_session,
)
from tracemux import TracingService
from tracemux.cost import Cost, PriceTable, fmt_usd
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredSpan
from tracemux.destinations.stores import open_store
from tracemux.ui import UIServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.slow

DEMO_RUNS = 30


@dataclass
class E2E:
    """The filled store, what was recorded in it, and the server over it."""

    store: SQLiteStore
    rec: Recorded
    server: UIServer
    chat_runs: list[str]

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Tab:
    """A page, and what it did that a test may want to check."""

    page: playwright_api.Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _run_demo(db: Path | str) -> None:
    script = Path(sys.executable).with_name("tracemux")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "tracemux"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
    env["TRACEMUX_DB"] = str(db)
    done = subprocess.run(
        [*cmd, "demo", "--runs", str(DEMO_RUNS), "--concurrency", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def e2e(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """The viewer over each store: a SQLite file, and a PostgreSQL database of a
    throwaway cluster (tests/pgserver.py); both filled the same way."""
    if request.param == "postgres":
        db: Path | str = request.getfixturevalue("pg_cluster").new_database()
    else:
        db = tmp_path_factory.mktemp("ui-e2e") / "traces.db"
    _run_demo(db)
    store = open_store(db)
    svc = TracingService([store])
    try:
        rec = fill_store(svc, agent_runs=3, pace=1.0)
        chat = record_chat_session(svc)
        assert svc.flush(10)
    finally:
        svc.shutdown(10)
    server = UIServer(store, port=0).start()
    try:
        yield E2E(store, rec, server, chat)
    finally:
        assert server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} missing: scripts/test.sh installs Debian's chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pw = playwright_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def tab(browser: playwright_api.Browser, e2e: E2E) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    tab = Tab(page)

    def on_dialog(dialog: playwright_api.Dialog) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(msg: playwright_api.ConsoleMessage) -> None:
        if msg.type == "error":
            tab.console_errors.append(msg.text)

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    page.on("console", on_console)
    page.on("request", lambda req: tab.requests.append(req.url))
    try:
        yield tab
    finally:
        context.close()
    # nothing loaded from anywhere but the viewer; no script error; no CSP violation
    assert tab.requests and all(u.startswith(e2e.url) for u in tab.requests), tab.requests
    assert tab.errors == []
    assert not [e for e in tab.console_errors if "Content Security Policy" in e]
    assert tab.dialogs == []


def _tree_order(spans: list[StoredSpan]) -> list[tuple[str, str | None, int]]:
    """(span id, parent id, depth) depth first, children in start order."""
    ids = {s.span_id for s in spans}
    kids: dict[str | None, list[StoredSpan]] = {}
    for s in spans:
        kids.setdefault(s.parent_id if s.parent_id in ids else None, []).append(s)
    out: list[tuple[str, str | None, int]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in kids.get(parent, []):
            out.append((s.span_id, s.parent_id, depth))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    return out


def _open_run(tab: Tab, e2e: E2E, run_id: str, span_id: str | None = None) -> None:
    suffix = f"?span={span_id}" if span_id else ""
    tab.page.goto(f"{e2e.url}runs/{run_id}{suffix}")
    expect(tab.page.locator(".wf-row[data-span-id]")).to_have_count(len(e2e.store.spans(run_id)))


# -- the list ---------------------------------------------------------------------------


def test_list_shows_the_demo_runs(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    total = e2e.store.count_runs()
    assert total == DEMO_RUNS + 7
    expect(page.locator("#run-count")).to_have_text(f"{total} runs")
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(total)
    newest = [r.run_id for r in e2e.store.runs(total)]
    assert [rows.nth(i).get_attribute("data-run-id") for i in range(total)] == newest
    expect(page.locator("tr.run-row a.run-link", has_text="RAG flow")).to_have_count(DEMO_RUNS)
    expect(page.locator("#page-info")).to_have_text(f"1–{total} of {total}")
    expect(page.locator("#prev")).to_be_disabled()
    expect(page.locator("#next")).to_be_disabled()
    failed = page.locator(f'tr.run-row[data-run-id="{e2e.rec.failed_run}"]')
    expect(failed.locator(".pill")).to_have_text("error")
    agent = page.locator(f'tr.run-row[data-run-id="{e2e.rec.agent_runs[0]}"]')
    expect(agent.locator("td").nth(4)).to_have_text("9 ✕1")  # spans, one failed
    expect(agent.locator("td").nth(5)).to_have_text("609")  # tokens in + out
    expect(agent.locator("td.c-models")).to_have_text("gpt-4o-mini, text-embedding-3-small")
    # gpt-4o-mini's price from genai-prices; the embedding model has none there: "+"
    chat = PriceTable().cost("gpt-4o-mini", 412, 188)
    assert chat is not None and chat > 0
    expect(agent.locator("td.c-cost")).to_have_text(fmt_usd(Cost(chat, 1)))
    expect(agent.locator("td.c-cost")).to_have_text(re.compile(r"^\$0\.000\d+\+$"))
    expect(agent.locator("td").nth(8)).to_have_text("alice")
    # date and time, in the browser's time zone (the test's context sets none: UTC)
    start = datetime.datetime.fromtimestamp(e2e.store.run(e2e.rec.agent_runs[0]).start_ns / 1e9)
    expect(agent.locator("td.c-time")).to_have_text(start.strftime("%Y-%m-%d %H:%M:%S"))
    expect(page.locator("#store")).to_have_text(e2e.store.path)


def test_filters(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(e2e.store.count_runs())

    page.locator("#f-search").fill("support")
    expect(rows).to_have_count(3)
    expect(page.locator("tr.run-row a.run-link")).to_have_text(["support-agent"] * 3)
    expect(page).to_have_url(re.compile(r"\?search=support$"))
    expect(page.locator("#run-count")).to_have_text("3 runs")

    page.locator("#f-clear").click()
    expect(rows).to_have_count(e2e.store.count_runs())

    # "Has errors": every run with a failed span, whether the run failed or went on
    page.locator("#f-status").select_option("error")
    with_errors = [r for r in e2e.store.runs(1000) if r.error_count]
    assert len(with_errors) > 4  # the 3 agent runs, the failed run, failing demo runs
    expect(rows).to_have_count(len(with_errors))
    for i in range(rows.count()):
        assert rows.nth(i).get_attribute("data-status") in ("error", "partial")
        expect(rows.nth(i).locator(".err-count")).to_be_visible()
    page.locator("#f-status").select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", e2e.rec.failed_run)
    page.locator("#f-status").select_option("")

    # a user's chip filters by that user
    page.locator("tr.run-row button.chip", has_text="bob").first.click()
    expect(page.locator("#f-user")).to_have_value("bob")
    expect(rows).to_have_count(e2e.store.count_runs(user_id="bob"))
    expect(page.locator("tr.run-row td.c-user")).to_have_text(["bob"] * rows.count())
    expect(page).to_have_url(re.compile(r"\?user=bob$"))

    page.locator("#f-user").fill("")
    page.locator("#f-session").fill("s-x")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a.run-link")).to_have_text(XSS_RUN)

    page.locator("#f-session").fill("")
    page.locator("#f-search").fill("no run is called this")
    expect(rows).to_have_count(0)
    expect(page.locator("#empty")).to_have_text("No runs match these filters.")

    # a filtered list's URL is shareable too
    page.goto(e2e.url + "?status=error")
    expect(page.locator("#f-status")).to_have_value("error")
    expect(rows).to_have_count(e2e.store.count_runs(status="error"))


def test_search_finds_a_word_only_inside_a_tool_output(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    page.locator("#f-search").fill(TOOL_ONLY_WORD)
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", e2e.chat_runs[0])
    expect(page.locator("#run-count")).to_have_text("1 run")
    # an exception's type finds the runs where it was raised
    page.locator("#f-search").fill("SearchTimeout")
    expect(rows).to_have_count(len(e2e.rec.agent_runs))
    expect(rows.locator("a.run-link")).to_have_text(["support-agent"] * 3)


def test_sortable_columns_and_keyset_pages(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    total = e2e.store.count_runs()
    page.goto(e2e.url + "?limit=10")
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(10)
    expect(page.locator("#page-info")).to_have_text(f"1–10 of {total}")
    expect(page.locator("#prev")).to_be_disabled()

    def shown() -> list[str]:
        return [rows.nth(i).get_attribute("data-run-id") or "" for i in range(rows.count())]

    # walk every page forward: all runs once, newest first
    seen = shown()
    while page.locator("#next").is_enabled():
        first = rows.first.get_attribute("data-run-id") or ""
        page.locator("#next").click()
        expect(rows.first).not_to_have_attribute("data-run-id", first)
        seen += shown()
    assert seen == [r.run_id for r in e2e.store.runs(total)]
    expect(page.locator("#page-info")).to_have_text(f"31–{total} of {total}")
    page.locator("#prev").click()
    expect(page.locator("#page-info")).to_have_text(f"21–30 of {total}")
    assert shown() == seen[20:30]
    expect(page).to_have_url(re.compile(r"before=\d+\.\d+"))

    # sort by duration, longest first, then shortest first
    page.goto(e2e.url)
    header = page.locator("th.col-duration button")
    header.click()
    expect(page.locator("th.col-duration")).to_have_attribute("aria-sort", "descending")
    expect(page).to_have_url(re.compile(r"\?sort=duration$"))
    by_duration = sorted(e2e.store.runs(total), key=lambda r: -(r.duration_ms or -1))
    expect(rows.first).to_have_attribute("data-run-id", by_duration[0].run_id)
    assert shown() == [r.run_id for r in by_duration]
    header.click()
    expect(page.locator("th.col-duration")).to_have_attribute("aria-sort", "ascending")
    expect(rows.first).to_have_attribute("data-run-id", by_duration[-1].run_id)
    # tokens: the agent runs (609 each) lead
    page.locator("th.col-tokens button").click()
    expect(rows.first.locator("a.run-link")).to_have_text("support-agent")


# -- a run ------------------------------------------------------------------------------


def test_click_opens_a_run_with_a_nested_waterfall(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    run_id = e2e.rec.agent_runs[1]
    page.goto(e2e.url)
    page.locator(f'tr.run-row[data-run-id="{run_id}"] a.run-link').click()
    expect(page).to_have_url(f"{e2e.url}runs/{run_id}")
    expect(page.locator("#run-name")).to_have_text("support-agent")
    spans = e2e.store.spans(run_id)
    rows = page.locator(".wf-row[data-span-id]")
    expect(rows).to_have_count(len(spans))
    got = rows.evaluate_all(
        """rows => rows.map(r => {
            const bars = r.querySelectorAll('.wf-bar');
            const box = bars[0].getBoundingClientRect();
            return {
                id: r.dataset.spanId, parent: r.dataset.parentId || null,
                depth: Number(r.dataset.depth), kind: r.dataset.kind,
                name: r.querySelector('.wf-name').textContent,
                bars: bars.length, left: box.left, right: box.right,
                kindClass: bars[0].classList.contains('kind-' + r.dataset.kind),
                error: r.classList.contains('is-error'),
            };
        })"""
    )
    # one bar per span, depth first, nested by parent
    assert [(g["id"], g["parent"], g["depth"]) for g in got] == _tree_order(spans)
    assert all(g["bars"] == 1 and g["kindClass"] for g in got)
    by_id = {s.span_id: s for s in spans}
    assert [g["name"] for g in got] == [by_id[g["id"]].name for g in got]
    depth = {g["name"]: g["depth"] for g in got}
    assert depth == {
        "support-agent": 0,
        "Planner": 1,
        "Retriever": 2,
        "Embed query": 3,
        "WebSearch": 2,
        "Prompt": 1,
        "ChatModel": 1,
        "OutputParser": 1,
        "Guardrail": 1,
    }
    assert [g["name"] for g in got if g["error"]] == ["WebSearch"]
    # bars are placed by time: a child's bar lies within its parent's, siblings in order
    box = {g["id"]: g for g in got}
    for g in got:
        if g["parent"]:
            parent = box[g["parent"]]
            assert parent["left"] - 1 <= g["left"] <= g["right"] <= parent["right"] + 1, g
    top = [g for g in got if g["depth"] == 1]
    assert [g["left"] for g in top] == sorted(g["left"] for g in top)
    # the run itself is selected first
    expect(page.locator(".wf-row.selected .wf-name")).to_have_text("support-agent")
    expect(page.locator("#d-title")).to_have_text("support-agent")


def test_demo_run_opens(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    demo = e2e.store.runs(1, search="RAG flow")[0]
    page.goto(e2e.url)
    page.locator(f'tr.run-row[data-run-id="{demo.run_id}"] td.c-time').click()  # row click
    expect(page).to_have_url(f"{e2e.url}runs/{demo.run_id}")
    expect(page.locator(".wf-row[data-span-id]")).to_have_count(demo.span_count)
    expect(page.locator('.wf-row[data-depth="1"]')).to_have_count(demo.span_count - 1)
    page.locator("a.back").click()
    expect(page).to_have_url(e2e.url)
    expect(page.locator("tr.run-row")).to_have_count(e2e.store.count_runs())


def test_selecting_the_failing_span_shows_its_error(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    run_id = e2e.rec.agent_runs[0]
    _open_run(tab, e2e, run_id)
    failing = page.locator('.wf-row[data-status="error"]')
    expect(failing).to_have_count(1)
    expect(failing.locator(".err-mark")).to_be_visible()
    failing.click()
    span_id = failing.get_attribute("data-span-id")
    expect(page).to_have_url(f"{e2e.url}runs/{run_id}?span={span_id}")
    expect(page.locator("#d-title")).to_have_text("WebSearch")
    error = page.locator("#d-error")
    expect(error).to_be_visible()
    expect(error.locator(".err-title")).to_have_text(
        "SearchTimeout: web search timed out after 2.0 s"
    )
    expect(error.locator("pre")).to_contain_text("Traceback (most recent call last)")
    expect(error.locator("pre")).to_contain_text('raise SearchTimeout("web search timed out')
    expect(page.locator(".d-logs .log-msg")).to_have_text(["retrying once"])

    # the LLM call: model, usage, and its long output folded
    page.locator(".wf-row[data-kind='llm']").click()
    expect(page.locator("#d-title")).to_have_text("ChatModel")
    expect(page.locator("#d-error")).to_have_count(0)
    expect(page.locator(".facts")).to_contain_text("gpt-4o-mini")
    expect(page.locator(".facts")).to_contain_text("412 in · 188 out · 600 total")
    # an LLM call shows as a chat first; its raw values are one click away
    expect(page.locator("#chat .msg-user .msg-text")).to_have_text("How are API keys rotated?")
    page.locator("#raw-toggle").click()
    outputs = page.locator(".d-outputs")
    content = outputs.locator(".j-entry", has=page.locator(".j-key", has_text="content"))
    expect(content.locator(".fold-btn")).to_contain_text("more characters")
    folded = len(content.locator(".j-string").text_content() or "")
    content.locator(".fold-btn").click()
    expect(content.locator(".fold-btn")).to_have_text("show less")
    assert len(content.locator(".j-string").text_content() or "") > folded
    # collapsible: the messages array in the inputs closes and opens
    summary = page.locator(".d-inputs summary", has=page.locator(".j-key", has_text="messages"))
    node = summary.locator("xpath=..")
    expect(node).to_have_attribute("open", "")
    summary.click()
    expect(node).not_to_have_attribute("open", "")
    summary.click()
    expect(node.locator(".j-key", has_text="role")).to_be_visible()

    # arrow keys move the selection
    page.locator("#waterfall").press("ArrowDown")
    expect(page.locator("#d-title")).to_have_text("OutputParser")


def test_markup_in_names_and_values_renders_as_text(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    link = page.locator(f'tr.run-row[data-run-id="{e2e.rec.xss_run}"] a.run-link')
    expect(link).to_have_text(XSS_RUN)
    link.click()
    expect(page.locator("#run-name")).to_have_text(XSS_RUN)
    name = page.locator(".wf-name", has_text=XSS_SPAN)
    expect(name).to_be_visible()
    expect(name).to_have_text(XSS_SPAN)
    page.locator(".wf-row", has=name).click()
    expect(page.locator("#d-title")).to_have_text(XSS_SPAN)
    expect(page.locator(".d-outputs .j-string")).to_have_text(XSS_OUTPUT)
    expect(page.locator(".d-inputs .j-string")).to_have_text(XSS_OUTPUT)
    expect(page.locator(".d-logs .log-msg")).to_have_text([XSS_SPAN])
    # nothing was parsed as markup: one script (the app's), no image, no dialog
    assert page.evaluate("document.scripts.length") == 1
    assert page.evaluate("document.images.length") == 0
    expect(page.locator("#app script, #app img")).to_have_count(0)
    assert page.title() == f"{XSS_RUN} · tracemux"
    page.wait_for_timeout(300)
    assert tab.dialogs == []


def test_a_runs_url_opens_that_run_and_span(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    run_id = e2e.rec.agent_runs[2]
    spans = {s.name: s for s in e2e.store.spans(run_id)}
    failing = spans["WebSearch"].span_id
    _open_run(tab, e2e, run_id, failing)
    expect(page.locator("#run-name")).to_have_text("support-agent")
    expect(page.locator(f'.wf-row[data-span-id="{failing}"]')).to_have_class(re.compile("selected"))
    expect(page.locator("#d-title")).to_have_text("WebSearch")
    expect(page.locator("#d-error")).to_be_visible()
    # a prefix of the run id works too, and the browser's back button returns
    page.goto(f"{e2e.url}runs/{run_id[:8]}")
    expect(page.locator("#run-name")).to_have_text("support-agent")
    page.go_back()
    expect(page.locator("#d-title")).to_have_text("WebSearch")
    page.goto(f"{e2e.url}runs/no-such-run")
    expect(page.locator("#run-head h1")).to_have_text("Run not found")


# -- sessions and the chat view ---------------------------------------------------------


def test_sessions_list_and_a_session_as_a_conversation(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    page.locator(".nav a", has_text="Sessions").click()
    expect(page).to_have_url(e2e.url + "sessions")
    rows = page.locator("tr.session-row")
    sessions = e2e.store.sessions(100)
    expect(rows).to_have_count(len(sessions))
    expect(page.locator("#session-count")).to_have_text(f"{len(sessions)} sessions")
    # most recently active first: the chat session was recorded last
    expect(rows.first).to_have_attribute("data-session-id", CHAT_SESSION)
    chat_row = rows.first
    expect(chat_row.locator("td.c-user")).to_have_text("erin")
    expect(chat_row.locator("td.c-runs")).to_have_text("2")
    cost = PriceTable().total([("gpt-4o-mini", 40 + 80 + 41 + 81, 12 + 20 + 12 + 20)])
    expect(chat_row.locator("td.c-cost")).to_have_text(fmt_usd(cost))
    agents = page.locator('tr.session-row[data-session-id="s-0"]')
    expect(agents.locator("td.c-errors")).to_have_text("2 of 2")  # both agent runs: a tool failed

    chat_row.locator("a.session-link").click()
    expect(page).to_have_url(f"{e2e.url}sessions/{CHAT_SESSION}")
    expect(page.locator("#session-name")).to_have_text(CHAT_SESSION)
    expect(page.locator("#session-runs")).to_have_text("2")
    expect(page.locator("#session-cost")).to_have_text(fmt_usd(cost))
    turns = page.locator("article.turn")
    expect(turns).to_have_count(2)
    # the turns in the order they happened, each the user's question then the answer
    assert [turns.nth(i).get_attribute("data-run-id") for i in range(2)] == e2e.chat_runs
    for i, question in enumerate(CHAT_QUESTIONS):
        expect(turns.nth(i).locator(".msg-user .msg-text")).to_have_text(question)
    expect(turns.nth(0).locator(".msg-assistant .msg-text")).to_have_text("Paris: sunny, 21 C.")
    expect(turns.nth(1).locator(".msg-assistant .msg-text")).to_have_text(
        "Tomorrow in Paris: rain, 14 C."
    )
    # a turn opens its run, whose session links back here
    turns.nth(1).locator("a.run-link").click()
    expect(page).to_have_url(f"{e2e.url}runs/{e2e.chat_runs[1]}")
    page.locator("#run-session").click()
    expect(page).to_have_url(f"{e2e.url}sessions/{CHAT_SESSION}")
    page.goto(e2e.url + "sessions/no-such-session")
    expect(page.locator("#session-head h1")).to_have_text("Session not found")


def test_llm_span_reads_as_a_chat_with_the_raw_json_one_click_away(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    run_id = e2e.chat_runs[1]
    answer = next(s for s in e2e.store.spans(run_id) if s.name == "Answer LLM")
    _open_run(tab, e2e, run_id, answer.span_id)
    expect(page.locator("#d-title")).to_have_text("Answer LLM")
    chat = page.locator("#chat")
    expect(chat).to_be_visible()
    msgs = chat.locator(".msg")
    roles = [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    expect(msgs).to_have_count(len(roles))
    assert [msgs.nth(i).get_attribute("data-role") for i in range(len(roles))] == roles
    expect(msgs.nth(1).locator(".msg-text")).to_have_text(CHAT_QUESTIONS[0])
    expect(msgs.nth(2).locator(".tool-name")).to_have_text("→ get_weather")
    expect(msgs.nth(2).locator(".tool-call")).to_contain_text('{"city": "Paris"}')
    expect(msgs.nth(3).locator(".msg-text")).to_have_text("sunny, 21 C")
    expect(msgs.last.locator(".msg-text")).to_have_text("Tomorrow in Paris: rain, 14 C.")
    expect(msgs.last.locator(".msg-note")).to_have_text("output")
    expect(page.locator(".d-inputs")).to_be_hidden()
    # one click to the raw JSON, one back
    page.locator("#raw-toggle").click()
    expect(chat).to_be_hidden()
    expect(page.locator(".d-inputs")).to_be_visible()
    expect(page.locator(".d-outputs .j-string")).to_have_text(
        ["assistant", "Tomorrow in Paris: rain, 14 C."]
    )
    page.locator("#raw-toggle").click()
    expect(chat).to_be_visible()
    # a span that is not an LLM call has no chat view
    page.locator(".wf-row[data-kind='tool']").click()
    expect(page.locator("#d-title")).to_have_text("get_weather")
    expect(page.locator("#chat")).to_have_count(0)
    expect(page.locator(".d-outputs")).to_be_visible()


# -- export and delete (they change the store: near the end) --------------------------


def test_export_selected_runs_re_imports_as_the_same_runs(
    tab: Tab, e2e: E2E, tmp_path: Path
) -> None:
    page = tab.page
    page.goto(e2e.url)
    picked = [e2e.rec.failed_run, *e2e.chat_runs]
    for run_id in picked:
        page.locator(f'tr.run-row[data-run-id="{run_id}"] input.select').check()
    expect(page.locator("#sel-info")).to_have_text("3 selected · ")
    for fmt, link in (("jsonl", "#export-jsonl"), ("otlp", "#export-otlp")):
        with page.expect_download() as download:
            page.locator(link).click()
        path = tmp_path / f"export.{fmt}"
        download.value.save_as(path)
        fresh = SQLiteStore(tmp_path / f"fresh-{fmt}.db")
        done = subprocess.run(
            [sys.executable, "-m", "tracemux", "import", "--db", fresh.path, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert sorted(r.run_id for r in fresh.runs(100)) == sorted(picked)
        for run_id in picked:
            assert fresh.run(run_id).to_dict() == e2e.store.run(run_id).to_dict(), fmt
            got = [(s.span_id, s.name, s.status, s.outputs) for s in fresh.spans(run_id)]
            want = [(s.span_id, s.name, s.status, s.outputs) for s in e2e.store.spans(run_id)]
            assert got == want, fmt


def test_delete_needs_an_explicit_confirmation(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    victims = [r.run_id for r in e2e.store.runs(2, search="RAG flow")]
    before = e2e.store.count_runs()
    page.goto(e2e.url)
    delete = page.locator("#delete-selected")
    expect(delete).to_be_disabled()
    for run_id in victims:
        page.locator(f'tr.run-row[data-run-id="{run_id}"] input.select').check()
    expect(delete).to_be_enabled()
    # cancel, Escape and a click beside the dialog delete nothing
    for dismiss in ("cancel", "escape", "outside"):
        delete.click()
        dialog = page.locator("#confirm[role=dialog]")
        expect(dialog).to_be_visible()
        expect(page.locator("#confirm-title")).to_have_text("Delete 2 runs?")
        expect(page.locator("#confirm-text")).to_contain_text("cannot be undone")
        if dismiss == "cancel":
            page.locator("#confirm-cancel").click()
        elif dismiss == "escape":
            page.keyboard.press("Escape")
        else:
            page.mouse.click(5, 5)
        expect(dialog).to_have_count(0)
        assert e2e.store.count_runs() == before
    delete.click()
    page.locator("#confirm-ok").click()
    expect(page.locator("tr.run-row")).to_have_count(before - 2)
    assert all(e2e.store.run(r) is None for r in victims)
    assert e2e.store.count_runs() == before - 2

    # one run, from its own page
    victim = e2e.store.runs(1, search="RAG flow")[0].run_id
    page.goto(f"{e2e.url}runs/{victim}")
    page.locator("#delete-run").click()
    expect(page.locator("#confirm-title")).to_have_text("Delete this run?")
    page.locator("#confirm-ok").click()
    expect(page).to_have_url(e2e.url)
    assert e2e.store.run(victim) is None


# -- live updates (last: it records more runs) ------------------------------------------


def test_list_and_run_update_while_recording(tab: Tab, e2e: E2E) -> None:
    page = tab.page
    page.goto(e2e.url)
    rows = page.locator("tr.run-row")
    before = e2e.store.count_runs()
    expect(rows).to_have_count(before)
    svc = TracingService([e2e.store])
    try:
        with svc.trace_run("live flow", user_id="dave") as run:
            assert svc.flush(10)
            row = page.locator(f'tr.run-row[data-run-id="{run.run_id}"]')
            expect(row).to_have_attribute("data-status", "running", timeout=8000)
            expect(row.locator(".pill")).to_have_text("running")
            expect(page.locator("#run-count")).to_have_text(f"{before + 1} runs")

            row.locator("a.run-link").click()
            expect(page.locator("#waterfall")).to_contain_text("No spans recorded yet")
            with run.span("first step", kind="tool") as step:
                step.set_outputs({"ok": True})
            assert svc.flush(10)
            expect(page.locator(".wf-row[data-span-id]")).to_have_count(1, timeout=8000)
            expect(page.locator("#live")).to_contain_text("live")
        assert svc.flush(10)
        expect(page.locator(".wf-row[data-span-id]")).to_have_count(2, timeout=8000)
        expect(page.locator(".wf-row[data-depth='1'] .wf-name")).to_have_text("first step")
        expect(page.locator("#live")).to_have_text("run finished")
        page.go_back()
        expect(page.locator(f'tr.run-row[data-run-id="{run.run_id}"]')).to_have_attribute(
            "data-status", "ok", timeout=8000
        )
    finally:
        svc.shutdown(10)
