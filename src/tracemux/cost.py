"""What an LLM call cost, from its model and token counts.

Prices come from a maintained table: the ``genai-prices`` package (install the ``cost``
extra: ``pip install 'tracemux[cost]'``), which ships prices for the major providers and
is released often. A user's own prices (private or fine-tuned models, negotiated rates)
come first: a JSON file named by ``TRACEMUX_PRICES``, mapping a model name to US dollars
per million tokens::

    {"my-finetune": {"input": 0.5, "output": 1.5}}

A model found in neither has no cost (``None``, shown as "—"): never a guess.

Costs are worked out when runs are read (the CLI and the viewer), never when they are
recorded: the hot path and the export thread do no price work, and a price change or a
new override applies to runs already stored.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger(__name__)

PRICES_ENV = "TRACEMUX_PRICES"


class PriceFileError(ValueError):
    """The price override file cannot be used (named in the message)."""


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million input and output tokens."""

    input: float
    output: float


def _load_overrides(path: str) -> dict[str, ModelPrice]:
    try:
        with open(path, "rb") as f:
            data = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise PriceFileError(f"{PRICES_ENV}={path}: cannot read prices: {exc}") from None
    if not isinstance(data, dict):
        raise PriceFileError(f"{PRICES_ENV}={path}: expected an object of model names")
    prices = {}
    for model, entry in data.items():
        try:
            price = ModelPrice(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise PriceFileError(
                f"{PRICES_ENV}={path}: {model!r} needs numbers 'input' and 'output' "
                "(US dollars per million tokens)"
            ) from None
        if not all(math.isfinite(p) and p >= 0 for p in (price.input, price.output)):
            raise PriceFileError(f"{PRICES_ENV}={path}: {model!r} prices must be >= 0")
        prices[model] = price
    return prices


class PriceTable:
    """Prices by model: the user's overrides first, then ``genai-prices`` when installed."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._cost = functools.lru_cache(maxsize=4096)(self._compute)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        """The table with the overrides of ``TRACEMUX_PRICES`` (a JSON file), if set.

        Raises :class:`PriceFileError` for a file that cannot be used."""
        path = (environ if environ is not None else os.environ).get(PRICES_ENV, "").strip()
        return cls(_load_overrides(path) if path else None)

    def cost(self, model: str | None, input_tokens: float, output_tokens: float) -> float | None:
        """US dollars for these tokens of ``model``, or None when its price is unknown."""
        if not model:
            return None
        return self._cost(model, int(input_tokens or 0), int(output_tokens or 0))

    def _compute(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self.overrides.get(model)
        if price is not None:
            return (input_tokens * price.input + output_tokens * price.output) / 1e6
        return _library_cost(model, input_tokens, output_tokens)

    def total(self, usage: Iterable[tuple[str | None, float, float]]) -> Cost:
        """The cost of several (model, input tokens, output tokens) entries."""
        known = 0.0
        priced = unpriced = 0
        for model, input_tokens, output_tokens in usage:
            if not model or not (input_tokens or output_tokens):
                continue
            one = self.cost(model, input_tokens, output_tokens)
            if one is None:
                unpriced += 1
            else:
                known += one
                priced += 1
        return Cost(known if priced else None, unpriced)


@dataclass(frozen=True)
class Cost:
    """A sum of costs: ``usd`` of the priced entries (None if none was priced), and how
    many entries had a model of unknown price (so the sum is a lower bound)."""

    usd: float | None
    unpriced: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"usd": self.usd, "unpriced": self.unpriced}


def _library_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    try:
        calc = calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens), model)
    except LookupError:
        return None
    except Exception:  # a table entry the library cannot apply: no price, not a crash
        log.debug("tracemux: genai-prices failed for %r", model, exc_info=True)
        return None
    return float(calc.total_price)


def fmt_usd(cost: Cost | float | None) -> str:
    """``$0.0123``, ``—`` for unknown; a trailing ``+`` when some models had no price."""
    usd = cost.usd if isinstance(cost, Cost) else cost
    if usd is None:
        return "—"
    if usd == 0:
        text = "$0"
    elif usd < 0.01:
        text = f"${usd:.6f}".rstrip("0")
    elif usd < 1:
        text = f"${usd:.4f}"
    else:
        text = f"${usd:,.2f}"
    return text + "+" if isinstance(cost, Cost) and cost.unpriced else text
