"""What every baseline shares: the registry of kinds, the model interface, and turning label
probabilities into predictions (argmax, or per-label thresholds for multi-label tasks).

A baseline is fitted on texts with gold labels encoded as `y` (single-label: class indices, shape
(n,); multi-label: a 0/1 matrix, shape (n, n_labels)) and returns `predict_proba(texts)` with one
column per spec label, in the spec's label order:

* single-label: a distribution over the labels (each row sums to 1);
* multi-label: for each label independently, the probability that it applies.

Heavy libraries (sklearn, torch, sentence-transformers, transformers) are imported by the kinds'
modules, which the registry imports only when a baseline of that kind is built.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.metrics.kernel import prf

if TYPE_CHECKING:
    from harness.baselines.embeddings import EmbedderPool
    from harness.spec import Baseline, Spec

# kind -> "module:Class", imported on first use.
KINDS: dict[str, str] = {
    "tfidf_logreg": "harness.baselines.tfidf:TfidfLogReg",
    "embedding_logreg": "harness.baselines.embedding_kinds:EmbeddingLogReg",
    "embedding_centroid": "harness.baselines.embedding_kinds:EmbeddingCentroid",
    "embedding_zero_shot": "harness.baselines.embedding_kinds:EmbeddingZeroShot",
    "hf_classifier": "harness.baselines.classifiers:HFClassifier",
    "nli_zero_shot": "harness.baselines.classifiers:NLIZeroShot",
}
# Kinds that learn from dataset.train_split (and so have a learning curve).
TRAINABLE: frozenset[str] = frozenset({"tfidf_logreg", "embedding_logreg", "embedding_centroid"})

# The prediction records of a baseline carry this in `prompt`: a baseline has no prompt.
BASELINE_PROMPT = "-"


def baseline_class(kind: str) -> type["BaselineModel"]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise HarnessError(f"unknown baseline kind {kind!r}; known: {', '.join(KINDS)}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def missing_packages(*modules: str) -> list[str]:
    """Top-level modules that cannot be imported (checked without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


class BaselineModel(ABC):
    """One configured baseline. `fit` before `predict_proba` (zero-shot kinds need no fit)."""

    trainable: ClassVar[bool] = True
    # Importable modules the kind needs, and the pip command that brings them.
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)
    install_hint: ClassVar[str] = "pip install scikit-learn"

    def __init__(self, config: "Baseline", spec: "Spec", embedders: "EmbedderPool | None" = None):
        self.config = config
        self.spec = spec
        self.labels: list[str] = spec.label_names
        self.multi = spec.task == "multi_label"
        self.embedders = embedders

    def missing_requirement(self) -> str | None:
        """Why this baseline cannot run here (a package is not installed), or None."""
        missing = missing_packages(*self.requires)
        if missing:
            return f"needs {', '.join(missing)} (`{self.install_hint}`)"
        return None

    def fit(self, texts: Sequence[str], y: np.ndarray) -> None:
        """Learn from labelled texts. Zero-shot kinds ignore this."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), n_labels) probabilities, columns in the spec's label order."""

    def stats(self) -> dict[str, Any]:
        """Facts for the run record (e.g. embedding cache hits); empty by default."""
        return {}


# ---------------------------------------------------------------------------------------------
# Labels <-> arrays


def encode_gold(golds: Sequence[Any], labels: list[str], multi: bool) -> np.ndarray:
    """Gold labels as class indices (single-label) or a 0/1 matrix (multi-label)."""
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
    out = np.zeros((partial.shape[0], n_labels), dtype=np.float64)
    out[:, list(seen)] = partial
    return out


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
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
