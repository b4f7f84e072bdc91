"""The point figures of one group of predictions (normally one model × prompt).

Two views of every quality figure:

* **strict** — over all examples; an output that could not be read counts as wrong. It sets no
  label (single-label: the `<invalid>` column of the confusion matrix, never a class in the
  averages, so it only lowers recall; multi-label: the empty label set);
* **valid-only** (`*_valid`) — over the examples whose output was read; None when there are none.

Every quality figure comes from `harness.metrics.kernel` (one encoding, one definition of a right
answer, scikit-learn's definitions in numpy). The keys are the fields of
`harness.metrics.row.MetricsRow`. All floats are rounded to 6 decimals; undefined figures are None.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from harness.metrics import kernel
from harness.metrics.kernel import TASKS, Encoding, encode, rounded
from harness.metrics.row import MultiLabelFigures, SingleLabelFigures
from harness.records import OUTCOMES, Prediction

INVALID = "<invalid>"
__all__ = ["INVALID", "TASKS", "score_group", "group_figures"]


def score_group(preds: Sequence[Prediction], labels: list[str], task: str) -> dict[str, Any]:
    """All point figures of one group, as `metrics.json` names them (without model and prompt)."""
    return group_figures(preds, encode(preds, labels, task))


def group_figures(preds: Sequence[Prediction], enc: Encoding) -> dict[str, Any]:
    """The figures of `preds`, already encoded as `enc` (same records, same order)."""
    outcomes = {o: 0 for o in OUTCOMES}
    parsed_from: dict[str, int] = {}
    for p in preds:
        outcomes[p.outcome] = outcomes.get(p.outcome, 0) + 1  # an unknown outcome still shows up
        if p.outcome == "valid":
            key = p.parsed_from or "unknown"
            parsed_from[key] = parsed_from.get(key, 0) + 1
    n, n_valid = enc.n, int(enc.valid.sum())
    strict, valid = kernel.ones(enc), kernel.valid_weights(enc)
    out: dict[str, Any] = {
        "n": n, "n_valid": n_valid, "validity": rounded(n_valid / n) if n else None,
        "outcomes": outcomes, "parsed_from": dict(sorted(parsed_from.items())),
    }
    part = SingleLabelFigures if enc.task == "single_label" else MultiLabelFigures
    names = ["accuracy", "macro_f1"] + [f for f in part.figure_names() if not f.endswith("_valid")]
    for name in names:
        figure = kernel.FIGURES[name]
        out[name] = rounded(figure(enc, strict)) if n else None
        out[f"{name}_valid"] = rounded(figure(enc, valid)) if n_valid else None
    out["per_class"] = kernel.per_class(enc, strict) if n else None
    out["per_class_valid"] = kernel.per_class(enc, valid) if n_valid else None
    if enc.task == "single_label":
        out["confusion"] = kernel.confusion(enc)
    out.update(_timing(preds))
    return out


def _timing(preds: Sequence[Prediction]) -> dict[str, Any]:
    latencies = sorted(float(p.latency_s) for p in preds if p.latency_s is not None)
    prompt_tokens = [p.prompt_tokens for p in preds if p.prompt_tokens is not None]
    completion_tokens = [p.completion_tokens for p in preds if p.completion_tokens is not None]
    confidences = [float(p.confidence) for p in preds if p.confidence is not None]
    return {
        "latency_p50_s": rounded(_percentile(latencies, 50)),
        "latency_p95_s": rounded(_percentile(latencies, 95)),
        "prompt_tokens": int(sum(prompt_tokens)) if prompt_tokens else None,
        "completion_tokens": int(sum(completion_tokens)) if completion_tokens else None,
        "cached": sum(1 for p in preds if p.cached),
        "mean_confidence": rounded(sum(confidences) / len(confidences)) if confidences else None,
    }


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on sorted `values`."""
    if not values:
        return None
    position = (len(values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)
