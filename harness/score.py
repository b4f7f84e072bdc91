"""Metrics for a run: one dict of figures per model×prompt, from `Prediction` records.

Two views of every quality figure:

* **strict** — over all examples; an output that could not be read counts as wrong. For single-label
  tasks it becomes the pseudo-label `<invalid>` (never a class in the averages, so it only lowers
  recall); for multi-label tasks it becomes the empty label set.
* **valid-only** (`*_valid`) — over the examples whose output was read; None when there are none.

scikit-learn is imported inside the functions so that CLI commands that do not score start fast.
All floats are rounded to 6 decimals; figures that are undefined are None.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from harness.records import OUTCOMES, Prediction

INVALID = "<invalid>"
TASKS = ("single_label", "multi_label")
_ROUND = 6


def score_run(preds: list[Prediction], labels: list[str], task: str) -> list[dict]:
    """Score each (model, prompt) group, in order of first appearance in `preds`."""
    groups: dict[tuple[str, str], list[Prediction]] = {}
    for p in preds:
        groups.setdefault((p.model, p.prompt), []).append(p)
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
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    # labels=labels keeps `<invalid>` (and any stray answer) out of the class averages: it can only
    # lower the recall of the gold class.
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return {
        "accuracy": _round(accuracy_score(y_true, y_pred)),
        "macro_f1": _round(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": _round(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": _per_class(labels, precision, recall, f1, support),
    }


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
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer(classes=labels)
    binarizer.fit([labels])
    true = binarizer.transform(y_true)
    pred = binarizer.transform(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, average=None, zero_division=0
    )
    return {
        "subset_accuracy": _round(accuracy_score(true, pred)),
        "hamming_loss": _round(hamming_loss(true, pred)),
        "micro_f1": _round(f1_score(true, pred, average="micro", zero_division=0)),
        "macro_f1": _round(f1_score(true, pred, average="macro", zero_division=0)),
        "per_class": _per_class(labels, precision, recall, f1, support),
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
