"""Confidence figures for a metrics row: is a model's probability worth believing?

Plain numpy functions over arrays (so they can move into a metric kernel), plus `row_figures()`,
which builds the `calibration` part of a metrics row (the shared contract in HELPERS.md):

    {"n", "ece", "ece_equal_mass", "brier", "log_loss", "margin_mean", "entropy_mean", "bins": [...]}

* ECE: sum over bins of |accuracy - mean confidence| weighted by the bin's share, on the top-label
  confidence; equal-width bins (10, the reliability diagram) and equal-mass bins (each holds n/10).
* Brier score as scikit-learn computes it: binary tasks the mean squared error of P(labels[1]);
  more labels the mean over examples of the sum over labels of (p - onehot)^2.
* log loss: mean -log p(gold), probabilities clipped at 1e-15 (as scikit-learn).
* margin: top probability minus the second; entropy in nats (both per example:
  `harness.metrics.kernel.uncertainty`, stamped on each record by `stamp_uncertainty`); the row's
  mean margin, mean entropy and share of near ties (margin below `kernel.LOW_MARGIN`) are kernel
  figures over the valid answers that carry a distribution.

Rows with a full distribution (label_probs of label-likelihood rows, a baseline's probabilities,
any binary task where the chosen label's confidence fixes the other one) get every figure. Rows
with only the chosen label's confidence (multi-class token logprobs, stated confidences) get ECE
and the top-label Brier score (confidence vs correct), and null for log loss, margin and entropy.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from harness.metrics import kernel
from harness.metrics.kernel import uncertainty

N_BINS = 10
CLIP = 1e-15


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS, equal_mass: bool = False) -> float:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    n = len(confidence)
    if n == 0:
        return float("nan")
    total = 0.0
    for idx in _bin_indices(confidence, n_bins, equal_mass):
        if len(idx):
            total += len(idx) / n * abs(correct[idx].mean() - confidence[idx].mean())
    return float(total)


def _bin_indices(confidence: np.ndarray, n_bins: int, equal_mass: bool) -> list[np.ndarray]:
    if equal_mass:
        order = np.argsort(confidence, kind="stable")
        return [chunk for chunk in np.array_split(order, n_bins)]
    # bins (lo, hi] as in most ECE code; confidence 0 falls in the first bin
    which = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    return [np.flatnonzero(which == b) for b in range(n_bins)]


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    out = []
    for b, idx in enumerate(_bin_indices(confidence, n_bins, False)):
        if not len(idx):
            continue  # empty bins are left out (the contract's bins hold numbers)
        out.append({
            "lo": round(b / n_bins, 6), "hi": round((b + 1) / n_bins, 6), "n": int(len(idx)),
            "confidence": round(float(confidence[idx].mean()), 6),
            "accuracy": round(float(correct[idx].mean()), 6),
        })
    return out


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's brier_score_loss: binary on P(class 1), multi-class the sum over classes."""
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    y = np.asarray(y, dtype=int)
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(probs.shape[1])[y]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    probs = np.atleast_2d(np.asarray(probs, dtype=float))
    probs = probs / probs.sum(axis=1, keepdims=True)
    p = np.clip(probs[np.arange(len(y)), np.asarray(y, dtype=int)], CLIP, 1 - CLIP)
    return float(-np.mean(np.log(p)))


def figures(probs: np.ndarray | None, y: np.ndarray | None, confidence: np.ndarray, correct: np.ndarray) -> dict:
    """The contract dict from a full distribution (`probs`, `y`) or only top-label confidences."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    full = probs is not None
    margin, entropy = uncertainty(probs) if full else (None, None)
    return {
        "n": int(len(confidence)),
        "ece": _r(ece(confidence, correct)),
        "ece_equal_mass": _r(ece(confidence, correct, equal_mass=True)),
        "brier": _r(brier(probs, y) if full else float(np.mean((confidence - correct) ** 2))),
        "log_loss": _r(log_loss(probs, y)) if full else None,
        "margin_mean": _r(float(margin.mean())) if full else None,
        "entropy_mean": _r(float(entropy.mean())) if full else None,
        "bins": reliability_bins(confidence, correct),
    }


def _r(value: float) -> float:
    return round(float(value), 6)


# ---------------------------------------------------------------------------------------------
# From prediction records


def distribution(pred: Any, labels: list[str]) -> list[float] | None:
    """A prediction's probability for every label, when the record has one."""
    probs = getattr(pred, "label_probs", None)
    if isinstance(probs, dict) and all(l in probs for l in labels):
        return [float(probs[l]) for l in labels]
    if getattr(pred, "parsed_from", None) == "baseline" and isinstance(pred.raw, str):
        try:
            data = json.loads(pred.raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and all(isinstance(data.get(l), (int, float)) for l in labels):
            values = [float(data[l]) for l in labels]
            total = sum(values)
            return [v / total for v in values] if total > 0 else None
    if len(labels) == 2 and pred.confidence is not None and pred.prediction in labels:
        c = float(pred.confidence)
        return [c, 1 - c] if pred.prediction == labels[0] else [1 - c, c]
    return None


def stamp_uncertainty(pred: Any, labels: list[str], task: str) -> Any:
    """Set a record's `margin` and `entropy` (kernel.uncertainty) when it has a probability for
    every label (`distribution`; single-label tasks: multi-label probabilities are one per label, not
    a distribution) and they are not set yet; the record is returned."""
    stamp_uncertainties([pred], labels, task)
    return pred


def stamp_uncertainties(preds: Sequence[Any], labels: list[str], task: str) -> None:
    """`stamp_uncertainty` over many records with one kernel call (the prediction writer stamps
    each batch it flushes: a kernel call per record cost more than the rest of a cached answer)."""
    if task != "single_label":
        return
    todo, dists = [], []
    for pred in preds:
        if pred.margin is None and pred.outcome == "valid":
            dist = distribution(pred, labels)
            if dist is not None:
                todo.append(pred)
                dists.append(dist)
    if todo:
        margin, entropy = uncertainty(dists)
        for pred, m, e in zip(todo, margin.tolist(), entropy.tolist()):
            pred.margin, pred.entropy = _r(m), _r(e)


def row_figures(preds: Sequence[Any], labels: list[str], task: str, enc: Any = None) -> dict | None:
    """The `calibration` figures of one model × prompt row; None when no answer has a probability.
    With the row's encoding `enc` (its records stamped by `stamp_uncertainty`), the margin and
    entropy summaries come from the kernel, over the valid answers with a distribution."""
    out = _row_figures(preds, labels, task)
    if out is not None and enc is not None and not np.isnan(enc.margin).all():
        w = kernel.valid_weights(enc)
        out["margin_mean"] = kernel.rounded(kernel.margin_mean(enc, w))
        out["entropy_mean"] = kernel.rounded(kernel.entropy_mean(enc, w))
        out["low_margin_share"] = kernel.rounded(kernel.low_margin_share(enc, w))
        out["low_margin_threshold"] = kernel.LOW_MARGIN
    return out


def _row_figures(preds: Sequence[Any], labels: list[str], task: str) -> dict | None:
    if task != "single_label":
        return None
    index = {l: i for i, l in enumerate(labels)}
    scored = [p for p in preds if p.outcome == "valid" and p.prediction in index and p.gold in index
              and (p.confidence is not None or getattr(p, "label_probs", None))]
    if not scored:
        return None
    dists = [distribution(p, labels) for p in scored]
    y = np.array([index[p.gold] for p in scored])
    correct = np.array([p.prediction == p.gold for p in scored], dtype=float)
    if all(d is not None for d in dists):
        probs = np.array(dists, dtype=float)
        confidence = probs[np.arange(len(scored)), [index[p.prediction] for p in scored]]
        return figures(probs, y, confidence, correct)
    confidence = np.array([float(p.confidence) if p.confidence is not None else max(d or [0]) for p, d in zip(scored, dists)])
    return figures(None, None, confidence, correct)


def confidence_markdown(metrics: list[dict]) -> list[str]:
    """report.md section: figures per row, fitted calibration parameters, low label mass."""
    rows = [m for m in metrics if m.get("calibration")]
    if not rows:
        return []
    lines = ["## Confidence", "",
             "How far to trust each row's probabilities (top-label confidence; ECE over 10 equal-width "
             "/ 10 equal-mass bins; Brier and log loss on the label distribution, lower is better).", "",
             "| model | prompt | n | ECE | ECE (equal mass) | Brier | log loss | margin | entropy | low margin |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v):
        return "–" if v is None else f"{v:.3f}"

    def pct(v):
        return "–" if v is None else f"{v:.1%}"

    for m in rows:
        c = m["calibration"]
        lines.append(f"| {_md(m['model'])} | {_md(m['prompt'])} | {c['n']} | {f(c['ece'])} | "
                     f"{f(c['ece_equal_mass'])} | {f(c['brier'])} | {f(c['log_loss'])} | "
                     f"{f(c['margin_mean'])} | {f(c['entropy_mean'])} | {pct(c.get('low_margin_share'))} |")
    lines.append("")
    if any((m["calibration"].get("low_margin_threshold") is not None) for m in rows):
        threshold = next(m["calibration"]["low_margin_threshold"] for m in rows
                         if m["calibration"].get("low_margin_threshold") is not None)
        lines += [f"Margin: top label probability minus the second (mean per answer); entropy in nats; low "
                  f"margin: share of answers whose top two labels are less than {threshold:g} apart.", ""]
    fits = [m for m in metrics if m.get("calibration_fit")]
    if fits:
        lines += ["Calibration fitted on the validation split (never the evaluated one):", ""]
        for m in fits:
            fit = m["calibration_fit"]
            v = fit.get("validation") or {}
            where = (f"{v.get('split')} ({v.get('n')} examples; accuracy {v.get('accuracy_before', 0):.1%} "
                     f"→ {v.get('accuracy_after', 0):.1%})" if v.get("n") else "content-free inputs")
            lines.append(f"- `{m['model']}` / `{m['prompt']}`: **{fit['method']}** on {where}: "
                         f"`{json.dumps(fit['params'], ensure_ascii=False)}`")
        lines.append("")
    low = [m for m in metrics if (m.get("label_mass") or {}).get("low")]
    for m in low:
        lm = m["label_mass"]
        lines.append(f"- ⚠ `{m['model']}` / `{m['prompt']}`: the labels got a mean probability mass of "
                     f"{lm['mean']:.2f}; {lm['low']} of {lm['n']} answers below {lm['threshold']:g} — the "
                     "model wanted to say something else there.")
    if low:
        lines.append("")
    return lines


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|")
