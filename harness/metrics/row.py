"""What one row of a run's `metrics.json` holds: a Pydantic model, the single declaration of it.

A row is one model × prompt. Its core figures are always there; the other figures come in
optional *parts*, present when they apply:

* flattened parts, whose keys sit at the top level of the row in `metrics.json` (so files written
  before the parts existed read the same): `single` (single-label figures), `multi` (multi-label
  figures), `cost` (a price is known), `baseline` (an encoder baseline's fit / predict times),
  `interval` (bootstrap confidence intervals);
* nested parts, one key each: `coverage` (coverage vs accuracy), `calibration` (confidence
  calibration, filled by the label-likelihood work when predictions carry probabilities),
  `levels` (a spec with a label hierarchy: the figures at every level).
  `repeats` (a model's `repeats:`: spread over repeats, agreement, or the majority-vote marker).

Figures carry a `Figure` marker that the rest of the harness reads instead of listing names again:
`CHECKABLE` (what a spec check may test, `harness.spec.CheckMetric`), `COLUMNS` (the summary table,
`harness.report`) and `HEADLINE` (what `harness compare` sets side by side).

This module imports nothing else of the harness, so the spec can depend on it. `metrics.json`
carries `schema_version` (`SCHEMA_VERSION`); a file without one is version 1, which has the same
row layout without the figures added since (`balanced_accuracy*`, `calibration`): fields added
later have defaults, so old rows still validate. The published JSON schema is `harness/metrics.schema.json`
(`json_schema()`; tests keep it in sync and validate a real run against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 2

FigureKind = Literal["text", "int", "pct", "f1", "latency", "wall", "usd"]


@dataclass(frozen=True)
class Figure:
    """Marks a row field as a figure. `check`: a spec check may test it; `header`: a summary-table
    column with that header, formatted by `kind`; `headline`: compared by `harness compare`."""

    check: bool = False
    header: str | None = None
    kind: FigureKind = "text"
    headline: bool = False


class _Part(BaseModel):
    # Keys this version does not know (a newer harness, another tool) are kept, not rejected.
    model_config = ConfigDict(extra="allow")

    @classmethod
    def figure_names(cls) -> list[str]:
        return [name for name, info in cls.model_fields.items() if _figure(info) is not None]


def _figure(info) -> Figure | None:
    return next((m for m in info.metadata if isinstance(m, Figure)), None)


Ratio = Optional[float]


class PerClass(_Part):
    precision: float
    recall: float
    f1: float
    support: int


class Confusion(_Part):
    labels: list[str]
    columns: list[str] = Field(description="The labels, then `<invalid>` (unreadable or unknown answers).")
    matrix: list[list[int]] = Field(description="matrix[gold][predicted], over all examples.")


class SingleLabelFigures(_Part):
    weighted_f1: Annotated[Ratio, Figure(check=True)] = Field(description="F1 averaged by support, strict.")
    weighted_f1_valid: Annotated[Ratio, Figure(check=True)] = Field(description="Weighted F1 on valid answers.")
    # Added after version 1: a default, so older files still read.
    balanced_accuracy: Annotated[Ratio, Figure(check=True)] = Field(
        None, description="Mean recall over the labels present in the gold, strict.")
    balanced_accuracy_valid: Annotated[Ratio, Figure(check=True)] = None
    confusion: Confusion


class MultiLabelFigures(_Part):
    subset_accuracy: Annotated[Ratio, Figure(check=True)] = Field(description="Exact label set, strict (= accuracy).")
    subset_accuracy_valid: Annotated[Ratio, Figure(check=True)]
    micro_f1: Annotated[Ratio, Figure(check=True)]
    micro_f1_valid: Annotated[Ratio, Figure(check=True)]
    hamming_loss: Annotated[Ratio, Figure(check=True)] = Field(description="Share of wrong label decisions, strict.")
    hamming_loss_valid: Annotated[Ratio, Figure(check=True)]


class Price(_Part):
    input_per_mtok: float | None
    output_per_mtok: float | None
    cached_input_per_mtok: float | None
    source: str | None


class CostPart(_Part):
    cost_usd: Annotated[float, Figure(check=True, header="cost", kind="usd")] = Field(
        description="Priced tokens of every request, cached answers included.")
    cost_spent_usd: float = Field(description="Only the requests actually sent in this run.")
    cost_per_valid_usd: Annotated[Optional[float], Figure(check=True, header="cost/valid", kind="usd")] = Field(
        description="cost_usd / n_valid; None without valid answers.")
    price: Price


class BaselineTimes(_Part):
    fit_s: float | None = Field(None, description="Training and threshold tuning, embedding included.")
    predict_s: float | None = Field(None, description="Predicting the evaluated examples, embedding included.")
    embed_s: float | None = Field(None, description="Of which embedding texts (embedding kinds).")


class IntervalPart(_Part):
    accuracy_ci: list[float] | None = Field(description="[low, high] 95% percentile bootstrap of strict accuracy.")
    macro_f1_ci: list[float] | None = Field(description="[low, high] 95% percentile bootstrap of strict macro-F1.")
    ci_resamples: int
    ci_seed: int


class CoveragePoint(_Part):
    threshold: float
    answered: int
    coverage: float
    accuracy: float | None


class CoveragePart(_Part):
    available: bool
    reason: str | None = Field(None, description="Why there is no curve (when not available).")
    n: int | None = None
    target_accuracy: float | None = None
    points: list[CoveragePoint] | None = None
    at_target: CoveragePoint | None = None
    min_answered: int | None = Field(None, description="Fewest answered examples a cut needs to count for at_target.")


class CalibrationBin(_Part):
    lo: float
    hi: float
    n: int
    confidence: float
    accuracy: float


class CalibrationPart(_Part):
    """Shared contract with the label-likelihood work (10 equal-width bins)."""

    n: int
    ece: float
    ece_equal_mass: float
    brier: float
    log_loss: float | None
    margin_mean: float | None
    entropy_mean: float | None
    # Added in version 2 (defaults: older files still read): from the kernel, over the valid
    # answers that carry a probability for every label.
    low_margin_share: float | None = Field(
        None, description="Share of answers whose top two labels are within `low_margin_threshold`.")
    low_margin_threshold: float | None = None
    bins: list[CalibrationBin]


class LevelFigures(_Part):
    """A row's figures at one level of a label hierarchy (harness.hierarchy): the leaf-level
    predictions with every label replaced by its group at this level."""

    level: str = Field(description="`label` for the labels themselves, else the hierarchy level's name.")
    n_labels: int = Field(description="Labels (groups) at this level.")
    accuracy: Ratio = Field(description="Strict: an unreadable answer is wrong.")
    accuracy_valid: Ratio
    macro_f1: Ratio
    macro_f1_valid: Ratio
    n_correct: int
    right_here_wrong_at_leaf: int = Field(
        description="Answers right at this level but wrong at the label level (the right group, "
        "the wrong label in it); 0 at the label level.")
    per_class: dict[str, PerClass] | None
    confusion: Confusion | None = None


class Spread(_Part):
    mean: float | None
    std: float | None = Field(description="Sample standard deviation (n - 1) over the repeats; None for one.")
    min: float | None
    max: float | None
    values: list[Optional[float]] = Field(description="The figure in each repeat, in repeat order.")


class RepeatsPart(_Part):
    """A model's `repeats:` (harness.metrics.repeats): on the row `PROMPT` (whose figures are
    repeat 0's) the spread of the headline figures over repeats and the per-example agreement;
    on the majority-vote row `PROMPT@vote` only `repeats` and `row`."""

    repeats: int = Field(description="Repeats scored (each request asked this many times).")
    row: Literal["repeat_0", "vote"] = Field(description="What this row's own figures are.")
    n_common: int | None = Field(None, description="Examples answered in every repeat (agreement is over these).")
    all_agree: float | None = Field(None, description="Share of examples on which every repeat gave the same answer.")
    pairwise_agreement: float | None = Field(
        None, description="Mean over examples of the share of repeat pairs that agree.")
    figures: dict[str, Spread] | None = Field(None, description="Headline figure -> its spread over repeats.")


class MetricsRow(_Part):
    """One model × prompt of a run (see the module docstring for the parts)."""

    FLAT_PARTS: ClassVar[tuple[str, ...]] = ("single", "multi", "cost", "baseline", "interval")

    model: Annotated[str, Figure(header="model")]
    prompt: Annotated[str, Figure(header="prompt")]
    n: Annotated[int, Figure(check=True, header="n", kind="int")] = Field(description="Examples scored.")
    n_valid: Annotated[int, Figure(check=True)] = Field(description="Examples whose output was read.")
    validity: Annotated[Ratio, Figure(check=True, header="validity", kind="pct", headline=True)] = Field(
        description="n_valid / n.")
    outcomes: dict[str, int] = Field(description="Examples per outcome (valid, invalid_json, ...).")
    parsed_from: dict[str, int] = Field(description="Valid answers per way of reading them.")
    accuracy: Annotated[Ratio, Figure(check=True, header="accuracy", kind="pct", headline=True)] = Field(
        description="Strict: an unreadable output is wrong (multi-label: subset accuracy).")
    accuracy_valid: Annotated[Ratio, Figure(check=True, header="accuracy (valid)", kind="pct", headline=True)] = Field(
        description="On valid answers only; None without any.")
    macro_f1: Annotated[Ratio, Figure(check=True, header="macro F1", kind="f1", headline=True)]
    macro_f1_valid: Annotated[Ratio, Figure(check=True, header="macro F1 (valid)", kind="f1", headline=True)]
    single: SingleLabelFigures | None = None
    multi: MultiLabelFigures | None = None
    per_class: dict[str, PerClass] | None = Field(description="Strict precision, recall, F1, support per label.")
    per_class_valid: dict[str, PerClass] | None
    latency_p50_s: Annotated[Optional[float], Figure(check=True, header="p50 latency", kind="latency")]
    latency_p95_s: Annotated[Optional[float], Figure(check=True)]
    prompt_tokens: int | None
    completion_tokens: int | None
    cached: int = Field(description="Answers served from the response cache.")
    mean_confidence: Annotated[Optional[float], Figure(check=True)]
    cost: CostPart | None = None
    wall_s: Annotated[Optional[float], Figure(header="wall", kind="wall")] = Field(
        None, description="Wall time of the prompt's requests (baselines: fit + predict).")
    baseline: BaselineTimes | None = None
    coverage: CoveragePart | None = None
    interval: IntervalPart | None = None
    calibration: CalibrationPart | None = None
    levels: list[LevelFigures] | None = Field(
        None, description="Specs with a label hierarchy: the figures at every level, labels first.")
    repeats: RepeatsPart | None = None

    @model_validator(mode="before")
    @classmethod
    def _gather_flat_parts(cls, data: Any) -> Any:
        """A `metrics.json` row (flat keys) -> the parts; a dict already holding parts is kept."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for part in cls.FLAT_PARTS:
            if part in data:
                continue
            fields = _part_class(part).model_fields
            found = {key: data.pop(key) for key in list(data) if key in fields}
            if found:
                data[part] = found
        return data

    def to_wire(self) -> dict[str, Any]:
        """The row as `metrics.json` holds it: flattened parts, only the keys that were set."""
        dumped = self.model_dump(mode="json", exclude_unset=True)
        out: dict[str, Any] = {}
        for key, value in dumped.items():
            if key in self.FLAT_PARTS and isinstance(value, dict):
                out.update(value)
            else:
                out[key] = value
        return out

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> "MetricsRow":
        return cls.model_validate(row)


def _part_class(name: str) -> type[_Part]:
    return MetricsRow.model_fields[name].annotation.__args__[0]  # `Part | None`


# ---------------------------------------------------------------------------------------------
# What the rest of the harness derives from the model


def _wire_fields() -> list[tuple[str, Any, bool]]:
    """(key, FieldInfo, optional) for every key a row may have, in `metrics.json` order."""
    out = []
    for name, info in MetricsRow.model_fields.items():
        if name in MetricsRow.FLAT_PARTS:
            out += [(key, sub, True) for key, sub in _part_class(name).model_fields.items()]
        else:
            out.append((name, info, not info.is_required()))
    return out


CHECKABLE: tuple[str, ...] = tuple(key for key, info, _ in _wire_fields() if (_figure(info) or Figure()).check)
# (key, header, kind, optional): optional columns show only when some row has the figure
COLUMNS: tuple[tuple[str, str, str, bool], ...] = tuple(
    (key, fig.header, fig.kind, optional)
    for key, info, optional in _wire_fields() if (fig := _figure(info)) is not None and fig.header
)
HEADLINE: tuple[str, ...] = tuple(key for key, info, _ in _wire_fields() if (_figure(info) or Figure()).headline)
# checkable figures that are counts (printed as whole numbers)
COUNTS: tuple[str, ...] = tuple(key for key, info, _ in _wire_fields() if key in CHECKABLE and info.annotation is int)


def json_schema() -> dict[str, Any]:
    """The JSON schema of a `metrics.json` file (rows as written: flattened parts)."""
    row = MetricsRow.model_json_schema(ref_template="#/$defs/{model}")
    defs = row.pop("$defs", {})
    properties: dict[str, Any] = {}
    required = [key for key in row.get("required", []) if key not in MetricsRow.FLAT_PARTS]
    for name, prop in row["properties"].items():
        if name in MetricsRow.FLAT_PARTS:
            part = defs.pop(_part_class(name).__name__)
            properties.update(part["properties"])
        else:
            properties[name] = prop
    row.update(properties=properties, required=required)
    row["description"] = (MetricsRow.__doc__ or "").strip() + (
        " Flattened parts (present together or not at all): " + "; ".join(
            f"{name}: {', '.join(_part_class(name).model_fields)}" for name in MetricsRow.FLAT_PARTS) + "."
    )
    defs["MetricsRow"] = row
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "harness metrics.json",
        "description": "A scored run: the run record and one row per model × prompt (harness.metrics.row).",
        "type": "object",
        "properties": {
            "schema_version": {"type": "integer", "const": SCHEMA_VERSION,
                               "description": "Absent in files of version 1 (same rows, without balanced_accuracy and calibration)."},
            "run": {"type": "object", "description": "The run record: spec, dataset, models, timings, environment."},
            "results": {"type": "array", "items": {"$ref": "#/$defs/MetricsRow"}},
        },
        "required": ["schema_version", "run", "results"],
        "$defs": defs,
    }


if __name__ == "__main__":  # python -m harness.metrics.row > harness/metrics.schema.json
    import json

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
