"""The typed metrics rows (harness.metrics.row): the published schema stays in sync with the model,
a real run's metrics.json validates against it, files of version 1 are still read, and the names
checks, report columns and `compare` use are the model's."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from harness.cli import main
from harness.metrics.row import CHECKABLE, COLUMNS, COUNTS, HEADLINE, SCHEMA_VERSION, MetricsRow, json_schema
from harness.runs import load_run

from test_checks import CHECKS, make_project

ROOT = Path(__file__).resolve().parent.parent
jsonschema = pytest.importorskip("jsonschema")


def test_committed_metrics_schema_is_up_to_date():
    committed = json.loads((ROOT / "harness" / "metrics.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(), (
        "harness/metrics.schema.json is stale: run `python -m harness.metrics.row > harness/metrics.schema.json`"
    )


def test_metrics_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.fixture(scope="module")
def replayed_run(tmp_path_factory) -> Path:
    """A real `harness eval --cache replay` run of a 6-example spec (4 answers right)."""
    tmp = tmp_path_factory.mktemp("schema")
    spec, _ = make_project(tmp, CHECKS, correct=4)
    assert main(["eval", str(spec), "--cache", "replay", "--quiet", "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def test_a_real_runs_metrics_json_validates_against_the_published_schema(replayed_run):
    payload = json.loads((replayed_run / "metrics.json").read_text(encoding="utf-8"))
    schema = json.loads((ROOT / "harness" / "metrics.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(payload)
    assert payload["schema_version"] == SCHEMA_VERSION
    (row,) = payload["results"]
    # the parts this run has, flattened at the top level like version 1 had them
    assert row["cost_usd"] == 0 and row["price"]["source"].startswith("built-in table")  # gpt-4o-mini, no usage
    assert row["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1] and row["ci_resamples"] == 1000
    assert row["coverage"]["available"] is False  # no confidences in a text-mode replay
    assert "subset_accuracy" not in row and "calibration" not in row
    # every figure a check may name for a single-label, priced row is in the file
    multi_only = set(MetricsRow.model_fields["multi"].annotation.__args__[0].model_fields)
    assert [name for name in CHECKABLE if name not in row and name not in multi_only] == []
    # the file reads back into the typed rows, and writes out the same
    assert MetricsRow.from_wire(row).to_wire() == row


def test_the_schema_rejects_what_the_model_rejects(replayed_run):
    validator = jsonschema.Draft202012Validator(json_schema())
    payload = json.loads((replayed_run / "metrics.json").read_text(encoding="utf-8"))
    row = payload["results"][0]
    for broken in ({**row, "accuracy": "high"}, {k: v for k, v in row.items() if k != "n"},
                   {**row, "outcomes": {"valid": 1.5}}, {**row, "coverage": {"reason": "no flag"}}):
        assert list(validator.iter_errors({**payload, "results": [broken]}))
        with pytest.raises(ValueError):  # pydantic's ValidationError
            MetricsRow.from_wire(broken)


def test_parts_flatten_on_the_wire_and_gather_back():
    row = MetricsRow.model_validate({
        "model": "baseline:tfidf_logreg", "prompt": "-", "n": 2, "n_valid": 2, "validity": 1.0,
        "outcomes": {"valid": 2}, "parsed_from": {"baseline": 2}, "accuracy": 0.5, "accuracy_valid": 0.5,
        "macro_f1": 0.333333, "macro_f1_valid": 0.333333, "per_class": None, "per_class_valid": None,
        "weighted_f1": 0.25, "weighted_f1_valid": 0.25,
        "confusion": {"labels": ["a", "b"], "columns": ["a", "b", "<invalid>"], "matrix": [[1, 0, 0], [1, 0, 0]]},
        "latency_p50_s": None, "latency_p95_s": None, "prompt_tokens": None, "completion_tokens": None,
        "cached": 0, "mean_confidence": 0.7, "wall_s": 1.5, "fit_s": 1.0, "predict_s": 0.5,
        "calibration": {"n": 2, "ece": 0.2, "ece_equal_mass": 0.2, "brier": 0.3, "log_loss": None,
                        "margin_mean": 0.4, "entropy_mean": None,
                        "bins": [{"lo": 0.6, "hi": 0.7, "n": 2, "confidence": 0.65, "accuracy": 0.5}]},
    })
    assert row.baseline.fit_s == 1.0 and row.single.weighted_f1 == 0.25 and row.cost is None
    assert row.calibration.bins[0].accuracy == 0.5
    wire = row.to_wire()
    assert wire["fit_s"] == 1.0 and "baseline" not in wire and "single" not in wire and "embed_s" not in wire
    jsonschema.Draft202012Validator(json_schema()).validate({"schema_version": 2, "run": {}, "results": [wire]})


def test_version_1_files_are_still_compared_and_checked(replayed_run, tmp_path, capsys):
    """A metrics.json written before schema_version existed (same rows) works with check and compare;
    a file from a newer harness is refused with a clear message."""
    old = tmp_path / "runs" / "tiny" / "old"
    old.mkdir(parents=True)
    for name in ("predictions.jsonl", "spec.resolved.json"):
        (old / name).write_bytes((replayed_run / name).read_bytes())
    payload = json.loads((replayed_run / "metrics.json").read_text(encoding="utf-8"))
    del payload["schema_version"]
    for row in payload["results"]:  # figures added after version 1
        del row["balanced_accuracy"], row["balanced_accuracy_valid"]
    (old / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")
    assert [MetricsRow.from_wire(r).to_wire() for r in load_run(old).metrics] == payload["results"]
    assert main(["check", str(old)]) == 1  # accuracy 4/6 is below the spec's min 0.8
    assert "below 0.8" in capsys.readouterr().out
    assert main(["compare", str(old), str(replayed_run), "--json"]) == 0
    pair = json.loads(capsys.readouterr().out)["pairs"][0]
    assert pair["n_paired"] == 6 and pair["figures"]["accuracy"]["delta"] == 0
    (old / "metrics.json").write_text(json.dumps({**payload, "schema_version": 99}), encoding="utf-8")
    assert main(["check", str(old)]) == 2
    assert "schema_version 99 is newer than this harness reads" in capsys.readouterr().err


def test_check_names_report_columns_and_compare_headline_come_from_the_row_model():
    from harness import compare, report, spec

    assert typing.get_args(spec.CheckMetric) == CHECKABLE
    assert report._COLUMNS == [(key, header, kind) for key, header, kind, _ in COLUMNS]
    assert report._OPTIONAL == {"cost_usd", "cost_per_valid_usd", "wall_s"}
    assert compare.HEADLINE == HEADLINE == ("validity", "accuracy", "accuracy_valid", "macro_f1", "macro_f1_valid")
    assert COUNTS == ("n", "n_valid")
