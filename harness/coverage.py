"""Coverage vs accuracy: what if a model abstained when its confidence is low?

For one model × prompt, with a confidence threshold t, the model *answers* the examples whose
answer is valid and whose `Prediction.confidence` is at least t, and abstains on the rest (an
invalid answer is always an abstention). Then

    coverage = answered / all examples
    accuracy = correct answers / answered   (multi-label: the exact label set, i.e. subset accuracy)

Confidences come from the records: a baseline's probability of its answer, an LLM's stated
confidence (`label_confidence` shape) or one derived from token logprobs. A row whose valid
answers carry no confidence gets no curve, with the reason, instead of made-up numbers.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from harness.metrics.kernel import Encoding, rounded

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_TARGET = 0.9


MIN_ANSWERED = 30


def coverage_curve(
    enc: Encoding,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    target: float = DEFAULT_TARGET,
) -> dict[str, Any]:
    """The `coverage` part of a row: coverage and accuracy at each threshold, and the lowest
    threshold reaching `target`. Right and wrong are the kernel's `correct`."""
    n = enc.n
    valid = enc.valid
    n_valid = int(valid.sum())
    missing = int(np.isnan(enc.confidence[valid]).sum())
    if not n_valid:
        return {"available": False, "reason": "no valid answers"}
    if missing:
        return {
            "available": False,
            "reason": f"{missing} of {n_valid} valid answers carry no confidence (ask for "
            f"logprobs or a label_confidence answer to get one)",
        }
    order = np.argsort(-enc.confidence[valid], kind="stable")
    confidence = enc.confidence[valid][order]  # highest first
    right = np.cumsum(enc.correct[valid][order])  # right answers among the top i + 1

    def at(threshold: float) -> dict[str, Any]:
        answered = int(np.searchsorted(-confidence, -threshold, side="right"))  # confidence >= threshold
        return {
            "threshold": threshold,
            "answered": answered,
            "coverage": rounded(answered / n),
            "accuracy": rounded(right[answered - 1] / answered) if answered else None,
        }

    points = [at(0.0)] + [at(float(t)) for t in thresholds]

    # Walk down the distinct confidences (ties are answered together); the lowest cut whose
    # answered set is accurate enough gives the most coverage at the target. A cut answering fewer
    # than `min_answered` examples is not evidence (one right answer is "100% accurate"): 30, or
    # 10% of the examples if fewer.
    min_answered = max(1, min(MIN_ANSWERED, math.ceil(0.1 * n)))
    best = None
    last_of_tie = np.flatnonzero(np.append(confidence[1:] != confidence[:-1], True))
    for i in last_of_tie:
        answered = int(i) + 1
        if answered >= min_answered and right[i] / answered >= target:
            best = {"threshold": rounded(confidence[i]), "answered": answered,
                    "coverage": rounded(answered / n), "accuracy": rounded(right[i] / answered)}
    return {"available": True, "n": n, "target_accuracy": target, "points": points, "at_target": best,
            "min_answered": min_answered}


def coverage_markdown(metrics: list[dict]) -> list[str]:
    """The report section: one row per model × prompt with a curve, `coverage / accuracy` per
    threshold, and the threshold that reaches the target accuracy. Empty when no row has one."""
    rows = [m for m in metrics if (m.get("coverage") or {}).get("available")]
    without = [m for m in metrics if m.get("coverage") and not m["coverage"].get("available")]
    if not rows:
        if not without:
            return []
        return ["## Coverage vs accuracy", "",
                "_No confidences in this run: " + "; ".join(
                    f"`{m['model']}` / `{m['prompt']}`: {m['coverage']['reason']}" for m in without) + "._", ""]
    thresholds = [pt["threshold"] for pt in rows[0]["coverage"]["points"]]
    target = rows[0]["coverage"]["target_accuracy"]
    headers = ["model", "prompt"] + ["all valid" if t == 0 else f"conf ≥ {t:g}" for t in thresholds]
    headers.append(f"for {target:.0%} accuracy")
    lines = ["## Coverage vs accuracy", "",
             "Abstain when the answer's confidence is below a threshold: each cell is *coverage / "
             "accuracy on the answered examples* (multi-label: exact label set).", "",
             "| " + " | ".join(headers) + " |",
             "|---|---|" + "---:|" * (len(headers) - 2)]
    for m in rows:
        cov = m["coverage"]
        cells = [_cell(pt) for pt in cov["points"]]
        hit = cov.get("at_target")
        cells.append(f"conf ≥ {hit['threshold']:.3g}: {hit['coverage']:.1%} answered" if hit else "not reached")
        lines.append("| " + " | ".join([_md(m["model"]), _md(m["prompt"])] + cells) + " |")
    lines.append("")
    for m in without:
        lines.append(f"- `{m['model']}` / `{m['prompt']}`: no curve — {m['coverage']['reason']}.")
    if without:
        lines.append("")
    return lines


def _cell(point: dict) -> str:
    if not point["answered"]:
        return "0% / –"
    return f"{point['coverage']:.1%} / {point['accuracy']:.1%}"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

