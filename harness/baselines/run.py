"""Running a spec's baselines on the evaluated examples, as part of `harness eval`.

Each baseline is fitted on the train split (trainable kinds; `train_limit` samples it), gets its
multi-label thresholds tuned on the validation split when the spec has one (at most
THRESHOLD_ROWS rows of it), then predicts the evaluated examples. Its answers are the same
`Prediction` records the LLMs write, so scoring, reports and `compare` treat both alike:

    model        = the baseline's id, `baseline:NAME` (NAME defaults to the kind)
    prompt       = "-" (a baseline has no prompt)
    outcome      = "valid", parsed_from = "baseline"
    prediction   = the label (multi-label: the list of labels)
    confidence   = the probability of that answer (see `Decision.decide`)
    raw          = the label probabilities as JSON, {"label": p, ...}, 4 decimals
    latency_s    = predict time / number of examples (amortised; a baseline predicts in batches)

Fit and predict times (the embedding step included, and broken out) go into the run record.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from harness.baselines.base import BASELINE_PROMPT, Decision, encode_gold, tune_thresholds
from harness.errors import HarnessError
from harness.records import Example, Prediction

if TYPE_CHECKING:
    from harness.baselines.base import Baseline
    from harness.baselines.embeddings import EmbedderPool
    from harness.spec import Spec

# Multi-label thresholds are tuned on at most this many validation rows (a seeded, stratified
# sample): enough for per-label F1, and it bounds the cost for slow kinds (NLI scores every
# text × label pair).
THRESHOLD_ROWS = 2000


@dataclass
class BaselineResult:
    id: str
    kind: str
    skipped: str | None = None
    fit_s: float | None = None  # training + threshold tuning, embedding included
    predict_s: float | None = None  # the evaluated examples, embedding included
    train_rows: int | None = None
    thresholds: dict[str, float] | None = None  # multi-label, label -> threshold
    thresholds_from: str | None = None  # the split they were tuned on, or "default"
    embedding: dict[str, Any] | None = None  # EmbedStats of this baseline's embedding calls
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float | None:
        if self.fit_s is None or self.predict_s is None:
            return None
        return round(self.fit_s + self.predict_s, 3)

    def record(self) -> dict[str, Any]:
        """The entry for the run record (`run["baselines"]`)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {}) and k != "details"}
        out["wall_s"] = self.wall_s
        out.update(self.details)
        return out


def select_baselines(spec: "Spec", names: list[str] | None) -> list["Baseline"]:
    """The spec's baselines, or those named (by name, kind or id `baseline:NAME`)."""
    if not names:
        return list(spec.baselines)
    chosen = []
    for wanted in names:
        matches = [b for b in spec.baselines if wanted in (b.id, b.id.removeprefix("baseline:"), b.kind)]
        if not matches:
            known = ", ".join(b.id.removeprefix("baseline:") for b in spec.baselines) or "none"
            raise HarnessError(f"--run-baseline {wanted}: no such baseline in the spec; it has: {known}")
        chosen.extend(b for b in matches if b not in chosen)
    return chosen


class BaselineData:
    """Train and validation examples, loaded once and shared by the baselines of a run."""

    def __init__(self, spec: "Spec"):
        self.spec = spec
        self._splits: dict[tuple, list[Example]] = {}

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        from harness.data import load_split

        key = (split, limit)
        if key not in self._splits:
            self._splits[key] = load_split(self.spec, split, limit=limit, seed=self.spec.dataset.seed).examples
        return self._splits[key]


def build(config: "Baseline", spec: "Spec", pool: "EmbedderPool | None") -> "Baseline":
    """A copy of the spec's entry, ready to fit on `spec` (embedding with `pool`)."""
    return config.bind(spec, pool)


def fit_baseline(model: "Baseline", data: BaselineData, train: Sequence[Example] | None = None
                 ) -> tuple[Decision, BaselineResult]:
    """Fit `model` on `train` (default: the train split, sampled to `train_limit`) and tune its
    multi-label thresholds on the validation split; time both."""
    spec = model.spec
    result = BaselineResult(model.id, model.kind)
    decision = Decision(model.labels, model.multi)
    t0 = time.perf_counter()
    if model.trainable:
        if train is None:
            train = model.train_rows(data)
        if not train:
            raise HarnessError(f"baseline {model.id}: the train split {spec.dataset.train_split!r} is empty")
        model.fit([e.text for e in train], encode_gold([e.gold for e in train], model.labels, model.multi))
        result.train_rows = len(train)
    if model.multi:
        decision.thresholds = np.full(len(model.labels), model.threshold)
        result.thresholds_from = "default"
        if spec.dataset.validation_split:
            validation = data.examples(spec.dataset.validation_split, THRESHOLD_ROWS)
            proba = model.predict_proba([e.text for e in validation])
            y = encode_gold([e.gold for e in validation], model.labels, True)
            decision.thresholds = tune_thresholds(proba, y, model.threshold)
            result.thresholds_from = spec.dataset.validation_split
        result.thresholds = {name: round(float(t), 6) for name, t in zip(model.labels, decision.thresholds)}
    result.fit_s = round(time.perf_counter() - t0, 4)
    return decision, result


def predict_records(model: "Baseline", decision: Decision, examples: Sequence[Example]) -> tuple[list[Prediction], float]:
    """Prediction records for `examples`, and the predict time in seconds."""
    t0 = time.perf_counter()
    proba = model.predict_proba([e.text for e in examples]) if examples else np.zeros((0, len(model.labels)))
    answers = decision.decide(proba)
    predict_s = time.perf_counter() - t0
    latency = round(predict_s / len(examples), 6) if examples else None
    records = []
    for example, row, (prediction, confidence) in zip(examples, proba, answers):
        records.append(Prediction(
            example_id=example.id,
            model=model.id,
            prompt=BASELINE_PROMPT,
            gold=list(example.gold) if isinstance(example.gold, tuple) else example.gold,
            prediction=prediction,
            outcome="valid",
            parsed_from="baseline",
            raw=json.dumps({name: round(float(p), 4) for name, p in zip(model.labels, row)}, ensure_ascii=False),
            confidence=round(confidence, 6),
            latency_s=latency,
        ))
    return records, predict_s


def run_baselines(
    spec: "Spec",
    examples: Sequence[Example],
    configs: Sequence["Baseline"],
    write: Callable[[Prediction], None],
    *,
    pool: "EmbedderPool | None" = None,
    progress: Any = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[BaselineResult]:
    """Fit and run each baseline on `examples`, passing every record to `write`.

    A baseline whose packages are missing, or whose model cannot be loaded or mapped, is skipped
    with the reason (logged and returned), like an LLM whose API key is missing.
    """
    from harness.baselines.embeddings import EmbedderPool, EmbeddingCache

    own_pool = pool is None
    if own_pool:  # the embedding cache is opened only when an embedding kind runs
        uses_embeddings = any(c.embeds for c in configs)
        pool = EmbedderPool(cache=EmbeddingCache() if uses_embeddings else None, progress=progress)
    data = BaselineData(spec)
    results: list[BaselineResult] = []
    try:
        for config in configs:
            model = build(config, spec, pool)
            reason = model.missing_requirement()
            if reason:
                log(f"skipping {config.id}: {reason}")
                results.append(BaselineResult(config.id, config.kind, skipped=reason))
                continue
            before = pool.totals()
            log(f"{config.id}: fitting and predicting {len(examples)} examples")
            try:
                decision, result = fit_baseline(model, data)
                records, predict_s = predict_records(model, decision, examples)
            except HarnessError as exc:
                log(f"skipping {config.id}: {exc}")
                results.append(BaselineResult(config.id, config.kind, skipped=str(exc)))
                continue
            result.predict_s = round(predict_s, 4)
            embedded = pool.totals().minus(before)
            if embedded.texts:
                result.embedding = embedded.as_dict()
            result.details = model.stats()
            on_result = progress.tracker(config.id, len(records)) if progress is not None else None
            for record in records:
                write(record)
                if on_result is not None:
                    on_result(record)
            results.append(result)
    finally:
        if own_pool:
            pool.close()
    return results

