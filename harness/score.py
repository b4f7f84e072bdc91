"""Metrics for a run: one dict of figures per model×prompt, from `Prediction` records.

Two views of every quality figure:

* **strict** — over all examples; an output that could not be read counts as wrong. For single-label
  tasks it becomes the pseudo-label `<invalid>` (never a class in the averages, so it only lowers
  recall); for multi-label tasks it becomes the empty label set.
* **valid-only** (`*_valid`) — over the examples whose output was read; None when there are none.

The figures follow scikit-learn's definitions but are computed with numpy: importing sklearn costs
~1.6 s, more than a whole cached replay (tests/test_score_sklearn.py holds sklearn as the reference).
All floats are rounded to 6 decimals; figures that are undefined are None.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from harness.records import OUTCOMES, Prediction, group_predictions

INVALID = "<invalid>"
TASKS = ("single_label", "multi_label")
_ROUND = 6


def score_run(preds: list[Prediction], labels: list[str], task: str) -> list[dict]:
    """Score each (model, prompt) group, in order of first appearance in `preds`."""
    groups = group_predictions(preds)
    out = []
    for (model, prompt), members in groups.items():
        row: dict[str, Any] = {"model": model, "prompt": prompt}
        row.update(score_group(members, labels, task))
        out.append(row)
    return out


def score_group(preds: list[Prediction], labels: list[str], task: str) -> dict:
    """All figures for one group of predictions (normally one model×prompt)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    labels = list(labels)
    n = len(preds)
    valid = [p for p in preds if p.outcome == "valid"]
    outcomes = {o: 0 for o in OUTCOMES}
    for p in preds:
        outcomes[p.outcome] = outcomes.get(p.outcome, 0) + 1  # an unknown outcome still shows up
    parsed_from: dict[str, int] = {}
    for p in valid:
        key = p.parsed_from or "unknown"
        parsed_from[key] = parsed_from.get(key, 0) + 1

    metrics: dict[str, Any] = {
        "n": n,
        "n_valid": len(valid),
        "validity": _ratio(len(valid), n),
        "outcomes": outcomes,
        "parsed_from": dict(sorted(parsed_from.items())),
    }
    if task == "single_label":
        metrics.update(_single_label(preds, valid, labels))
    else:
        metrics.update(_multi_label(preds, valid, labels))
    metrics.update(_timing(preds))
    return metrics


# ---------------------------------------------------------------------------------------------
# Single-label


def _single_label(preds: list[Prediction], valid: list[Prediction], labels: list[str]) -> dict:
    strict = _single_figures(
        [str(p.gold) for p in preds],
        [str(p.prediction) if p.outcome == "valid" else INVALID for p in preds],
        labels,
    )
    only_valid = (
        _single_figures([str(p.gold) for p in valid], [str(p.prediction) for p in valid], labels)
        if valid else None
    )
    out: dict[str, Any] = {}
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        out[key] = strict[key] if strict else None
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        out[f"{key}_valid"] = only_valid[key] if only_valid else None
    out["per_class"] = strict["per_class"] if strict else None
    out["per_class_valid"] = only_valid["per_class"] if only_valid else None
    out["confusion"] = _confusion(preds, labels)
    return out


def _single_figures(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict | None:
    if not y_true:
        return None
    import numpy as np

    # Only the classes in `labels` are averaged, so `<invalid>` (and any stray answer) can only
    # lower the recall of the gold class — sklearn's `labels=labels`.
    index = {name: i for i, name in enumerate(labels)}
    true = np.array([index.get(t, -1) for t in y_true], dtype=np.int64)
    pred = np.array([index.get(p, -2) for p in y_pred], dtype=np.int64)
    k = len(labels)
    true_sum = np.bincount(true[true >= 0], minlength=k)
    pred_sum = np.bincount(pred[pred >= 0], minlength=k)
    tp_sum = np.bincount(true[true == pred], minlength=k)  # equal only where both are labels
    precision, recall, f1 = _prf(tp_sum, pred_sum, true_sum)
    # A gold value outside `labels` never equals a prediction, as in sklearn's accuracy_score.
    correct = sum(1 for t, p in zip(y_true, y_pred) if t == p)
    return {
        "accuracy": _round(correct / len(y_true)),
        "macro_f1": _round(float(np.mean(f1))),
        "weighted_f1": _round(_weighted_mean(f1, true_sum)),
        "per_class": _per_class(labels, precision, recall, f1, true_sum),
    }


# scikit-learn's definitions (precision_recall_fscore_support, zero_division=0), with numpy, so
# that scoring does not import sklearn (~1.6 s on a 2-core machine). tests/test_score_sklearn.py
# checks every figure against sklearn itself.


def _divide(numerator, denominator):
    import numpy as np

    numerator = numerator.astype(np.float64)
    denominator = denominator.astype(np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _prf(tp_sum, pred_sum, true_sum):
    """Per-class precision, recall and F1 = 2·TP / (true + predicted); 0 where undefined."""
    precision = _divide(tp_sum, pred_sum)
    recall = _divide(tp_sum, true_sum)
    f1 = _divide(2.0 * tp_sum, 1.0 * true_sum + pred_sum)
    return precision, recall, f1


def _weighted_mean(values, weights) -> float:
    import numpy as np

    if weights.sum() == 0:  # sklearn: all weights zero -> the unweighted mean
        return float(np.mean(values))
    return float(np.average(values, weights=weights))


def _confusion(preds: list[Prediction], labels: list[str]) -> dict:
    """Rows = gold label, columns = labels + `<invalid>`, over all examples.

    A valid answer that is not one of the labels (which the parsers should never produce) is
    counted in the `<invalid>` column; an example whose gold is not a label has no row.
    """
    columns = labels + [INVALID]
    col = {name: i for i, name in enumerate(labels)}
    row = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(columns) for _ in labels]
    for p in preds:
        r = row.get(str(p.gold))
        if r is None:
            continue
        c = col.get(str(p.prediction), len(labels)) if p.outcome == "valid" else len(labels)
        matrix[r][c] += 1
    return {"labels": list(labels), "columns": columns, "matrix": matrix}


# ---------------------------------------------------------------------------------------------
# Multi-label


def _multi_label(preds: list[Prediction], valid: list[Prediction], labels: list[str]) -> dict:
    strict = _multi_figures(
        [_label_set(p.gold, labels) for p in preds],
        [_label_set(p.prediction, labels) if p.outcome == "valid" else [] for p in preds],
        labels,
    )
    only_valid = (
        _multi_figures(
            [_label_set(p.gold, labels) for p in valid],
            [_label_set(p.prediction, labels) for p in valid],
            labels,
        )
        if valid else None
    )
    keys = ("subset_accuracy", "hamming_loss", "micro_f1", "macro_f1")
    out: dict[str, Any] = {}
    for key in keys:
        out[key] = strict[key] if strict else None
    for key in keys:
        out[f"{key}_valid"] = only_valid[key] if only_valid else None
    # One accuracy column for both task types in tables and checks.
    out["accuracy"] = out["subset_accuracy"]
    out["accuracy_valid"] = out["subset_accuracy_valid"]
    out["per_class"] = strict["per_class"] if strict else None
    out["per_class_valid"] = only_valid["per_class"] if only_valid else None
    return out


def _label_set(value: Any, labels: list[str]) -> list[str]:
    """Known labels in `value` (a list/tuple of names, or one name), without duplicates.

    Unknown names are dropped: they cannot be a hit, and MultiLabelBinarizer would only warn.
    """
    if value is None:
        return []
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    known = set(labels)
    out: list[str] = []
    for item in items:
        name = str(item)
        if name in known and name not in out:
            out.append(name)
    return out


def _multi_figures(y_true: list[list[str]], y_pred: list[list[str]], labels: list[str]) -> dict | None:
    if not y_true:
        return None
    import numpy as np

    column = {name: j for j, name in enumerate(labels)}
    true = np.zeros((len(y_true), len(labels)), dtype=bool)
    pred = np.zeros((len(y_pred), len(labels)), dtype=bool)
    for i, names in enumerate(y_true):
        true[i, [column[n] for n in names]] = True
    for i, names in enumerate(y_pred):
        pred[i, [column[n] for n in names]] = True
    tp_sum = (true & pred).sum(axis=0)
    true_sum, pred_sum = true.sum(axis=0), pred.sum(axis=0)
    precision, recall, f1 = _prf(tp_sum, pred_sum, true_sum)
    _, _, micro = _prf(tp_sum.sum(keepdims=True), pred_sum.sum(keepdims=True), true_sum.sum(keepdims=True))
    return {
        "subset_accuracy": _round(float(np.mean((true == pred).all(axis=1)))),
        "hamming_loss": _round(float(np.mean(true != pred))),
        "micro_f1": _round(float(micro[0])),
        "macro_f1": _round(float(np.mean(f1))),
        "per_class": _per_class(labels, precision, recall, f1, true_sum),
    }


# ---------------------------------------------------------------------------------------------
# Timing, tokens, cache, confidence


def _timing(preds: list[Prediction]) -> dict:
    latencies = sorted(float(p.latency_s) for p in preds if p.latency_s is not None)
    prompt_tokens = [p.prompt_tokens for p in preds if p.prompt_tokens is not None]
    completion_tokens = [p.completion_tokens for p in preds if p.completion_tokens is not None]
    confidences = [float(p.confidence) for p in preds if p.confidence is not None]
    return {
        "latency_p50_s": _round(_percentile(latencies, 50)),
        "latency_p95_s": _round(_percentile(latencies, 95)),
        "prompt_tokens": int(sum(prompt_tokens)) if prompt_tokens else None,
        "completion_tokens": int(sum(completion_tokens)) if completion_tokens else None,
        "cached": sum(1 for p in preds if p.cached),
        "mean_confidence": _round(sum(confidences) / len(confidences)) if confidences else None,
    }


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on sorted `values`."""
    if not values:
        return None
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


# ---------------------------------------------------------------------------------------------
# Helpers


def _per_class(labels, precision, recall, f1, support) -> dict:
    return {
        label: {
            "precision": _round(precision[i]),
            "recall": _round(recall[i]),
            "f1": _round(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }


def _ratio(a: int, b: int) -> float | None:
    return _round(a / b) if b else None


def _round(value: Any) -> float | None:
    """A plain Python float rounded to 6 decimals (numpy scalars converted), or None."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    return round(value, _ROUND)
