"""Coverage vs accuracy (harness.coverage) and bootstrap intervals (harness.intervals), on
hand-made prediction records whose answers are known."""

from __future__ import annotations

import pytest

from harness.coverage import coverage_markdown
from harness.coverage import coverage_curve as curve_of_encoding
from harness.intervals import bootstrap_ci, intervals_markdown
from harness.metrics.assemble import score_run
from harness.metrics.kernel import encode
from harness.records import Prediction
from harness.report import markdown_report


def coverage_curve(rows: list[Prediction], **options):
    """The curve of hand-made records (labels a, b; multi-label when golds are lists)."""
    multi = isinstance(rows[0].gold, list)
    labels = ["joy", "love", "anger"] if multi else ["a", "b"]
    return curve_of_encoding(encode(rows, labels, "multi_label" if multi else "single_label"), **options)


def _pred(i: int, gold, prediction, confidence, outcome="valid", model="m", prompt="p") -> Prediction:
    return Prediction(example_id=f"test:{i}", model=model, prompt=prompt, gold=gold,
                      prediction=prediction if outcome == "valid" else None, outcome=outcome,
                      confidence=confidence)


def _ten() -> list[Prediction]:
    """Ten examples: confidences 0.95 .. 0.5; the four most confident are right, then it alternates;
    example 9 is an invalid answer (never answered)."""
    rows = []
    right = [True, True, True, True, False, True, False, True, False]
    for i, ok in enumerate(right):
        rows.append(_pred(i, "a", "a" if ok else "b", round(0.95 - 0.05 * i, 2)))
    rows.append(_pred(9, "a", None, None, outcome="invalid_json"))
    return rows


def test_coverage_at_thresholds_counts_invalid_answers_as_abstentions():
    curve = coverage_curve(_ten(), thresholds=(0.5, 0.8, 0.9), target=0.9)
    assert curve["available"] and curve["n"] == 10
    points = {p["threshold"]: p for p in curve["points"]}
    # No threshold: the 9 valid answers, 6 right.
    assert points[0.0] == {"threshold": 0.0, "answered": 9, "coverage": 0.9, "accuracy": pytest.approx(6 / 9, abs=1e-6)}
    assert points[0.8]["answered"] == 4 and points[0.8]["accuracy"] == 1.0 and points[0.8]["coverage"] == 0.4
    assert points[0.9]["answered"] == 2 and points[0.9]["coverage"] == 0.2
    assert points[0.5]["answered"] == 9


def test_threshold_for_target_is_the_lowest_cut_that_is_accurate_enough():
    curve = coverage_curve(_ten(), target=0.8)
    # Answering the top 6 (conf >= 0.70) gives 5/6 = 0.833; top 8 (>= 0.60) gives 6/8 = 0.75;
    # top 7 gives 5/7 = 0.714. So 0.70 is the lowest threshold reaching 80%.
    assert curve["at_target"] == {"threshold": 0.7, "answered": 6, "coverage": 0.6, "accuracy": pytest.approx(5 / 6, abs=1e-6)}
    assert coverage_curve(_ten(), target=1.0)["at_target"]["threshold"] == 0.8
    never = [_pred(i, "a", "b", 0.9) for i in range(3)]
    assert coverage_curve(never, target=0.5)["at_target"] is None


def test_tied_confidences_are_answered_together():
    rows = [_pred(0, "a", "a", 0.9), _pred(1, "a", "b", 0.9), _pred(2, "a", "a", 0.5)]
    curve = coverage_curve(rows, thresholds=(0.9,), target=0.6)
    # The two 0.9 answers come together (1/2 right); adding the 0.5 one gives 2/3 >= 0.6.
    assert curve["at_target"]["threshold"] == 0.5 and curve["at_target"]["answered"] == 3
    at_09 = next(p for p in curve["points"] if p["threshold"] == 0.9)
    assert at_09["answered"] == 2 and at_09["accuracy"] == 0.5


def test_multi_label_answers_are_right_only_as_an_exact_set():
    rows = [
        _pred(0, ["joy", "love"], ["love", "joy"], 0.8),
        _pred(1, ["joy", "love"], ["joy"], 0.7),
        _pred(2, ["anger"], ["anger"], 0.6),
    ]
    points = {p["threshold"]: p for p in coverage_curve(rows, thresholds=(0.65,))["points"]}
    assert points[0.65]["accuracy"] == 0.5
    assert points[0.0]["accuracy"] == pytest.approx(2 / 3, abs=1e-6)


def test_records_without_confidence_get_no_curve_and_say_why():
    rows = [_pred(0, "a", "a", None), _pred(1, "a", "b", 0.7)]
    curve = coverage_curve(rows)
    assert curve == {"available": False, "reason": curve["reason"]}
    assert "1 of 2 valid answers carry no confidence" in curve["reason"]
    assert coverage_curve([_pred(0, "a", None, None, outcome="refusal")])["available"] is False


def test_report_shows_curves_and_names_rows_without_one():
    preds = _ten() + [_pred(i, "a", "a", None, model="llm") for i in range(10)]
    metrics = score_run(preds, ["a", "b"], "single_label", coverage=True)
    lines = coverage_markdown(metrics)
    text = "\n".join(lines)
    assert "## Coverage vs accuracy" in text
    assert "| m | p | 90.0% / 66.7% |" in text  # all valid answers: coverage / accuracy
    assert "`llm` / `p`: no curve" in text
    report = markdown_report({"spec": "s"}, metrics)
    assert "## Coverage vs accuracy" in report


def test_bootstrap_intervals_are_seeded_and_contain_the_figure():
    preds = [_pred(i, "a" if i % 2 else "b", "a" if i % 3 else "b", 0.9) for i in range(200)]
    metrics = score_run(preds, ["a", "b"], "single_label", intervals=True, resamples=500, seed=3)
    m = metrics[0]
    low, high = m["accuracy_ci"]
    assert low < m["accuracy"] < high and high - low < 0.2
    low, high = m["macro_f1_ci"]
    assert low < m["macro_f1"] < high
    in_example_order = sorted(preds, key=lambda p: p.example_id)
    again = bootstrap_ci(encode(in_example_order, ["a", "b"], "single_label"), resamples=500, seed=3)
    assert again["accuracy_ci"] == m["accuracy_ci"]
    assert "| m | p | " in "\n".join(intervals_markdown(metrics))


def test_bootstrap_for_multi_label_uses_subset_accuracy():
    preds = [_pred(i, ["x", "y"] if i % 2 else ["x"], ["x"], 0.5) for i in range(100)]
    ci = bootstrap_ci(encode(preds, ["x", "y"], "multi_label"), resamples=300)
    assert ci["accuracy_ci"][0] < 0.5 < ci["accuracy_ci"][1]
