"""What a run's answers cost: token counts × a price per million tokens, per model × prompt.

Where a model's price comes from, first match wins:

1. `price:` on the model in the spec (`{input_per_mtok, output_per_mtok, cached_input_per_mtok}`);
2. a user price file named by `HARNESS_PRICES` (YAML or JSON: `{"provider:model": {...}}`, the same
   three fields), for prices negotiated or changed since this table was written;
3. the built-in table below — a few OpenAI and Groq models, **list prices as remembered in 2025 from
   openai.com/api/pricing and groq.com/pricing, not re-checked (these machines cannot reach them);
   they may be stale** — put the current figure in the spec or the price file when it matters.

No price -> cost is None (a local model costs what its hardware costs; give `price:` zeros to show
$0). Cached prompt tokens use `cached_input_per_mtok` (default: the input price). Models run with
`options: {batch: true}` pay `BATCH_DISCOUNT` of the price (OpenAI and Groq both bill batches at 50%).

Per model × prompt the metrics get `cost_usd` (every prediction's tokens, including answers served
from the response cache: what the evaluated answers cost, comparable between runs),
`cost_spent_usd` (only requests actually sent in this run) and `cost_per_valid_usd`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.errors import HarnessError

BATCH_DISCOUNT = 0.5
BUILTIN_SOURCE = (
    "built-in table (openai.com/api/pricing, groq.com/pricing as of 2025; unverified here, may be stale)"
)


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    source: str = BUILTIN_SOURCE

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens or 0, prompt_tokens or 0)
        cached_rate = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        return (
            ((prompt_tokens or 0) - cached) * self.input_per_mtok
            + cached * cached_rate
            + (completion_tokens or 0) * self.output_per_mtok
        ) / 1_000_000

    def scaled(self, factor: float, note: str) -> "Price":
        return Price(
            self.input_per_mtok * factor, self.output_per_mtok * factor,
            None if self.cached_input_per_mtok is None else self.cached_input_per_mtok * factor,
            f"{self.source}; {note}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_per_mtok": self.input_per_mtok, "output_per_mtok": self.output_per_mtok,
            "cached_input_per_mtok": self.cached_input_per_mtok, "source": self.source,
        }


# USD per million tokens: (input, output, cached input or None). See the module docstring.
BUILTIN_PRICES: dict[str, tuple[float, float, float | None]] = {
    "openai:gpt-4o-mini": (0.15, 0.60, 0.075),
    "openai:gpt-4o": (2.50, 10.00, 1.25),
    "openai:gpt-4.1": (2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": (0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": (0.10, 0.40, 0.025),
    "openai:gpt-5": (1.25, 10.00, 0.125),
    "openai:gpt-5-mini": (0.25, 2.00, 0.025),
    "openai:gpt-5-nano": (0.05, 0.40, 0.005),
    "openai:o4-mini": (1.10, 4.40, 0.275),
    "groq:llama-3.1-8b-instant": (0.05, 0.08, None),
    "groq:llama-3.3-70b-versatile": (0.59, 0.79, None),
    "groq:openai/gpt-oss-20b": (0.075, 0.30, None),
    "groq:openai/gpt-oss-120b": (0.15, 0.60, None),
    "groq:meta-llama/llama-4-scout-17b-16e-instruct": (0.11, 0.34, None),
    "groq:qwen/qwen3-32b": (0.29, 0.59, None),
}
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-2024-07-18 -> gpt-4o-mini


def load_price_file(path: str | Path) -> dict[str, Price]:
    """`HARNESS_PRICES`: {"provider:model": {input_per_mtok, output_per_mtok, cached_input_per_mtok}}."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarnessError(f"HARNESS_PRICES={path}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise HarnessError(f"HARNESS_PRICES={path}: not YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"HARNESS_PRICES={path}: expected a mapping of provider:model -> prices")
    prices = {}
    for key, value in data.items():
        where = f"{path}: {key}"
        if not isinstance(key, str) or ":" not in key:
            raise HarnessError(f"{where}: keys are `provider:model`, e.g. openai:gpt-4o-mini")
        if not isinstance(value, dict):
            raise HarnessError(f"{where}: expected {{input_per_mtok: .., output_per_mtok: ..}}")
        unknown = set(value) - {"input_per_mtok", "output_per_mtok", "cached_input_per_mtok"}
        missing = {"input_per_mtok", "output_per_mtok"} - set(value)
        if unknown or missing:
            raise HarnessError(
                f"{where}: " + "; ".join(
                    ([f"unknown field(s) {', '.join(sorted(unknown))}"] if unknown else [])
                    + ([f"missing {', '.join(sorted(missing))}"] if missing else [])
                ) + " (fields: input_per_mtok, output_per_mtok, cached_input_per_mtok)"
            )
        try:
            numbers = {k: None if v is None else float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise HarnessError(f"{where}: prices must be numbers (USD per million tokens)") from None
        if any(v is not None and v < 0 for v in numbers.values()):
            raise HarnessError(f"{where}: prices cannot be negative")
        prices[key] = Price(
            numbers["input_per_mtok"], numbers["output_per_mtok"],
            numbers.get("cached_input_per_mtok"), f"HARNESS_PRICES ({path})",
        )
    return prices


# The hosts the built-in list prices are for; a model served elsewhere (127.0.0.1, a vLLM box, a
# proxy) under the same model name is not billed at them.
HOSTED_HOSTS = {"openai": "api.openai.com", "groq": "api.groq.com"}


def served_by_list_price_host(model: Any) -> bool:
    """Whether the model's requests go to the hosted API the built-in table prices."""
    from urllib.parse import urlsplit

    provider = getattr(model, "provider", "")
    host = HOSTED_HOSTS.get(provider)
    if host is None:
        return False
    url = getattr(model, "base_url", None) or os.environ.get(f"{provider.upper()}_BASE_URL")
    if not url:
        return True  # the provider's default URL is the hosted API
    return (urlsplit(url.strip()).hostname or "").lower() == host


def price_for(model: Any, user_prices: dict[str, Price] | None = None) -> Price | None:
    """The price of a spec `Model` (see the module docstring for the order), batch discount applied.
    Built-in list prices apply only to a model served by the hosted API they list."""
    price: Price | None = None
    spec_price = getattr(model, "price", None)
    key = f"{model.provider}:{model.model}"
    if spec_price is not None:
        price = Price(spec_price.input_per_mtok, spec_price.output_per_mtok,
                      spec_price.cached_input_per_mtok, "spec")
    else:
        if user_prices is None:
            path = os.environ.get("HARNESS_PRICES")
            user_prices = load_price_file(path) if path else {}
        for candidate in (key, _SNAPSHOT.sub("", key)):
            if candidate in user_prices:
                price = user_prices[candidate]
                break
            if candidate in BUILTIN_PRICES and served_by_list_price_host(model):
                price = Price(*BUILTIN_PRICES[candidate])
                break
    if price is not None and (getattr(model, "options", None) or {}).get("batch"):
        price = price.scaled(BATCH_DISCOUNT, f"batch: {BATCH_DISCOUNT:g} × list price")
    return price


def prices_for(models: Iterable[Any]) -> dict[str, Price | None]:
    """The price of each spec `Model` by id (HARNESS_PRICES read once)."""
    user_path = os.environ.get("HARNESS_PRICES")
    user_prices = load_price_file(user_path) if user_path else {}
    return {m.id: price_for(m, user_prices) for m in models}


def cost_part(predictions: Iterable[Any], price: Price | None, n_valid: int) -> dict[str, Any] | None:
    """The `cost` part of one model × prompt row: cost_usd, cost_spent_usd (requests sent in this
    run, not answered from the cache), cost_per_valid_usd and the price. None without a price
    (baselines, models nobody priced)."""
    if price is None:
        return None
    total = spent = 0.0
    for p in predictions:
        if p.prompt_tokens is None and p.completion_tokens is None:
            continue
        cost = price.cost(p.prompt_tokens or 0, p.completion_tokens or 0, p.cached_tokens or 0)
        total += cost
        if not p.cached:
            spent += cost
    return {
        "cost_usd": round(total, 10),
        "cost_spent_usd": round(spent, 10),
        "cost_per_valid_usd": round(total / n_valid, 12) if n_valid else None,
        "price": price.to_dict(),
    }
