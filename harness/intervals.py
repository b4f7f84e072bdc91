"""Bootstrap 95% confidence intervals for each row's strict accuracy and macro-F1.

Percentile bootstrap over examples: `resamples` draws of n example indices with replacement
(numpy's default_rng(seed), so the same run gives the same intervals), each scored with the same
definitions as harness.score (the numpy scorers shared with `harness compare`). They tell how far
a figure could move on another sample of the same size, e.g. whether a baseline and a prompt
really differ (for a paired test between two rows use `harness compare`).
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.records import Prediction, group_predictions

DEFAULT_RESAMPLES = 1000


def bootstrap_ci(
    preds: Sequence[Prediction], labels: list[str], task: str, *,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> dict[str, Any]:
    import numpy as np

    from harness.compare import (
        multi_label_arrays, single_label_arrays, is_correct, macro_f1_multi, macro_f1_single,
    )

    # predictions.jsonl is in completion order, which changes from run to run (and in a replay):
    # resample in example order so the same answers always give the same intervals.
    preds = sorted(preds, key=lambda p: p.example_id)
    n = len(preds)
    if n == 0:
        return {"accuracy_ci": None, "macro_f1_ci": None}
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    right = np.array([is_correct(p, task) for p in preds])
    accuracy = right[idx].mean(axis=1)
    if task == "multi_label":
        gold, pred = multi_label_arrays(preds, labels)
        f1 = macro_f1_multi(gold, pred, idx)
    else:
        gold, pred = single_label_arrays(preds, labels)
        f1 = macro_f1_single(gold, pred, len(labels), idx)

    def ci(samples) -> list[float]:
        low, high = np.percentile(samples, [2.5, 97.5])
        return [round(float(low), 6), round(float(high), 6)]

    return {"accuracy_ci": ci(accuracy), "macro_f1_ci": ci(f1), "ci_resamples": resamples, "ci_seed": seed}


def add_intervals(metrics: list[dict], preds: Sequence[Prediction], labels: list[str], task: str, **options: Any) -> None:
    """Add accuracy_ci, macro_f1_ci (and the resamples and seed) to each model × prompt row."""
    groups = group_predictions(preds)
    for m in metrics:
        members = groups.get((m.get("model"), m.get("prompt")))
        if members:
            m.update(bootstrap_ci(members, labels, task, **options))


def intervals_markdown(metrics: list[dict]) -> list[str]:
    rows = [m for m in metrics if m.get("accuracy_ci")]
    if not rows:
        return []
    resamples = rows[0].get("ci_resamples")
    seed = rows[0].get("ci_seed")
    lines = ["## 95% confidence intervals", "",
             f"Percentile bootstrap over examples ({resamples} resamples, seed {seed}); strict figures.", "",
             "| model | prompt | accuracy | 95% CI | macro F1 | 95% CI |", "|---|---|---:|---:|---:|---:|"]
    for m in rows:
        acc, f1 = m["accuracy_ci"], m["macro_f1_ci"]
        lines.append(
            f"| {_md(m['model'])} | {_md(m['prompt'])} | {_num(m.get('accuracy'))} | "
            f"{acc[0]:.3f}–{acc[1]:.3f} | {_num(m.get('macro_f1'))} | {f1[0]:.3f}–{f1[1]:.3f} |"
        )
    lines.append("")
    return lines


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
