"""Cost accounting: where prices come from, what a prediction costs, and how reports show it."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.pricing import BATCH_DISCOUNT, Price, load_price_file, price_for
from harness.records import Prediction
from harness.report import console_table, markdown_report
from harness.metrics.assemble import score_run
from harness.spec import Model


def model(provider="openai", name="gpt-4o-mini", **kw) -> Model:
    return Model(provider=provider, model=name, **kw)


def pred(model_id, gold, prediction, outcome="valid", prompt="p", **tokens) -> Prediction:
    return Prediction(example_id="t:0", model=model_id, prompt=prompt, gold=gold,
                      prediction=prediction if outcome == "valid" else None, outcome=outcome, **tokens)


@pytest.fixture(autouse=True)
def no_user_prices(monkeypatch):
    monkeypatch.delenv("HARNESS_PRICES", raising=False)


def test_cost_of_tokens_with_cached_prompt_tokens():
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    # 1000 prompt tokens of which 600 cached, 100 completion tokens
    assert price.cost(1000, 100, 600) == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6)
    assert Price(1.0, 1.0).cost(1000, 0, 600) == pytest.approx(1000 / 1e6)  # no cached rate: full price


def test_price_sources_in_order(tmp_path, monkeypatch):
    builtin = price_for(model())
    assert (builtin.input_per_mtok, builtin.output_per_mtok, builtin.cached_input_per_mtok) == (0.15, 0.60, 0.075)
    assert "may be stale" in builtin.source
    assert price_for(model(name="gpt-4o-mini-2024-07-18")).input_per_mtok == 0.15  # dated snapshot
    assert price_for(model("llamacpp", "smollm2")) is None  # nothing known: no cost shown

    prices = tmp_path / "prices.yaml"
    prices.write_text("openai:gpt-4o-mini: {input_per_mtok: 0.1, output_per_mtok: 0.4}\n"
                      "llamacpp:smollm2: {input_per_mtok: 0, output_per_mtok: 0}\n")
    monkeypatch.setenv("HARNESS_PRICES", str(prices))
    assert price_for(model()).input_per_mtok == 0.1
    assert price_for(model("llamacpp", "smollm2")).cost(1000, 1000) == 0

    in_spec = model(price={"input_per_mtok": 3, "output_per_mtok": 12})
    assert price_for(in_spec).source == "spec" and price_for(in_spec).output_per_mtok == 12
    batch = price_for(model(options={"batch": True}, price={"input_per_mtok": 3, "output_per_mtok": 12}))
    assert batch.input_per_mtok == 3 * BATCH_DISCOUNT and "batch" in batch.source


@pytest.mark.parametrize("text, message", [
    ("gpt-4o: {input_per_mtok: 1, output_per_mtok: 2}\n", "keys are `provider:model`"),
    ("openai:x: {input_per_mtok: 1}\n", "missing output_per_mtok"),
    ("openai:x: {input_per_mtok: 1, output_per_mtok: 2, inptu: 3}\n", "unknown field"),
    ("openai:x: {input_per_mtok: -1, output_per_mtok: 2}\n", "cannot be negative"),
    ("openai:x: {input_per_mtok: cheap, output_per_mtok: 2}\n", "must be numbers"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_price_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=message):
        load_price_file(path)


def test_costs_in_metrics_and_reports():
    m = model()
    local = model("llamacpp", "smollm2")
    preds = [
        pred(m.id, "pos", "pos", prompt_tokens=1000, completion_tokens=10, cached_tokens=0),
        pred(m.id, "neg", "pos", prompt_tokens=1000, completion_tokens=10, cached_tokens=500, cached=True),
        pred(m.id, "neg", None, outcome="api_error"),  # no tokens: costs nothing
        pred(local.id, "pos", "pos", prompt_tokens=50, completion_tokens=5),
    ]
    metrics = score_run(preds, ["pos", "neg"], "single_label", models=[m, local])
    row, local_row = metrics
    first = (1000 * 0.15 + 10 * 0.60) / 1e6
    second = (500 * 0.15 + 500 * 0.075 + 10 * 0.60) / 1e6
    assert row["cost_usd"] == pytest.approx(first + second)
    assert row["cost_spent_usd"] == pytest.approx(first)  # the second came from the response cache
    assert row["cost_per_valid_usd"] == pytest.approx((first + second) / 2)
    assert "cost_usd" not in local_row  # no price known

    report = markdown_report({"spec": "s"}, metrics)
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert "| cost | cost/valid |" in header
    assert "$0.000275" in report  # 3 significant figures, no exponent
    assert "cost $0.000275 (spent this run $0.000156" in report
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(console_table(metrics))
    assert "cost/valid" in console.export_text()


def test_no_cost_columns_without_prices():
    preds = [pred("llamacpp:smollm2", "pos", "pos", prompt_tokens=5, completion_tokens=1)]
    metrics = score_run(preds, ["pos", "neg"], "single_label", models=[model("llamacpp", "smollm2")])
    assert "cost" not in markdown_report({"spec": "s"}, metrics)
