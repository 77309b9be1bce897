"""The dashboard over runs of known times, durations, failures and tokens: its API's
numbers, and the page's charts (inline SVG, tooltips) in Chromium."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ui.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HOUR_NS,
    KnownRuns,
    get_json,
    import_known_runs,
)
from tracemux.cost import PriceTable, fmt_usd
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import DAY_NS
from tracemux.ui import UIServer
from tracemux.ui.dashboard import RANGES, percentile


def exact(durations_ns: list[int], p: float) -> float:
    """The nearest-rank percentile, in ms."""
    ordered = sorted(durations_ns)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1] / 1e6


@pytest.fixture
def known(store: SQLiteStore) -> KnownRuns:
    return import_known_runs(store, time.time_ns())


def test_dashboard_numbers(known: KnownRuns, ui_server: UIServer, store: SQLiteStore) -> None:
    data = get_json(ui_server.url + "api/dashboard?range=24h")
    assert (data["range"], data["step_ns"]) == ("24h", HOUR_NS)
    assert len(data["runs"]) == 24
    all_runs = [r for runs in known.runs.values() for r in runs]
    # runs and runs with errors per hour, as recorded
    for step in data["runs"]:
        inside = [r for r in all_runs if step["t"] <= r[0] < step["t"] + HOUR_NS]
        assert step["runs"] == len(inside)
        assert step["with_errors"] == sum(r[2] for r in inside)
    totals = data["totals"]
    assert totals["runs"] == 25 and totals["with_errors"] == 3  # 2 alpha (Fetch), 1 beta
    assert totals["error_rate"] == pytest.approx(3 / 25)
    assert totals["tokens"] == 20 * 150
    cost = PriceTable().cost("gpt-4o-mini", 2000, 1000)
    assert totals["cost"] == {"usd": pytest.approx(cost), "unpriced": 0}
    assert data["models"] == [
        {"model": "gpt-4o-mini", "calls": 20, "input_tokens": 2000, "output_tokens": 1000,
         "cost_usd": pytest.approx(cost)}
    ]  # fmt: skip
    # latency percentiles per flow and per component, within the histogram's 5%
    flows = {f["name"]: f for f in data["flows"]}
    assert [f["name"] for f in data["flows"]] == ["beta", "alpha"]  # slowest first
    for name, runs in known.runs.items():
        for p, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            assert flows[name][key] == pytest.approx(exact([d for _, d, _ in runs], p), rel=0.05)
        assert flows[name]["n"] == len(runs)
    assert flows["beta"]["errors"] == 1 and flows["beta"]["failed_run"] == "beta-00"
    slowest = data["slowest"]
    assert [c["name"] for c in slowest] == ["Slow step", "Fetch", "LLM"]
    fetch = slowest[1]
    fetch_ns = [d for d, _ in known.components["Fetch"]]
    assert fetch["p95"] == pytest.approx(exact(fetch_ns, 0.95), rel=0.05)
    assert fetch["max_ms"] == max(fetch_ns) / 1e6 and fetch["slowest_run"] == "alpha-19"
    assert [(c["name"], c["errors"], c["n"]) for c in data["failing"]] == [("Fetch", 2, 20)]
    assert data["failing"][0]["failed_run"] in ("alpha-03", "alpha-07")
    # filters: one flow, one project
    alpha = get_json(ui_server.url + "api/dashboard?range=24h&flow=alpha")
    assert alpha["totals"]["runs"] == 20 and [f["name"] for f in alpha["flows"]] == ["alpha"]
    assert get_json(ui_server.url + "api/dashboard?range=24h&project=other")["totals"]["runs"] == 0


def test_dashboard_parameters(ui_server: UIServer) -> None:
    from tests.ui.conftest import get

    for query, message in (("range=1y", "range must be one of"), ("flow=" + "f" * 2000, "flow is")):
        status, _, body = get(ui_server.url + "api/dashboard?" + query)
        assert status == 400 and message.encode() in body
    empty = get_json(ui_server.url + "api/dashboard")
    assert empty["range"] == "7d" and len(empty["runs"]) == 28
    assert empty["totals"]["runs"] == 0 and empty["flows"] == []
    assert set(RANGES) == {"24h", "7d", "30d", "90d"}


def test_percentile_of_a_histogram() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({10: 1, 20: 1, 30: 2}, 0.5) == percentile({20: 1}, 0.5)


playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture
def page(known: KnownRuns, ui_server: UIServer) -> Iterator[playwright_api.Page]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: scripts/test.sh installs Debian's chromium")
    pw = playwright_api.sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: requests.append(req.url))
        page.set_default_timeout(10_000)
        yield page
        browser.close()
        assert errors == []
        assert all(u.startswith(ui_server.url) for u in requests), requests  # nothing remote
    finally:
        pw.stop()


@pytest.mark.slow
def test_dashboard_page_charts(page, known: KnownRuns, ui_server: UIServer) -> None:
    page.goto(ui_server.url + "dashboard?range=24h")
    expect(page.locator("#t-runs")).to_have_text("25")
    expect(page.locator("#t-errors")).to_have_text("3")
    expect(page.locator("#t-tokens")).to_have_text("3,000")
    cost = PriceTable().cost("gpt-4o-mini", 2000, 1000)
    expect(page.locator("#t-cost")).to_have_text(fmt_usd(cost))
    # one bar per hour, each with its numbers in its tooltip
    bars = page.locator("#chart-runs g.bar")
    expect(bars).to_have_count(24)
    got = bars.evaluate_all(
        "gs => gs.map(g => [Number(g.dataset.runs), Number(g.dataset.errors),"
        " g.querySelector('title').textContent])"
    )
    assert sum(g[0] for g in got) == 25 and sum(g[1] for g in got) == 3
    for runs, errors, title in got:
        assert f" · {runs} runs · {errors} with errors" in title
        if errors:
            assert f"({errors / runs * 100:.1f}".rstrip("0").rstrip(".") in title
    assert page.locator("#chart-runs polyline.err-line").count() == 1
    # tokens by model: stacked bars with tooltips, the table with the cost
    model_bars = page.locator("#chart-models rect.model-bar")
    tokens = model_bars.evaluate_all("rs => rs.map(r => Number(r.dataset.tokens))")
    assert sum(tokens) == 3000
    assert "gpt-4o-mini" in (model_bars.first.locator("title").text_content() or "")
    row = page.locator('#models-table tr.model-row[data-model="gpt-4o-mini"]')
    expect(row.locator("td.c-cost")).to_have_text(fmt_usd(cost))
    # latency: flows and the slowest components, each linking to an example run
    expect(page.locator("#flows-table tr.dash-row")).to_have_count(2)
    expect(page.locator("#slowest-table tr.dash-row td.c-name")).to_have_text(
        ["Slow step", "Fetch", "LLM"]
    )
    failing = page.locator("#failing-table tr.dash-row")
    expect(failing).to_have_count(1)
    expect(failing.locator("td.c-failed")).to_have_text("2 (10%)")
    failing.locator("a.example").click()
    expect(page).to_have_url(__import__("re").compile(r"/runs/alpha-0[37]$"))
    expect(page.locator("#run-name")).to_have_text("alpha")
    # a flow filter narrows every figure
    page.goto(ui_server.url + "dashboard?range=24h")
    page.locator("#d-flow").select_option("beta")
    expect(page.locator("#t-runs")).to_have_text("5")
    expect(page).to_have_url(ui_server.url + "dashboard?range=24h&flow=beta")


def test_an_upgraded_store_has_its_past_runs_on_the_dashboard(make_service, tmp_path) -> None:
    import shutil

    from tests.destinations.test_sqlite_status import V1_STORE
    from tracemux.ui import dashboard

    path = tmp_path / "old.db"
    shutil.copy(V1_STORE, path)
    old = SQLiteStore(path)
    spans = {r.run_id: old.spans(r.run_id) for r in old.runs()}
    svc = make_service([old])
    with svc.trace_run("after upgrade"):
        pass
    svc.shutdown(10)
    newest = max(s.start_ns for ss in spans.values() for s in ss)
    data = dashboard.build(old, PriceTable(), "90d", now_ns=max(newest, time.time_ns()))
    flows = {f["name"]: f for f in data["flows"]}
    assert set(flows) == {"all-good", "went-on", "failed", "after upgrade"}
    assert flows["failed"]["errors"] == 1 and flows["failed"]["failed_run"]
    components = {c["name"]: c for c in data["slowest"]}
    flaky = next(s for ss in spans.values() for s in ss if s.name == "Flaky")
    assert components["Flaky"]["errors"] == 1
    assert components["Flaky"]["slowest_run"] == flaky.run_id
    assert components["Flaky"]["max_ms"] == pytest.approx(flaky.duration_ms)
    assert data["models"][0]["model"] == "gpt-4o-mini"
    assert (data["models"][0]["input_tokens"], data["models"][0]["output_tokens"]) == (100, 50)


def test_figures_written_run_by_run_are_those_written_at_once(tmp_path: Path) -> None:
    """The dashboard's figures of a key written in many transactions (merged into the stored
    row: counts, failures, slowest run, a failed run, latency histogram) equal those of one
    transaction."""
    now = time.time_ns()
    at_once, one_by_one = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")
    import_known_runs(at_once, now)
    import_known_runs(one_by_one, now, one_by_one=True)
    for step in (HOUR_NS, DAY_NS):
        expected = at_once.dashboard_data(now - 2 * DAY_NS, now + HOUR_NS, step)
        got = one_by_one.dashboard_data(now - 2 * DAY_NS, now + HOUR_NS, step)
        assert sorted(got.figures) == sorted(expected.figures)
        assert got.models == expected.models and got.runs == expected.runs
    assert len(expected.figures) >= 5
