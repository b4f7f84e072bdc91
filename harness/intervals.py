"""Bootstrap 95% confidence intervals for each row's strict accuracy and macro-F1.

Percentile bootstrap over examples: `resamples` draws of n example indices with replacement
(numpy's default_rng(seed), so the same run gives the same intervals), each scored by the same
kernel functions as the point figures (`harness.metrics.kernel`: one matrix product scores every
resample). They tell how far a figure could move on another sample of the same size, e.g. whether
a baseline and a prompt really differ (for a paired test between two rows use `harness compare`).
"""

from __future__ import annotations

from typing import Any

from harness.metrics import kernel
from harness.metrics.kernel import Encoding

DEFAULT_RESAMPLES = 1000


def bootstrap_ci(enc: Encoding, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any] | None:
    """The `interval` part of a row; None for an empty group. `enc` must be in example order
    (predictions.jsonl is in completion order, which changes from run to run), so the same answers
    always give the same intervals: `harness.metrics.assemble` sorts each group once."""
    if enc.n == 0:
        return None
    import numpy as np

    accuracy, macro_f1 = [], []
    for w in kernel.resample_weight_blocks(enc.n, resamples, seed):  # flat memory for large n
        accuracy.append(kernel.accuracy(enc, w))
        macro_f1.append(kernel.macro_f1(enc, w))
    return {
        "accuracy_ci": kernel.percentile_interval(np.concatenate(accuracy)),
        "macro_f1_ci": kernel.percentile_interval(np.concatenate(macro_f1)),
        "ci_resamples": resamples,
        "ci_seed": seed,
    }


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
