"""Repeats at temperature > 0 (a model's `repeats: N`): one row per prompt, its spread, a vote row.

A repeated model writes N predictions per example and prompt (`Prediction.repeat` 0..N-1). Every
table row must still describe one answer per example, so `split_repeats` turns a run's predictions
into the *view* that rows, `harness compare` and report.html all read:

* the row `PROMPT` holds repeat 0: the very requests (same bodies, same cache keys) a run without
  repeats sends, so its figures, intervals and curves mean what they mean everywhere else;
* the row `PROMPT@vote` holds the majority vote over the repeats (self-consistency), built here;
* the repeats themselves go to `repeats_part`: every headline figure per repeat (mean, sample
  standard deviation, min, max) and the per-example agreement across repeats.

Majority vote, per example, over the repeats present: the valid answer given most often wins (a
multi-label answer counts as one label set); a tie goes to the tied answer that the earliest repeat
gave (so with two repeats that disagree the vote is repeat 0's answer); with no valid answer the
vote is repeat 0's outcome. Its confidence is the winner's share of the repeats (2 of 3 agree:
0.667), which is what the coverage curve and the confidence figures of the vote row read. Its token
counts are the sum over repeats, so its cost is what the vote cost.

Agreement (harness.metrics.kernel.all_agree / pairwise_agreement) is over the examples answered in
every repeat; two answers agree when they name the same label(s) or are both unreadable.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from harness.metrics import kernel
from harness.metrics.kernel import encode, rounded
from harness.metrics.row import HEADLINE
from harness.records import Prediction

VOTE = "@vote"  # `@` is not allowed in prompt names, so a vote row never meets a spec prompt


def vote_row_name(prompt: str) -> str:
    return prompt + VOTE


def split_repeats(predictions: Sequence[Prediction]) -> tuple[list[Prediction], dict[tuple[str, str], dict[int, list[Prediction]]]]:
    """(view, repeats): the view holds one prediction per example for every row (repeat 0 under
    the prompt's name, then the vote predictions under `PROMPT@vote`, right after it, in order of
    first appearance); `repeats` maps (model, prompt) of a repeated prompt to {repeat: predictions}."""
    order: list[tuple[str, str]] = []
    plain: dict[tuple[str, str], list[Prediction]] = {}
    repeats: dict[tuple[str, str], dict[int, list[Prediction]]] = {}
    for p in predictions:
        key = (p.model, p.prompt)
        if key not in plain:
            order.append(key)
            plain[key] = []
        if p.repeat is None:
            plain[key].append(p)
        else:
            repeats.setdefault(key, {}).setdefault(p.repeat, []).append(p)
    view: list[Prediction] = []
    for key in order:
        view += plain[key]
        if key in repeats:
            view += repeats[key].get(0, [])
            view += majority_vote(repeats[key])
    return view, repeats


def _answer_key(p: Prediction) -> Any:
    value = p.prediction
    return tuple(value) if isinstance(value, list) else value


def majority_vote(by_repeat: dict[int, list[Prediction]]) -> list[Prediction]:
    """The vote prediction of every example answered in at least one repeat (rule: module docstring)."""
    per_example: dict[str, list[Prediction]] = {}
    for r in sorted(by_repeat):
        for p in by_repeat[r]:
            per_example.setdefault(p.example_id, []).append(p)
    out = []
    for example_id, answers in per_example.items():  # answers in repeat order
        first = answers[0]
        counts: dict[Any, int] = {}
        for p in answers:
            if p.outcome == "valid":
                counts[_answer_key(p)] = counts.get(_answer_key(p), 0) + 1
        if counts:
            top = max(counts.values())
            winner = next(p for p in answers if p.outcome == "valid" and counts[_answer_key(p)] == top)
            fields: dict[str, Any] = dict(prediction=winner.prediction, outcome="valid", parsed_from="vote",
                                          confidence=round(top / len(answers), 6))
        else:
            fields = dict(prediction=None, outcome=first.outcome, error=first.error)
        out.append(Prediction(
            example_id=example_id, model=first.model, prompt=vote_row_name(first.prompt), gold=first.gold,
            raw=None, prompt_tokens=_total(a.prompt_tokens for a in answers),
            completion_tokens=_total(a.completion_tokens for a in answers),
            cached_tokens=_total(a.cached_tokens for a in answers),
            cached=all(a.cached for a in answers), text=first.text, slices=first.slices, **fields,
        ))
    return out


def _total(values) -> int | None:
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; None for one value), min and max of the values
    that are defined, and the values themselves (None where a repeat has no value)."""
    known = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not known:
        return {"mean": None, "std": None, "min": None, "max": None, "values": list(values)}
    mean = sum(known) / len(known)
    std = math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1)) if len(known) > 1 else None
    return {"mean": rounded(mean), "std": rounded(std), "min": rounded(min(known)), "max": rounded(max(known)),
            "values": list(values)}


def repeats_part(by_repeat: dict[int, list[Prediction]], labels: list[str], task: str) -> dict[str, Any]:
    """The `repeats` part of a repeated prompt's row: headline figures over repeats, agreement."""
    from harness.score import group_figures

    indices = sorted(by_repeat)
    per_repeat = []
    for r in indices:
        members = sorted(by_repeat[r], key=lambda p: p.example_id)
        per_repeat.append(group_figures(members, encode(members, labels, task)))
    common = sorted(set.intersection(*(set(p.example_id for p in by_repeat[r]) for r in indices)))
    encs = []
    for r in indices:
        chosen = {p.example_id: p for p in by_repeat[r]}
        encs.append(encode([chosen[i] for i in common], labels, task))
    agree = pairwise = None
    if common and len(encs) > 1:
        w = kernel.ones(encs[0])
        agree, pairwise = rounded(kernel.all_agree(encs, w)), rounded(kernel.pairwise_agreement(encs, w))
    return {
        "repeats": len(indices), "row": "repeat_0", "n_common": len(common),
        "all_agree": agree, "pairwise_agreement": pairwise,
        "figures": {name: spread([fig.get(name) for fig in per_repeat]) for name in HEADLINE},
    }
