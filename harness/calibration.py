"""Recalibrating label probabilities: fitted on the validation split, applied to the evaluated one.

Every method maps an (n, K) matrix of label probabilities to another; `fit()` returns a `Calibrator`
whose `params` are plain JSON (written to metrics.json and report.md). Methods:

* `threshold` — per-class log-bias b: p' ∝ p · exp(b). Binary: one decision threshold t on
  P(labels[1]) (b = logit(t) on labels[0]; p' = t maps to 0.5), chosen among the midpoints of the
  validation scores to maximise `metric` (accuracy or macro-F1; ties: the threshold nearest 0.5).
  More labels: coordinate ascent over a grid of biases, a few rounds.
* `contextual` — Zhao et al. 2021, "Calibrate Before Use": the mean label probabilities p_cf of
  content-free inputs ("N/A", "", "[MASK]" through the same template) are divided out:
  p' ∝ p / p_cf. Needs no labelled data.
* `temperature` — p' = softmax(log p / T), one T > 0 minimising validation NLL; argmax unchanged.
* `platt` — p' = softmax(a · log p + b), scale a > 0 and per-class bias b (b[0] = 0) minimising
  validation NLL (binary: Platt scaling on the log-odds).

Plain numpy/scipy; no fitting ever sees the evaluated split (the runner passes validation only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPS = 1e-12


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=float), EPS, None))


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    probs = np.asarray(probs, dtype=float)
    return float(-np.mean(_log(probs[np.arange(len(y)), y])))


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y))) if len(y) else 0.0


def macro_f1(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp = np.sum((pred == c) & (y != c))
        fn = np.sum((pred != c) & (y == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


@dataclass
class Calibrator:
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        probs = np.atleast_2d(np.asarray(probs, dtype=float))
        z = _log(probs)
        if self.method == "none":
            return probs / probs.sum(axis=1, keepdims=True)
        if self.method in ("threshold", "contextual"):
            return softmax(z + np.asarray(self.params["log_bias"], dtype=float))
        if self.method == "temperature":
            return softmax(z / float(self.params["temperature"]))
        if self.method == "platt":
            return softmax(float(self.params["scale"]) * z + np.asarray(self.params["bias"], dtype=float))
        raise ValueError(f"unknown calibration method {self.method!r}")


def fit(method: str, probs: np.ndarray | None, y: np.ndarray | None, labels: list[str], *,
        metric: str = "accuracy", content_free: np.ndarray | None = None) -> Calibrator:
    """Fit `method` on validation probabilities `probs` (n, K) with gold indices `y` (n,)."""
    k = len(labels)
    if method == "none":
        return Calibrator("none", {}, labels)
    if method == "contextual":
        if content_free is None or len(content_free) == 0:
            raise ValueError("contextual calibration needs the content-free inputs' probabilities")
        mean = np.clip(np.mean(np.atleast_2d(content_free), axis=0), EPS, None)
        mean = mean / mean.sum()
        return Calibrator("contextual", {
            "content_free_probs": {l: round(float(v), 6) for l, v in zip(labels, mean)},
            "log_bias": [round(float(-np.log(v)), 6) for v in mean],
        }, labels)
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    y = np.asarray(y, dtype=int)
    if len(y) < 2:
        raise ValueError("calibration needs at least 2 validation examples")
    z = _log(probs)
    if method == "threshold":
        bias = _fit_bias(z, y, k, metric)
        params: dict[str, Any] = {"metric": metric, "log_bias": [round(float(b), 6) for b in bias]}
        if k == 2:
            # p'(labels[1]) >= 0.5  <=>  log p1 - log p0 >= b0 - b1  <=>  p1 >= sigmoid(b0 - b1)
            params["threshold"] = round(float(1 / (1 + np.exp(-(bias[0] - bias[1])))), 6)
            params["threshold_on"] = labels[1]
        return Calibrator("threshold", params, labels)
    from scipy.optimize import minimize

    if method == "temperature":
        res = minimize(lambda v: nll(softmax(z / np.exp(v[0])), y), x0=[0.0], method="L-BFGS-B",
                       bounds=[(-5, 5)])
        return Calibrator("temperature", {"temperature": round(float(np.exp(res.x[0])), 6)}, labels)
    if method == "platt":
        def loss(v):
            return nll(softmax(np.exp(v[0]) * z + np.concatenate([[0.0], v[1:]])), y)

        res = minimize(loss, x0=np.zeros(k), method="L-BFGS-B",
                       bounds=[(-5, 5)] + [(-50, 50)] * (k - 1))
        return Calibrator("platt", {
            "scale": round(float(np.exp(res.x[0])), 6),
            "bias": [0.0] + [round(float(b), 6) for b in res.x[1:]],
        }, labels)
    raise ValueError(f"unknown calibration method {method!r}")


def _score(z: np.ndarray, bias: np.ndarray, y: np.ndarray, k: int, metric: str) -> float:
    pred = np.argmax(z + bias, axis=1)
    return macro_f1(pred, y, k) if metric == "macro_f1" else accuracy(pred, y)


def _fit_bias(z: np.ndarray, y: np.ndarray, k: int, metric: str) -> np.ndarray:
    if k == 2:
        # Decision on d = z1 - z0 >= c; candidates: midpoints between sorted distinct d values.
        d = np.sort(np.unique(z[:, 1] - z[:, 0]))
        cands = np.concatenate([[d[0] - 1.0], (d[:-1] + d[1:]) / 2, [d[-1] + 1.0]]) if len(d) else np.array([0.0])
        best_c, best_s = 0.0, -1.0
        for c in cands:
            s = _score(z, np.array([c, 0.0]), y, 2, metric)
            if s > best_s + 1e-12 or (abs(s - best_s) <= 1e-12 and abs(c) < abs(best_c)):
                best_c, best_s = float(c), s
        return np.array([best_c, 0.0])
    bias = np.zeros(k)
    grid = np.linspace(-6, 6, 121)
    for _ in range(5):
        changed = False
        for c in range(1, k):
            best_b, best_s = bias[c], _score(z, bias, y, k, metric)
            for b in grid:
                trial = bias.copy()
                trial[c] = b
                s = _score(z, trial, y, k, metric)
                if s > best_s + 1e-12:
                    best_b, best_s = b, s
            if best_b != bias[c]:
                bias[c] = best_b
                changed = True
        if not changed:
            break
    return bias


def fit_score_threshold(scores, y, labels: list[str], *, metric: str = "accuracy",
                        fixed: float = 0.5) -> dict[str, Any]:
    """The decision threshold of a generated 0-1 score answer (P(labels[1])), fitted on
    validation scores `scores` with gold indices `y` by the `threshold` method above: scores are
    read as probabilities (1 - s, s) and the threshold is where the fitted log-bias moves the
    decision, so it lies between two validation scores (ties: nearest 0.5). Returns {"params":
    {"metric", "threshold", "threshold_on", "log_bias"}, "validation": {"accuracy_before" (at
    `fixed`), "accuracy_after", the same for macro_f1}}."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(y) < 2:
        raise ValueError("a threshold needs at least 2 valid validation answers")
    calibrator = fit("threshold", np.stack([1 - s, s], axis=1), y, labels, metric=metric)
    t = calibrator.params["threshold"]
    before, after = (s >= fixed).astype(int), (s >= t).astype(int)
    return {"params": calibrator.params, "validation": {
        "threshold_before": fixed,
        "accuracy_before": round(accuracy(before, y), 6), "accuracy_after": round(accuracy(after, y), 6),
        "macro_f1_before": round(macro_f1(before, y, 2), 6), "macro_f1_after": round(macro_f1(after, y, 2), 6),
    }}
