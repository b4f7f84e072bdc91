"""Calibration methods on synthetic scores with a known answer, and the confidence figures checked
against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from harness import calibration as cb
from harness import confidence_metrics as cm
from harness.records import Prediction

LABELS = ["negative", "positive"]


def binary(p1):
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


def test_threshold_finds_the_separating_cut():
    # every example is positive iff P(positive) >= 0.3: argmax gets the 0.3-0.5 band wrong
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.05, 0.95, 400)
    y = (p1 >= 0.3).astype(int)
    cal = cb.fit("threshold", binary(p1), y, LABELS)
    assert 0.28 < cal.params["threshold"] < 0.32 and cal.params["threshold_on"] == "positive"
    after = cal.apply(binary(p1))
    assert cb.accuracy(after.argmax(1), y) == 1.0
    assert cb.accuracy(binary(p1).argmax(1), y) < 0.85
    # a probability at the threshold maps to 0.5
    assert cal.apply(binary([cal.params["threshold"]]))[0, 1] == pytest.approx(0.5, abs=1e-6)


def test_threshold_with_more_labels_is_a_per_class_bias():
    rng = np.random.default_rng(1)
    n, k = 600, 3
    true_logits = rng.normal(size=(n, k)) * 2
    y = true_logits.argmax(1)
    shifted = cb.softmax(true_logits + np.array([0.0, 1.5, -1.0]))  # a model biased towards class 1
    cal = cb.fit("threshold", shifted, y, ["a", "b", "c"], metric="macro_f1")
    bias = np.array(cal.params["log_bias"])
    assert bias[1] - bias[0] == pytest.approx(-1.5, abs=0.25) and bias[2] - bias[0] == pytest.approx(1.0, abs=0.25)
    assert cb.accuracy(cal.apply(shifted).argmax(1), y) > 0.97


def test_contextual_divides_out_the_content_free_prior():
    cf = np.array([[0.8, 0.2], [0.7, 0.3], [0.9, 0.1]])  # the model says "negative" to anything
    cal = cb.fit("contextual", None, None, LABELS, content_free=cf)
    prior = cf.mean(axis=0)
    assert cal.params["content_free_probs"]["negative"] == pytest.approx(prior[0], abs=1e-6)
    out = cal.apply(np.array([[0.8, 0.2], [0.6, 0.4]]))
    expected = np.array([[0.8, 0.2], [0.6, 0.4]]) / prior
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-6)
    assert cal.apply(prior[None, :])[0] == pytest.approx([0.5, 0.5], abs=1e-6)  # the prior becomes uniform


def _sampled(rng, n, logits_scale, temperature):
    z = rng.normal(size=(n, 3)) * logits_scale
    true = cb.softmax(z)
    y = np.array([rng.choice(3, p=p) for p in true])
    over = cb.softmax(z / temperature)  # what an over/under-confident model reports
    return over, y


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(2)
    over, y = _sampled(rng, 4000, 2.0, 0.5)  # reported logits are twice the true ones
    cal = cb.fit("temperature", over, y, ["a", "b", "c"])
    assert cal.params["temperature"] == pytest.approx(2.0, rel=0.1)
    assert np.array_equal(cal.apply(over).argmax(1), over.argmax(1))  # argmax unchanged
    assert cb.nll(cal.apply(over), y) < cb.nll(over, y)


def test_platt_recovers_scale_and_bias():
    rng = np.random.default_rng(3)
    d = rng.normal(size=5000) * 2  # true log-odds of positive
    y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-d))).astype(int)
    reported = (d - 1.0) / 0.5  # the model reports log-odds 2x too sharp and shifted
    p1 = 1 / (1 + np.exp(-reported))
    cal = cb.fit("platt", binary(p1), y, LABELS)
    # softmax(a*log p + b): log-odds become a * reported + b[1]; truth: 0.5 * reported + 1
    assert cal.params["scale"] == pytest.approx(0.5, rel=0.1)
    assert cal.params["bias"][1] == pytest.approx(1.0, abs=0.15)


def test_none_and_unknown():
    p = binary([0.2, 0.9])
    assert np.allclose(cb.fit("none", p, np.array([0, 1]), LABELS).apply(p), p)
    with pytest.raises(ValueError):
        cb.fit("isotonic", p, np.array([0, 1]), LABELS)


# -- figures vs scikit-learn ----------------------------------------------------------------


def test_brier_and_log_loss_match_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(4)
    p1 = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p1).astype(int)
    assert cm.brier(binary(p1), y) == pytest.approx(brier_score_loss(y, p1), abs=1e-12)
    assert cm.log_loss(binary(p1), y) == pytest.approx(log_loss(y, binary(p1)), abs=1e-12)
    probs = cb.softmax(rng.normal(size=(300, 4)))
    y4 = rng.integers(0, 4, 300)
    assert cm.log_loss(probs, y4) == pytest.approx(log_loss(y4, probs, labels=range(4)), abs=1e-12)
    assert cm.brier(probs, y4) == pytest.approx(brier_score_loss(y4, probs, labels=range(4)), abs=1e-12)


def test_ece_matches_sklearn_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(5)
    conf = rng.uniform(size=500)
    correct = (rng.uniform(size=500) < conf ** 1.5).astype(int)
    for strategy, equal_mass in (("uniform", False), ("quantile", True)):
        prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy=strategy)
        # sklearn drops empty bins and returns per-bin means; weight them by bin counts
        if equal_mass:
            edges = np.percentile(conf, np.linspace(0, 100, 11))
        else:
            edges = np.linspace(0, 1, 11)
        ids = np.searchsorted(edges[1:-1], conf, side="right")
        counts = np.bincount(ids, minlength=10)
        counts = counts[counts > 0]
        expected = float(np.sum(counts / len(conf) * np.abs(prob_true - prob_pred)))
        assert cm.ece(conf, correct, equal_mass=equal_mass) == pytest.approx(expected, abs=0.01)
    # a perfectly calibrated bin structure has ECE 0; an always-wrong confident model has ECE = conf
    assert cm.ece(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)


def test_row_figures_from_label_probs_baselines_and_binary_confidences():
    preds = [
        Prediction("a", "m", "p", "negative", "negative", "valid", label_probs={"negative": 0.8, "positive": 0.2}, confidence=0.8),
        Prediction("b", "m", "p", "positive", "negative", "valid", label_probs={"negative": 0.6, "positive": 0.4}, confidence=0.6),
        Prediction("c", "m", "p", "positive", None, "api_error"),
    ]
    fig = cm.row_figures(preds, LABELS, "single_label")
    assert fig["n"] == 2
    assert fig["brier"] == pytest.approx(((0.2 - 0) ** 2 + (0.4 - 1) ** 2) / 2)
    assert fig["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)
    assert fig["margin_mean"] == pytest.approx((0.6 + 0.2) / 2)
    assert sum(b["n"] for b in fig["bins"]) == 2 and len(fig["bins"]) == 2  # empty bins left out
    assert set(fig) == {"n", "ece", "ece_equal_mass", "brier", "log_loss", "margin_mean", "entropy_mean", "bins"}
    base = [Prediction("a", "baseline:x", "-", "positive", "positive", "valid", parsed_from="baseline",
                       raw='{"negative": 0.3, "positive": 0.7}', confidence=0.7)]
    assert cm.row_figures(base, LABELS, "single_label")["log_loss"] == pytest.approx(-np.log(0.7))
    only = [Prediction("a", "m", "p", "x", "y", "valid", confidence=0.9)]
    fig3 = cm.row_figures(only, ["x", "y", "z"], "single_label")
    assert fig3["log_loss"] is None and fig3["brier"] == pytest.approx(0.81)
    assert cm.row_figures([Prediction("a", "m", "p", "x", "x", "valid")], ["x", "y"], "single_label") is None
