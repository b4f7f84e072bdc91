"""What every baseline shares: the `Baseline` class (a spec entry and the plug-in that runs it),
the registry of kinds, and turning label probabilities into predictions (argmax, or per-label
thresholds for multi-label tasks).

A baseline kind is one subclass of `Baseline` with `kind: Literal["NAME"]`, in any module of this
package. The class is its own YAML schema, pydantic_evals style: its fields are the options a spec
may set under `baselines:` (the spec's list is a union of the kinds discriminated on `kind`, so
`harness schema` documents each kind and a misspelt option is an `unknown field` located at its
line), and its methods fit and predict. Defining the class registers it; adding a kind touches its
own file (plus its test).

A spec holds the configured entries; `bind(spec)` returns a copy that knows the spec's labels and
keeps its fitted state (private attributes), so one entry can be fitted many times (learning
curves). It is fitted on texts with gold labels encoded as `y` (single-label: class indices, shape
(n,); multi-label: a 0/1 matrix, shape (n, n_labels)) and returns `predict_proba(texts)` with one
column per spec label, in the spec's label order:

* single-label: a distribution over the labels (each row sums to 1);
* multi-label: for each label independently, the probability that it applies.

Importing the kinds imports no heavy library, numpy included: `harness.spec` imports them to build
its schema. sklearn, torch, sentence-transformers and transformers are imported when a baseline
fits or predicts.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np

    from harness.baselines.embeddings import EmbedderPool

# kind -> class, sorted by kind once discovered (the order the schema and messages list them).
_KINDS: dict[str, type["Baseline"]] = {}
# Modules of this package that define no kind: not imported to discover kinds (they would bring
# numpy and the run machinery into every spec load).
_SUPPORT_MODULES = frozenset({"base", "embeddings", "linear", "report", "run"})
_discovered = False

# The prediction records of a baseline carry this in `prompt`: a baseline has no prompt.
BASELINE_PROMPT = "-"

# As harness.spec.Name (spec imports this module, so it cannot be imported from there).
_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=80)]


def baseline_kinds() -> dict[str, type["Baseline"]]:
    """Every registered kind; the first call imports this package's modules to find them."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module("harness.baselines")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name not in _SUPPORT_MODULES:
                importlib.import_module(f"harness.baselines.{info.name}")
        ordered = sorted(_KINDS.items())
        _KINDS.clear()
        _KINDS.update(ordered)
    return _KINDS


def baseline_class(kind: str) -> type["Baseline"]:
    try:
        return baseline_kinds()[kind]
    except KeyError:
        raise HarnessError(f"unknown baseline kind {kind!r}; known: {', '.join(baseline_kinds())}") from None


def trainable_kinds() -> frozenset[str]:
    """Kinds that learn from dataset.train_split (and so have a learning curve)."""
    return frozenset(kind for kind, cls in baseline_kinds().items() if cls.trainable)


def spec_entry_type() -> Any:
    """The type of one entry of a spec's `baselines:`: the kinds, discriminated on `kind`."""
    kinds = tuple(baseline_kinds().values())
    if len(kinds) == 1:
        return kinds[0]
    return Annotated[Union[kinds], Field(discriminator="kind")]


def missing_packages(*modules: str) -> list[str]:
    """Top-level modules that cannot be imported (checked without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


# Specs written by runs before each kind had its own options (spec.resolved.json) hold every option
# of every kind, at these defaults: an option of another kind at its old default is dropped.
_WRITTEN_OUT_DEFAULTS: dict[str, Any] = {
    "model": None, "C": 1.0, "class_weight": None, "max_iter": 1000, "max_features": 50000,
    "ngram_range": [1, 2], "min_df": 1, "temperature": 0.05, "label_text": None, "label_map": None,
    "hypothesis_template": "This example is {}.", "batch_size": 64, "max_length": None,
    "device": None, "train_limit": None,
}


class Baseline(BaseModel, ABC):
    """A cheap encoder compared with the LLMs on the same examples (see harness/baselines)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Which baseline; each kind has its own options.")
    name: Optional[_Name] = Field(None, description="Report name; the id is `baseline:NAME` (default the kind).")
    threshold: float = Field(
        0.5, ge=0, le=1,
        description="Multi-label: a label is predicted when its probability reaches this; replaced by "
        "per-label thresholds tuned on dataset.validation_split when the spec has one.",
    )

    # Facts about the kind, not options.
    trainable: ClassVar[bool] = True  # learns from dataset.train_split
    embeds: ClassVar[bool] = False  # uses sentence embeddings (the run opens the embedding cache)
    # Importable modules the kind needs, and the pip command that brings them.
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)
    install_hint: ClassVar[str] = "pip install scikit-learn"

    _spec: Any = PrivateAttr(None)  # a harness.spec.Spec once bound (not imported: spec imports this)
    _embedders: Any = PrivateAttr(None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        annotation = cls.model_fields["kind"].annotation
        if "kind" not in cls.__annotations__ or typing.get_origin(annotation) is not Literal:
            return  # an intermediate class, not a kind of its own
        (kind,) = typing.get_args(annotation)
        if kind in _KINDS and _KINDS[kind] is not cls:
            raise TypeError(f"baseline kind {kind!r} is already registered by {_KINDS[kind].__qualname__}")
        _KINDS[kind] = cls

    @model_validator(mode="before")
    @classmethod
    def _drop_written_out_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {
                key: value for key, value in data.items()
                if key in cls.model_fields or key not in _WRITTEN_OUT_DEFAULTS
                or _plain(value) != _WRITTEN_OUT_DEFAULTS[key]
            }
        return data

    @property
    def id(self) -> str:
        return f"baseline:{self.name or self.kind}"

    def spec_problems(self, spec: Any) -> list[tuple[tuple, str]]:
        """Problems of this entry that depend on the rest of the spec, as (key path below the
        entry, message); the spec reports them at their line."""
        if self.trainable and not spec.dataset.train_split:
            return [(("kind",), f"{self.kind} trains on dataset.train_split, which is null")]
        return []

    # -- running -------------------------------------------------------------------------------

    def bind(self, spec: Any, embedders: "EmbedderPool | None" = None) -> "Baseline":
        """A fresh copy of this entry for `spec`, with no fitted state."""
        bound = type(self).model_construct(
            _fields_set=set(self.model_fields_set),
            **{name: getattr(self, name) for name in type(self).model_fields},
        )
        bound._spec = spec
        bound._embedders = embedders
        return bound

    @property
    def spec(self) -> Any:
        if self._spec is None:
            raise RuntimeError(f"{self.id}: bind(spec) before fitting or predicting")
        return self._spec

    @property
    def labels(self) -> list[str]:
        return self.spec.label_names

    @property
    def multi(self) -> bool:
        return self.spec.task == "multi_label"

    @property
    def embedders(self) -> "EmbedderPool | None":
        return self._embedders

    def missing_requirement(self) -> str | None:
        """Why this baseline cannot run here (a package is not installed), or None."""
        missing = missing_packages(*self.requires)
        if missing:
            return f"needs {', '.join(missing)} (`{self.install_hint}`)"
        return None

    def train_rows(self, data: Any) -> list[Any]:
        """The examples `harness eval` fits this entry on, from `data` (a run's BaselineData): the
        whole train split unless the kind picks (`train_limit`, setfit's k per class). The
        learning curve passes its own subsets instead."""
        return data.examples(self.spec.dataset.train_split)

    def fit(self, texts: Sequence[str], y: "np.ndarray") -> None:
        """Learn from labelled texts. Zero-shot kinds ignore this."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> "np.ndarray":
        """(len(texts), n_labels) probabilities, columns in the spec's label order."""

    def stats(self) -> dict[str, Any]:
        """Facts for the run record (e.g. embedding cache hits); empty by default."""
        return {}


# Older name of the base class (the runtime side of a baseline).
BaselineModel = Baseline


class TrainOptions(BaseModel):
    """Options of the kinds that train on dataset.train_split."""

    train_limit: Optional[int] = Field(
        None, ge=2, description="Train on a seeded, label-stratified sample of this many rows."
    )

    def train_rows(self, data: Any) -> list[Any]:
        return data.examples(self.spec.dataset.train_split, self.train_limit)


class EncoderOptions(BaseModel):
    """Options of the kinds that run a neural encoder."""

    batch_size: int = Field(64, ge=1, le=4096, description="Texts per encoder forward pass.")
    device: Optional[str] = Field(None, description="Torch device (cpu, cuda, mps); default: the library's choice.")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------
# Labels <-> arrays


def encode_gold(golds: Sequence[Any], labels: list[str], multi: bool) -> np.ndarray:
    """Gold labels as class indices (single-label) or a 0/1 matrix (multi-label)."""
    import numpy as np

    index = {name: i for i, name in enumerate(labels)}
    if not multi:
        return np.array([index[g] for g in golds], dtype=np.int64)
    y = np.zeros((len(golds), len(labels)), dtype=np.int8)
    for row, gold in enumerate(golds):
        for name in ([gold] if isinstance(gold, str) else gold):
            y[row, index[name]] = 1
    return y


def full_proba(partial: np.ndarray, seen: Sequence[int], n_labels: int) -> np.ndarray:
    """Columns for the classes a model saw in training, spread into all n_labels columns (unseen
    classes get probability 0)."""
    import numpy as np

    out = np.zeros((partial.shape[0], n_labels), dtype=np.float64)
    out[:, list(seen)] = partial
    return out


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    import numpy as np

    shifted = scores - np.max(scores, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Probabilities -> predictions


@dataclass
class Decision:
    """How probabilities become answers: argmax, or per-label thresholds (multi-label)."""

    labels: list[str]
    multi: bool
    thresholds: np.ndarray | None = None  # multi-label only, one per label
    tuned_on: str | None = None  # the split the thresholds were tuned on, if any
    notes: list[str] = field(default_factory=list)

    def decide(self, proba: np.ndarray) -> list[tuple[Any, float]]:
        """(prediction, confidence) per row.

        Single-label: the most probable label; confidence is its probability.
        Multi-label: every label whose probability reaches its threshold (never none: when no label
        does, the most probable one); confidence is the probability that exactly this set is right
        if labels were independent, prod(p if chosen else 1 - p), so abstaining below a confidence
        threshold trades coverage for subset accuracy.
        """
        import numpy as np

        out: list[tuple[Any, float]] = []
        if not self.multi:
            best = np.argmax(proba, axis=1)
            for row, j in enumerate(best):
                out.append((self.labels[j], float(proba[row, j])))
            return out
        thresholds = self.thresholds if self.thresholds is not None else np.full(len(self.labels), 0.5)
        chosen = proba >= thresholds[None, :]
        for row in range(proba.shape[0]):
            picks = chosen[row]
            if not picks.any():
                picks = np.zeros(len(self.labels), dtype=bool)
                picks[int(np.argmax(proba[row]))] = True
            p = np.clip(proba[row], 0.0, 1.0)
            confidence = float(np.prod(np.where(picks, p, 1.0 - p)))
            out.append(([self.labels[j] for j in np.flatnonzero(picks)], confidence))
        return out


def tune_thresholds(proba: np.ndarray, y: np.ndarray, default: float) -> np.ndarray:
    """Per label, the threshold that maximises that label's F1 on held-out data.

    Candidates are the label's own probability quantiles (so a softmax spread over 28 labels gets
    sensible cut points, not just 0.5). A label with no positive example keeps `default`; ties go
    to the higher threshold (fewer false positives).
    """
    import numpy as np

    from harness.metrics.kernel import prf  # here, not at module level: the spec imports this module

    n_labels = proba.shape[1]
    out = np.full(n_labels, float(default))
    for j in range(n_labels):
        truth = y[:, j].astype(bool)
        positives = int(truth.sum())
        if positives == 0:
            continue
        candidates = np.unique(np.quantile(proba[:, j], np.linspace(0.0, 1.0, 201)))  # ascending
        chosen = proba[:, j][None, :] >= candidates[:, None]  # (candidates, rows)
        f1 = prf((chosen & truth).sum(axis=1), chosen.sum(axis=1), positives)[2]  # the kernel's F1
        out[j] = float(candidates[np.flatnonzero(f1 == f1.max())[-1]])  # ties: the highest
    return out
