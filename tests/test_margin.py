"""Margin and entropy of a label distribution (seed chapter 4): per example on the prediction
record, summarised per row through the metric kernel (mean margin, mean entropy, share of near
ties), with hand-computed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.confidence_metrics import stamp_uncertainty
from harness.metrics import kernel
from harness.metrics.assemble import score_run
from harness.records import Prediction
from harness.spec import load_spec

LABELS = ["x", "y", "z"]


def test_uncertainty_by_hand():
    margin, entropy = kernel.uncertainty([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    assert margin.tolist() == pytest.approx([0.2, 1.0, 0.25])
    # -(.5 ln .5 + .3 ln .3 + .2 ln .2); 0 ln 0 = 0; -(2 · .25 ln .25 + .5 ln .5) = 1.5 ln 2
    assert entropy.tolist() == pytest.approx([1.029653, 0.0, 1.039721], abs=1e-6)


def likelihood_record(i: int, probs: dict | None, gold: str = "x") -> Prediction:
    if probs is None:
        return Prediction(example_id=f"test:{i}", model="m", prompt="lik", gold=gold, prediction=None, outcome="api_error")
    top = max(probs, key=probs.get)
    return Prediction(example_id=f"test:{i}", model="m", prompt="lik", gold=gold, prediction=top, outcome="valid",
                      parsed_from="label", confidence=probs[top], label_probs=probs)


def test_records_carry_margin_and_entropy_and_rows_summarise_them():
    preds = [likelihood_record(1, {"x": 0.5, "y": 0.45, "z": 0.05}),   # margin .05: a near tie
             likelihood_record(2, {"x": 0.7, "y": 0.2, "z": 0.1}),     # .5
             likelihood_record(3, {"x": 0.33, "y": 0.34, "z": 0.33}),  # .01: a near tie
             likelihood_record(4, None)]                              # no answer: not counted
    for p in preds:
        stamp_uncertainty(p, LABELS, "single_label")
    assert [p.margin for p in preds] == [pytest.approx(0.05), pytest.approx(0.5), pytest.approx(0.01), None]
    assert [p.entropy for p in preds[:3]] == pytest.approx([0.855689, 0.801819, 1.098513], abs=1e-6)
    assert '"margin": 0.05' in preds[0].to_json()
    cal = score_run(preds, LABELS, "single_label")[0]["calibration"]
    assert cal["margin_mean"] == pytest.approx((0.05 + 0.5 + 0.01) / 3, abs=1e-6)
    assert cal["entropy_mean"] == pytest.approx((0.855689 + 0.801819 + 1.098513) / 3, abs=1e-6)
    assert cal["low_margin_share"] == pytest.approx(2 / 3, abs=1e-6) and cal["low_margin_threshold"] == 0.1


def test_kernel_summaries_take_weights_like_every_figure():
    preds = [likelihood_record(1, {"x": 0.5, "y": 0.45, "z": 0.05}), likelihood_record(2, {"x": 0.7, "y": 0.2, "z": 0.1}),
             likelihood_record(3, None)]
    for p in preds:
        stamp_uncertainty(p, LABELS, "single_label")
    enc = kernel.encode(preds, LABELS, "single_label")
    # example 1 drawn twice, example 2 once: (2·.05 + .5) / 3; a row of the invalid one only: undefined
    w = kernel.np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    assert kernel.margin_mean(enc, w).tolist()[0] == pytest.approx(0.2)
    assert kernel.low_margin_share(enc, w).tolist()[0] == pytest.approx(2 / 3)
    assert kernel.np.isnan(kernel.margin_mean(enc, w)[1])


def test_binary_confidences_and_baseline_probabilities_give_a_distribution():
    binary = Prediction(example_id="test:1", model="m", prompt="p", gold="neg", prediction="neg", outcome="valid",
                        confidence=0.8)
    stamp_uncertainty(binary, ["neg", "pos"], "single_label")
    assert (binary.margin, binary.entropy) == (pytest.approx(0.6), pytest.approx(0.500402, abs=1e-6))
    baseline = Prediction(example_id="test:1", model="b", prompt="(baseline)", gold="x", prediction="y", outcome="valid",
                          parsed_from="baseline", raw='{"x": 0.2, "y": 0.6, "z": 0.2}', confidence=0.6)
    stamp_uncertainty(baseline, LABELS, "single_label")
    assert baseline.margin == pytest.approx(0.4)
    # a stated confidence on three labels is no distribution; multi-label probabilities are none either
    stated = Prediction(example_id="test:1", model="m", prompt="p", gold="x", prediction="x", outcome="valid", confidence=0.9)
    assert stamp_uncertainty(stated, LABELS, "single_label").margin is None
    multi = Prediction(example_id="test:1", model="b", prompt="(baseline)", gold=["x"], prediction=["x"], outcome="valid",
                       parsed_from="baseline", raw='{"x": 0.9, "y": 0.8, "z": 0.1}')
    assert stamp_uncertainty(multi, LABELS, "multi_label").margin is None


def test_emotion_spec_has_a_label_likelihood_prompt():
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "emotion.yaml")
    assert [p.answer for p in spec.prompts] == ["generate", "label_likelihood"]
