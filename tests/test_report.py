"""Reports built from metrics of small handmade runs (figures as in test_score.py)."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from harness.records import Prediction
from harness.report import console_table, markdown_report, summary_rows, write_run_files
from harness.metrics.assemble import score_run

LABELS = ["pos", "neg", "neu"]
SHA = "abcdef0123456789" * 4

HEADER = (
    "| model | prompt | n | validity | accuracy | accuracy (valid) | macro F1 | macro F1 (valid) "
    "| p50 latency | wall |"
)


def pred(gold, prediction=None, outcome="valid", model="m1", prompt="zero", **kw) -> Prediction:
    return Prediction(
        example_id="test:0", model=model, prompt=prompt, gold=gold,
        prediction=prediction if outcome == "valid" else None, outcome=outcome, **kw,
    )


def single_metrics(with_wall: bool = True) -> list[dict]:
    preds = [
        # m1/zero: 6 examples, 1 invalid -> accuracy 3/6 = 50.0%, valid 3/5 = 60.0%,
        # validity 5/6 = 83.3%, macro F1 0.633 (valid 0.667), p50 latency 1.50s
        pred("pos", "pos", latency_s=0.5, parsed_from="whole"),
        pred("pos", "neg", latency_s=1.0, parsed_from="whole"),
        pred("pos", outcome="invalid_json"),
        pred("neg", "neg", latency_s=1.5, parsed_from="fence"),
        pred("neg", "pos", latency_s=2.0, parsed_from="label"),
        pred("neu", "neu", latency_s=3.0, parsed_from="label"),
        # m2/zero: 4 examples, all valid, 3 right -> accuracy 75.0% (the best, so bold)
        pred("pos", "pos", model="m2", parsed_from="whole"),
        pred("neg", "neg", model="m2", parsed_from="whole"),
        pred("neu", "neu", model="m2", parsed_from="whole"),
        pred("neu", "pos", model="m2", parsed_from="whole"),
        # m3/zero: nothing readable -> accuracy 0.0%, valid-only figures undefined (–)
        pred("pos", outcome="refusal", model="m3"),
        pred("neg", outcome="api_error", model="m3"),
    ]
    metrics = score_run(preds, LABELS, "single_label")
    if with_wall:
        metrics[0]["wall_s"] = 12.34
        metrics[1]["wall_s"] = 3.0
    return metrics


def run_info(**extra) -> dict:
    run = {
        "spec": "sentiment-demo",
        "description": "Tiny café reviews",
        "started_at": "2024-05-01T12:00:00+00:00",
        "wall_s": 15.75,
        "dataset": {"source": "data/reviews.jsonl", "split": "test", "rows_used": 6, "sha256": SHA},
        "command": "harness run specs/sentiment.yaml --limit 6",
        "models": ["m1", "m2", "m3", "openai:gpt-4o-mini"],
        "prompts": ["zero"],
        "skipped": [{"model": "openai:gpt-4o-mini", "reason": "OPENAI_API_KEY is not set"}],
    }
    run.update(extra)
    return run


# ---------------------------------------------------------------------------------------------
# summary_rows


def test_summary_rows_columns_and_values():
    rows = summary_rows(single_metrics())
    assert [r["model"] for r in rows] == ["m1", "m2", "m3"]
    assert list(rows[0]) == [
        "model", "prompt", "n", "validity", "accuracy", "accuracy_valid", "macro_f1",
        "macro_f1_valid", "latency_p50_s", "wall_s",
    ]
    assert rows[0]["n"] == 6
    assert rows[0]["accuracy"] == 0.5 and rows[0]["accuracy_valid"] == 0.6
    assert rows[0]["wall_s"] == 12.34
    assert rows[2]["wall_s"] is None  # the runner gave m3 no wall time
    assert rows[2]["accuracy_valid"] is None


def test_summary_rows_without_wall_time():
    rows = summary_rows(single_metrics(with_wall=False))
    assert "wall_s" not in rows[0]


# ---------------------------------------------------------------------------------------------
# Console table


def render(table, styles: bool = False) -> str:
    console = Console(
        record=True, width=160, color_system="standard", force_terminal=True, file=io.StringIO()
    )
    console.print(table)
    return console.export_text(styles=styles)


def test_console_table_cells():
    text = render(console_table(single_metrics(), title="sentiment-demo"))
    assert "sentiment-demo" in text
    for header in ("model", "prompt", "validity", "accuracy (valid)", "macro F1 (valid)",
                   "p50 latency", "wall"):
        assert header in text
    line_m1 = next(line for line in text.splitlines() if " m1 " in line)
    cells = [c.strip() for c in line_m1.strip("│ \n").split("│")]
    assert cells == ["m1", "zero", "6", "83.3%", "50.0%", "60.0%", "0.633", "0.667", "1.50s",
                     "12.3s"]
    line_m3 = next(line for line in text.splitlines() if " m3 " in line)
    cells = [c.strip() for c in line_m3.strip("│ \n").split("│")]
    # no valid output, no latency, no wall time: shown as –
    assert cells == ["m3", "zero", "2", "0.0%", "0.0%", "–", "0.000", "–", "–", "–"]


def test_console_table_bolds_best_accuracy():
    styled = render(console_table(single_metrics()), styles=True)
    bold = re.findall(r"\x1b\[1m *([\d.]+%)\x1b\[0m", styled)
    assert bold == ["75.0%"]  # m2 has the best strict accuracy; only that cell is bold


def test_console_table_without_wall_and_empty():
    text = render(console_table(single_metrics(with_wall=False)))
    assert "wall" not in text
    assert "model" in render(console_table([]))


# ---------------------------------------------------------------------------------------------
# Markdown


def test_markdown_header_and_summary():
    report = markdown_report(run_info(), single_metrics())
    assert report.startswith("# sentiment-demo\n")
    assert "Tiny café reviews" in report
    assert "data/reviews.jsonl" in report and "`test`" in report and "rows_used 6" in report
    assert SHA[:12] in report and SHA not in report
    assert "harness run specs/sentiment.yaml --limit 6" in report
    assert HEADER in report
    assert "| m1 | zero | 6 | 83.3% | 50.0% | 60.0% | 0.633 | 0.667 | 1.50s | 12.3s |" in report
    assert "| m2 | zero | 4 | 100.0% | **75.0%** | 75.0% |" in report
    assert "| m3 | zero | 2 | 0.0% | 0.0% | – | 0.000 | – | – | – |" in report


def test_markdown_outcomes_table():
    report = markdown_report(run_info(), single_metrics())
    assert "## Outcomes" in report
    assert ("| model | prompt | valid | invalid_json | schema_error | refusal | truncated "
            "| api_error | parsed from |") in report
    assert "| m1 | zero | 5 | 1 | 0 | 0 | 0 | 0 | fence 1, label 2, whole 2 |" in report
    assert "| m3 | zero | 0 | 0 | 0 | 1 | 0 | 1 | – |" in report


def test_markdown_per_class_and_confusion():
    report = markdown_report(run_info(), single_metrics())
    section = report.split("## m1 / zero", 1)[1].split("## m2 / zero", 1)[0]
    assert "| label | precision | recall | F1 | support |" in section
    # pos: P 1/2, R 1/3, F1 0.4, support 3 (see test_score.py)
    assert "| pos | 0.500 | 0.333 | 0.400 | 3 |" in section
    # confusion rows = gold; the <invalid> column holds the unreadable pos example
    assert "| gold \\ predicted | pos | neg | neu | `<invalid>` |" in section
    assert "| pos | 1 | 1 | 0 | 1 |" in section
    assert "| neg | 1 | 1 | 0 | 0 |" in section
    assert "| neu | 0 | 0 | 1 | 0 |" in section
    assert "weighted F1 0.533 (valid 0.600)" in section
    m3 = report.split("## m3 / zero", 1)[1]
    assert "| pos | 0 | 0 | 0 | 1 |" in m3 and "| neg | 0 | 0 | 0 | 1 |" in m3


def test_markdown_skipped_models():
    report = markdown_report(run_info(), single_metrics())
    assert "## Skipped" in report
    assert "- `openai:gpt-4o-mini`: OPENAI_API_KEY is not set" in report
    assert "## Skipped" not in markdown_report(run_info(skipped=[]), single_metrics())


def test_markdown_escapes_cells():
    preds = [pred("a|b", "a|b", model="m<x>"), pred("c", "c", model="m<x>")]
    metrics = score_run(preds, ["a|b", "c"], "single_label")
    report = markdown_report(run_info(), metrics)
    assert "| m&lt;x&gt; | zero | 2 |" in report
    assert "| a\\|b | 1 | 0 | 0 |" in report


def test_markdown_multi_label():
    preds = [
        pred(["a", "b"], ["a", "b"]),
        pred(["a"], ["a", "c"]),
        pred(["b", "c"], outcome="schema_error"),
        pred(["c"], ["c"]),
    ]
    metrics = score_run(preds, ["a", "b", "c"], "multi_label")
    report = markdown_report(run_info(), metrics)
    # subset accuracy 2/4 strict, 2/3 valid; macro F1 13/18 = 0.722, valid 8/9 = 0.889
    assert "| m1 | zero | 4 | 75.0% | **50.0%** | 66.7% | 0.722 | 0.889 | – |" in report
    assert "hamming loss 0.250 (valid 0.111)" in report
    assert "micro F1 0.727 (valid 0.889)" in report
    assert "| b | 1.000 | 0.500 | 0.667 | 2 |" in report
    assert "Confusion matrix" not in report


def test_markdown_minimal_run_and_no_results():
    report = markdown_report({"spec": "bare"}, [])
    assert report.startswith("# bare\n")
    assert "_No results._" in report


# ---------------------------------------------------------------------------------------------
# Files


def test_write_run_files_round_trip(tmp_path):
    run, metrics = run_info(), single_metrics()
    run_dir = tmp_path / "runs" / "sentiment-demo-1"
    write_run_files(run_dir, run, metrics)
    text = (run_dir / "metrics.json").read_text(encoding="utf-8")
    assert "Tiny café reviews" in text  # ensure_ascii=False
    assert text.startswith('{\n  "schema_version": 2,\n  "run": {')  # indent=2, run before results
    data = json.loads(text)
    assert data == {"schema_version": 2, "run": run, "results": metrics}
    assert list(data["results"][0])[:2] == ["model", "prompt"]  # key order kept
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert report == markdown_report(run, metrics)
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json", "report.md"]
    write_run_files(run_dir, run, metrics)  # overwriting is fine
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")) == data
