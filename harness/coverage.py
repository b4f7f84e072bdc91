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

from typing import Any, Iterable, Sequence

from harness.records import Prediction, group_predictions

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_TARGET = 0.9


def _answer_key(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(sorted(str(v) for v in value))
    return value


MIN_ANSWERED = 30


def coverage_curve(
    preds: Sequence[Prediction],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    target: float = DEFAULT_TARGET,
) -> dict[str, Any]:
    """Coverage and accuracy at each threshold, and the lowest threshold reaching `target`."""
    n = len(preds)
    valid = [p for p in preds if p.outcome == "valid"]
    missing = sum(1 for p in valid if p.confidence is None)
    if not valid:
        return {"available": False, "reason": "no valid answers"}
    if missing:
        return {
            "available": False,
            "reason": f"{missing} of {len(valid)} valid answers carry no confidence (ask for "
            f"logprobs or a label_confidence answer to get one)",
        }
    scored = sorted(
        ((float(p.confidence), _answer_key(p.prediction) == _answer_key(p.gold)) for p in valid),
        key=lambda item: -item[0],
    )

    def at(threshold: float) -> dict[str, Any]:
        answered = [correct for confidence, correct in scored if confidence >= threshold]
        return {
            "threshold": threshold,
            "answered": len(answered),
            "coverage": _round(len(answered) / n),
            "accuracy": _round(sum(answered) / len(answered)) if answered else None,
        }

    points = [at(0.0)] + [at(float(t)) for t in thresholds]

    # Walk down the distinct confidences; the lowest cut whose answered set is accurate enough
    # gives the most coverage at the target. A cut answering fewer than `min_answered` examples is
    # not evidence (one right answer is "100% accurate"): 30, or 10% of the examples if fewer.
    min_answered = max(1, min(MIN_ANSWERED, math.ceil(0.1 * n)))
    best = None
    correct = answered = 0
    i = 0
    while i < len(scored):
        confidence = scored[i][0]
        while i < len(scored) and scored[i][0] == confidence:  # ties are answered together
            correct += scored[i][1]
            answered += 1
            i += 1
        if answered >= min_answered and correct / answered >= target:
            best = {"threshold": _round(confidence), "answered": answered,
                    "coverage": _round(answered / n), "accuracy": _round(correct / answered)}
    return {"available": True, "n": n, "target_accuracy": target, "points": points, "at_target": best,
            "min_answered": min_answered}


def add_coverage(metrics: list[dict], preds: Sequence[Prediction], **options: Any) -> None:
    """Add `coverage` (see `coverage_curve`) to each model × prompt row of `metrics`."""
    groups = group_predictions(preds)
    for m in metrics:
        members = groups.get((m.get("model"), m.get("prompt")))
        if members:
            m["coverage"] = coverage_curve(members, **options)


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


def _round(value: float) -> float:
    return round(float(value), 6)
