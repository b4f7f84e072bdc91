"""The one place a run's metrics rows are built.

The predictions are grouped once by (model, prompt), in order of first appearance (one row of every
table). Each group is sorted once by example id — predictions.jsonl is in completion order, which
changes from run to run, and the bootstrap must not depend on it — and encoded once
(`harness.metrics.kernel.encode`). Every part of the row comes from that one group and that one
encoding: the point figures (`harness.score`), the cost (`harness.pricing`), the wall time, a
baseline's fit / predict times, the coverage curve (`harness.coverage`) and the bootstrap
intervals (`harness.intervals`). The result is a list of typed `MetricsRow`s; `metrics.json` is
written from them (`harness.report.write_run_files`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from harness.coverage import coverage_curve
from harness.intervals import DEFAULT_RESAMPLES, bootstrap_ci
from harness.metrics.kernel import encode
from harness.metrics.repeats import VOTE, repeats_part, split_repeats
from harness.metrics.row import MetricsRow
from harness.pricing import cost_part, prices_for
from harness.records import Prediction, group_predictions
from harness.score import group_figures


def build_rows(
    predictions: Sequence[Prediction],
    labels: list[str],
    task: str,
    *,
    models: Iterable[Any] = (),
    walls: dict[tuple[str, str], float] | None = None,
    baselines: Iterable[Any] = (),
    coverage: bool = True,
    intervals: bool = True,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    answers: dict[str, str] | None = None,
    calibration_fits: dict[tuple[str, str], dict] | None = None,
    hierarchy: Any = None,
) -> list[MetricsRow]:
    """One row per model × prompt.

    `models` are the spec `Model`s (their prices give the cost part); `walls` maps (model, prompt)
    to the runner's wall seconds (given: every row gets `wall_s`, None where unknown); `baselines`
    are `BaselineResult`s (their rows get the baseline's wall, fit and predict times); `answers`
    maps a prompt to its answer method (label-likelihood rows get their label mass) and
    `calibration_fits` (model, prompt) to the fitted calibration. Every row whose answers carry
    probabilities gets the confidence figures (`calibration`).
    """
    from harness.confidence_metrics import row_figures, stamp_uncertainty
    from harness.hierarchy import level_figures
    from harness.likelihood import LOW_MASS

    models = list(models)
    prices = prices_for(models)
    finished = {r.id: r for r in baselines if not r.skipped}
    rows = []
    # A repeated model's predictions: repeat 0 under the prompt, the majority vote as `PROMPT@vote`
    # (one answer per example either way), the repeats for the `repeats` part.
    view, repeated = split_repeats(predictions)
    for (model, prompt), group in _in_spec_order(group_predictions(view), models, answers):
        # records written before margins were stamped (older runs) get them here
        members = sorted((stamp_uncertainty(p, labels, task) for p in group), key=lambda p: p.example_id)
        enc = encode(members, labels, task)
        row: dict[str, Any] = {"model": model, "prompt": prompt, **group_figures(members, enc)}
        cost = cost_part(members, prices.get(model), row["n_valid"])
        if cost is not None:
            row["cost"] = cost
        if walls is not None:  # a vote row took the wall time of its prompt's repeats
            row["wall_s"] = walls.get((model, prompt.removesuffix(VOTE)))
        result = finished.get(model)
        if result is not None and _is_baseline_row(prompt):
            row["wall_s"] = result.wall_s
            row["baseline"] = {"fit_s": result.fit_s, "predict_s": result.predict_s}
            if result.embedding:
                row["baseline"]["embed_s"] = result.embedding.get("total_s")
        if coverage:
            row["coverage"] = coverage_curve(enc)
        if intervals:
            interval = bootstrap_ci(enc, resamples=resamples, seed=seed)
            if interval is not None:
                row["interval"] = interval
        if (answers or {}).get(prompt) == "label_likelihood":
            row["answer"] = "label_likelihood"
            masses = [p.label_mass for p in group if p.label_mass is not None]
            if masses:
                row["label_mass"] = {"n": len(masses), "mean": round(sum(masses) / len(masses), 6),
                                     "low": sum(1 for x in masses if x < LOW_MASS), "threshold": LOW_MASS}
        if calibration_fits and (model, prompt) in calibration_fits:
            row["calibration_fit"] = calibration_fits[(model, prompt)]
        confidence = row_figures(members, labels, task, enc)
        if confidence is not None:
            row["calibration"] = confidence
        if hierarchy is not None:
            row["levels"] = level_figures(enc, hierarchy)
        if (model, prompt) in repeated:
            row["repeats"] = repeats_part(repeated[(model, prompt)], labels, task)
        elif prompt.endswith(VOTE) and (model, prompt.removesuffix(VOTE)) in repeated:
            row["repeats"] = {"repeats": len(repeated[(model, prompt.removesuffix(VOTE))]), "row": "vote"}
        rows.append(MetricsRow.model_validate(row))
    return rows


def _in_spec_order(groups: dict, models: list[Any], answers: dict[str, str] | None) -> list:
    """The groups in the spec's model and prompt order (a vote row after its prompt), whatever
    order the answers were written in: every model and prompt runs at once, so predictions.jsonl
    interleaves them by completion, and a replay must print the same rows in the same order as
    the recorded run. Groups the spec does not name (baselines, older runs) keep their order of
    first appearance, after the named ones."""
    model_rank = {m.id: i for i, m in enumerate(models)}
    prompt_rank = {name: i for i, name in enumerate(answers or {})}
    seen: dict[str, int] = {}  # models and prompts the spec does not name: first appearance
    for model, prompt in groups:
        seen.setdefault(model, len(seen))
        seen.setdefault(prompt.removesuffix(VOTE), len(seen))

    def rank(key: tuple[str, str]) -> tuple[int, int, bool]:
        model, prompt = key
        base = prompt.removesuffix(VOTE)
        return (model_rank.get(model, len(model_rank) + seen[model]),
                prompt_rank.get(base, len(prompt_rank) + seen[base]), prompt != base)

    return sorted(groups.items(), key=lambda item: rank(item[0]))


def score_run(predictions: Sequence[Prediction], labels: list[str], task: str, **parts: Any) -> list[dict]:
    """`build_rows` as `metrics.json` rows (plain dicts), without coverage and intervals unless
    asked for: the core figures of each model × prompt."""
    parts.setdefault("coverage", False)
    parts.setdefault("intervals", False)
    return [row.to_wire() for row in build_rows(predictions, labels, task, **parts)]


def _is_baseline_row(prompt: str) -> bool:
    from harness.baselines.base import BASELINE_PROMPT

    return prompt == BASELINE_PROMPT
