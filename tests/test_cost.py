"""Costs from model and tokens: genai-prices' table, the user's overrides, "—" for the
unknown; in the CLI's list and the viewer's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from tests.cli.test_runs import tracemux
from tests.ui.conftest import fill_store, get_json
from tracemux import TracingService
from tracemux.cost import Cost, ModelPrice, PriceFileError, PriceTable, fmt_usd
from tracemux.destinations import SQLiteStore
from tracemux.ui import UIServer


def _library(model: str, i: int, o: int) -> float:
    return float(calc_price(Usage(input_tokens=i, output_tokens=o), model).total_price)


def test_known_models_are_priced_by_genai_prices() -> None:
    table = PriceTable()
    assert table.cost("gpt-4o-mini", 412, 188) == _library("gpt-4o-mini", 412, 188) > 0
    assert table.cost("claude-3-5-sonnet-latest", 1000, 0) == _library(
        "claude-3-5-sonnet-latest", 1000, 0
    )


def test_unknown_models_have_no_cost_never_a_guess() -> None:
    table = PriceTable()
    assert table.cost("my-private-finetune", 1000, 1000) is None
    assert table.cost(None, 1000, 1000) is None
    assert fmt_usd(None) == "—"
    total = table.total([("gpt-4o-mini", 412, 188), ("my-private-finetune", 5, 5)])
    assert total == Cost(_library("gpt-4o-mini", 412, 188), 1)
    assert fmt_usd(total).endswith("+")  # a lower bound: one model had no price
    assert table.total([("my-private-finetune", 5, 5)]) == Cost(None, 1)


def test_override_file_comes_first(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {"my-finetune": {"input": 2, "output": 8}, "gpt-4o-mini": {"input": 1000, "output": 0}}
        )
    )
    table = PriceTable.from_env({"TRACEMUX_PRICES": str(path)})
    assert table.overrides["my-finetune"] == ModelPrice(2.0, 8.0)
    assert table.cost("my-finetune", 1_000_000, 500_000) == pytest.approx(6.0)
    assert table.cost("gpt-4o-mini", 1000, 1000) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read prices"),
        ("[1, 2]", "expected an object"),
        ('{"m": {"input": 1}}', "needs numbers 'input' and 'output'"),
        ('{"m": {"input": -1, "output": 1}}', "must be >= 0"),
        ('{"m": {"input": "NaN", "output": 1}}', "must be >= 0"),
    ],
)
def test_bad_override_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PriceFileError, match=message):
        PriceTable.from_env({"TRACEMUX_PRICES": str(path)})
    with pytest.raises(PriceFileError, match="cannot read prices"):
        PriceTable.from_env({"TRACEMUX_PRICES": str(tmp_path / "missing.json")})


def test_cost_in_the_cli_list_and_the_viewer_api(
    service: TracingService, store: SQLiteStore, tmp_path: Path
) -> None:
    rec = fill_store(service, agent_runs=1)
    agent = rec.agent_runs[0]
    chat = _library("gpt-4o-mini", 412, 188)
    done = tracemux("runs", "--db", store.path)
    row = next(line for line in done.stdout.splitlines() if line.startswith(agent[:8]))
    assert row.split()[-1] == fmt_usd(Cost(chat, 1))  # the embedding model has no price
    failed_row = next(
        line for line in done.stdout.splitlines() if line.startswith(rec.failed_run[:8])
    )
    assert failed_row.split()[-1] == "—"  # no model at all
    shown = tracemux("show", "--db", store.path, agent, columns=200)
    assert f"gpt-4o-mini tokens in 412 / out 188  cost {fmt_usd(chat)}" in shown.stdout
    assert "text-embedding-3-small tokens in 9 / out -  cost —" in shown.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    refused = tracemux("runs", "--db", store.path, env={"TRACEMUX_PRICES": str(bad)})
    assert refused.returncode == 2 and "TRACEMUX_PRICES" in refused.stderr

    prices = PriceTable({"text-embedding-3-small": ModelPrice(0.02, 0)})
    with UIServer(store, port=0, prices=prices) as server:
        item = next(r for r in get_json(server.url + "api/runs")["runs"] if r["run_id"] == agent)
        assert item["models"] == ["gpt-4o-mini", "text-embedding-3-small"]
        assert item["cost"] == {"usd": pytest.approx(chat + 9 * 0.02 / 1e6), "unpriced": 0}
        run = get_json(server.url + f"api/runs/{agent}")
        assert run["cost"]["usd"] == pytest.approx(item["cost"]["usd"])
        spans = {s["name"]: s for s in get_json(server.url + f"api/runs/{agent}/spans")["spans"]}
        assert spans["ChatModel"]["cost_usd"] == pytest.approx(chat)
        assert spans["Planner"]["cost_usd"] is None
