"""The records that flow between stages: dataset examples in, prediction records out.

LLMs and baselines both produce `Prediction`s, so scoring and reporting never ask where a prediction
came from.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Union

Outcome = Literal["valid", "invalid_json", "schema_error", "refusal", "truncated", "api_error"]
OUTCOMES: tuple[str, ...] = (
    "valid", "invalid_json", "schema_error", "refusal", "truncated", "api_error",
)
# How a valid answer was read: whole JSON, a fenced block, the first decodable object in the text,
# an exact bare label, a label found after normalising case/punctuation/surrounding words, a
# baseline's own output, or the majority vote over a model's repeats (harness.metrics.repeats).
ParsedFrom = Literal["whole", "fence", "scan", "label", "normalized", "baseline", "vote"]

Gold = Union[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Example:
    id: str  # stable across runs: "<split>:<row index>"
    index: int  # row index within the split file
    text: str
    gold: Gold  # a label name, or a tuple of names for multi-label tasks
    fields: dict[str, Any] = field(default_factory=dict, compare=False)  # the raw row, for templates


@dataclass(slots=True)
class Prediction:
    example_id: str
    model: str
    prompt: str
    gold: Any  # str, or list[str] for multi-label
    prediction: Any  # str / list[str] when valid, else None
    outcome: str
    parsed_from: str | None = None
    raw: str | None = None
    error: str | None = None
    finish_reason: str | None = None
    confidence: float | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cached: bool = False  # answered from the response cache
    # server-side seconds some providers report with usage (Groq: queue_time, prompt_time, ...)
    server_timing: dict[str, float] | None = None
    # the example's text, so predictions.jsonl loads in pandas on its own (None in old runs)
    text: str | None = None
    # set for an edge-case suite's cases (`suites:` in the spec): kept out of the main metrics
    suite: str | None = None
    # the dataset columns named by the spec's `slices:`, for accuracy by slice in report.html
    slices: dict[str, Any] | None = None
    # answer: label_likelihood (harness.likelihood): every label's probability (calibrated when
    # the prompt calibrates), the mass the labels got before renormalising, and the probabilities
    # before calibration
    label_probs: dict[str, float] | None = None
    label_mass: float | None = None
    label_probs_uncalibrated: dict[str, float] | None = None
    # when the record has a probability for every label: the top one minus the second, and the
    # distribution's entropy in nats (harness.confidence_metrics.stamp_uncertainty)
    margin: float | None = None
    entropy: float | None = None
    # strategy: top_down: the answer at each level above the labels, coarsest first ({"ekman": "joy"})
    levels: dict[str, str] | None = None
    # a model's `repeats:` (harness.metrics.repeats): which repeat of the request this answers,
    # 0..N-1; None when the model asks each request once
    repeat: int | None = None

    def to_json(self) -> str:
        # Field by field: dataclasses.asdict deep-copies every value, which was a fifth of a cached
        # replay's time; the values are plain JSON types (a tuple gold serializes as a list).
        text = json.dumps({name: getattr(self, name) for name in _PREDICTION_FIELDS}, ensure_ascii=False)
        # Example texts may hold U+2028/U+2029/U+0085, which str.splitlines() (and some JSONL
        # readers) take for line ends: written escaped, every record stays on one line.
        if "\u2028" in text or "\u2029" in text or "\x85" in text:
            text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prediction":
        names = _NAMES.get(cls)
        if names is None:  # once per class, not once per record
            names = _NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
        return cls(**{k: v for k, v in data.items() if k in names})


_PREDICTION_FIELDS = tuple(f.name for f in dataclasses.fields(Prediction))
_NAMES: dict[type, frozenset[str]] = {}


def group_predictions(preds) -> dict[tuple[str, str], list[Prediction]]:
    """Predictions by (model, prompt), in order of first appearance: one row of every table."""
    groups: dict[tuple[str, str], list[Prediction]] = {}
    for p in preds:
        groups.setdefault((p.model, p.prompt), []).append(p)
    return groups


# Fields whose values repeat across records (a handful of models, prompts and labels): read back as
# one shared string each, so 100k records do not hold 100k copies of "valid".
_REPEATED = ("model", "prompt", "gold", "prediction", "outcome", "parsed_from", "finish_reason")


# Fields whose values repeat across some records (an example's id in every prompt's record, a
# model's identical raw answers): read back as one string per distinct value of this file.
_SHARED = ("example_id", "raw")


def read_predictions(path, *, texts: bool = True) -> list[Prediction]:
    """The records of a predictions.jsonl. `texts=False` leaves out the example texts of the
    main split's records (scoring never reads them; edge-case suites' records keep theirs)."""
    out = []
    intern = sys.intern
    shared: dict[str, str] = {}  # this file's distinct ids and raw answers (freed on return)
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill mid-write; its example is simply redone
                for name in _REPEATED:
                    value = data.get(name)
                    if type(value) is str:
                        data[name] = intern(value)
                for name in _SHARED:
                    value = data.get(name)
                    if type(value) is str:
                        data[name] = shared.setdefault(value, value)
                if not texts and not data.get("suite"):
                    data.pop("text", None)
                out.append(Prediction.from_dict(data))
    return out
